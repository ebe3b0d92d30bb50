"""CLI: the store itself (fsck, blob put/ls/cat/rm) and the demo."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from imgcore._progress import make_progress
from imgcore.containers.manager import Containers
from imgcore.demo import run as run_demo
from imgcore.image.catalog import convert_docker_entries
from imgcore.store import ContentStore

__all__ = ["register"]


def _store(args: argparse.Namespace) -> ContentStore:
    return ContentStore(args.root)


def cmd_fsck(args: argparse.Namespace) -> int:
    store = _store(args)
    blobs = store.list_blobs()
    progress = make_progress(stream=sys.stderr)
    try:
        problems = store.fsck(lambda done, total: progress.layer("fsck", "Checking", done, total), repair=args.repair)
        progress.layer("fsck", "Checked")
    finally:
        progress.close()
    problems += Containers(store).fsck(repair=args.repair)
    for p in problems:
        print(f"{'REPAIRED' if p.repaired else 'CORRUPT'} {p}")
    if args.repair:  # older stores: docker-typed entries that skopeo and umoci cannot read as oci:<root>:<ref>
        for name, digest, twin in convert_docker_entries(store):
            print(f"CONVERTED index.json: {name}: docker manifest {digest} now recorded through its OCI twin {twin}")
    print(f"checked {len(blobs)} blobs in {store.root}: {len(problems)} problem(s)")
    return 1 if problems else 0


def cmd_blob_put(args: argparse.Namespace) -> int:
    store = _store(args)
    for path in args.files:
        desc = store.put_blob(sys.stdin.buffer if path == "-" else path, digest=args.digest)
        print(f"{desc.digest}\t{desc.size}\t{path}")
    return 0


def cmd_blob_ls(args: argparse.Namespace) -> int:
    store = _store(args)
    for d in store.list_blobs():
        print(f"{d}\t{store.blob_size(d)}")
    return 0


def cmd_blob_cat(args: argparse.Namespace) -> int:
    store = _store(args)
    sys.stdout.buffer.write(store.get_blob(args.digest, verify=True))
    return 0


def cmd_blob_rm(args: argparse.Namespace) -> int:
    store = _store(args)
    for d in args.digests:
        print(("deleted " if store.delete_blob(d) else "absent ") + d)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    return run_demo(args.root)


def register(sub: Any) -> None:
    """Adds the store commands (``fsck``, ``blob ...``, ``demo``) to ``sub``."""
    p = sub.add_parser("fsck", help="re-hash every blob and report corrupt ones")
    p.add_argument(
        "--repair",
        action="store_true",
        help="move what is broken into imgcore/lost+found/; record docker-typed entries through OCI twins",
    )
    p.set_defaults(func=cmd_fsck)

    blob = sub.add_parser("blob", help="content store blobs").add_subparsers(dest="blob_command", required=True)
    p = blob.add_parser("put", help="store files (or - for stdin) as blobs")
    p.add_argument("files", nargs="+")
    p.add_argument("--digest", help="expected digest (refused on mismatch)")
    p.set_defaults(func=cmd_blob_put)
    p = blob.add_parser("ls", help="list blobs")
    p.set_defaults(func=cmd_blob_ls)
    p = blob.add_parser("cat", help="write a verified blob to stdout")
    p.add_argument("digest")
    p.set_defaults(func=cmd_blob_cat)
    p = blob.add_parser("rm", help="delete blobs")
    p.add_argument("digests", nargs="+")
    p.set_defaults(func=cmd_blob_rm)

    p = sub.add_parser("demo", help="run the end-to-end demo in a fresh store")
    p.set_defaults(func=cmd_demo)
