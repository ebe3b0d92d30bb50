"""``imgcore pull/push/login/logout/save/load``: argument parsing and output only (see :mod:`imgcore.distribution`)."""

from __future__ import annotations

import argparse
import getpass
import sys
from typing import Any

from imgcore._progress import make_progress
from imgcore.cli._flags import positive, transport_flags
from imgcore.errors import AuthError, ImgcoreError
from imgcore.reference import parse
from imgcore.registry import Credentials, RegistryClient, remove_credentials, save_credentials
from imgcore.registry.auth import normalize_registry
from imgcore.store import ContentStore
from imgcore.transfer import archive, pull, push

__all__ = ["register"]


def _store(args: argparse.Namespace) -> Any:
    return ContentStore(getattr(args, "root", None))


def _progress(args: argparse.Namespace) -> Any:
    return make_progress(quiet=args.quiet)


def cmd_pull(args: argparse.Namespace) -> int:
    progress = _progress(args)
    last = args.reference.rsplit("/", 1)[-1]
    if ":" not in last and "@" not in last:
        progress.line("Using default tag: latest")  # docker's first line for a reference without a tag
    try:
        result = pull.pull(
            parse(args.reference),
            store=_store(args),
            platform=args.platform,
            jobs=args.jobs,
            unpack=args.unpack,
            progress=progress,
            insecure=args.insecure_registry,
            ca_file=args.ca_file,
            foreign_urls=args.allow_foreign_url,
        )
    finally:
        progress.close()
    print(result.reference)
    return 0


def cmd_push(args: argparse.Namespace) -> int:
    progress = _progress(args)
    try:
        push.push(
            args.reference,
            source=args.source,
            store=_store(args),
            jobs=args.jobs,
            chunk_size=args.chunk_size,
            progress=progress,
            insecure=args.insecure_registry,
            ca_file=args.ca_file,
        )
    finally:
        progress.close()
    return 0


def cmd_login(args: argparse.Namespace) -> int:
    server = args.server
    username = args.username
    if username is None:
        if not sys.stdin.isatty():
            raise AuthError("login: give --username when stdin is not a terminal")
        username = input("Username: ")
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    elif args.password is not None:
        print("WARNING! Using --password via the CLI is insecure. Use --password-stdin.", file=sys.stderr)
        password = args.password
    else:
        password = getpass.getpass("Password: ")
    if not username or not password:
        raise AuthError("login: username and password must not be empty")
    creds = Credentials(username, password)
    client = RegistryClient(server, credentials=creds, insecure=args.insecure_registry, ca_file=args.ca_file)
    client.ping()
    path = save_credentials(server, creds)
    print(f"Login Succeeded (credentials stored in {path})")
    return 0


def cmd_logout(args: argparse.Namespace) -> int:
    server = normalize_registry(args.server)
    if remove_credentials(server):
        print(f"Removing login credentials for {server}")
    else:
        print(f"Not logged in to {server}")
    return 0


def cmd_save(args: argparse.Namespace) -> int:
    if args.output in (None, "-"):
        if sys.stdout.isatty():
            raise ImgcoreError("save: refusing to write an archive to a terminal; use -o FILE or redirect")
        sys.stdout.flush()
        progress = make_progress(stream=sys.stderr)
        archive.save(args.images, sys.stdout.buffer, store=_store(args), format=args.format, progress=progress)
        sys.stdout.buffer.flush()
    else:
        progress = make_progress(stream=sys.stderr)
        archive.save(args.images, args.output, store=_store(args), format=args.format, progress=progress)
    progress.close()
    return 0


def cmd_load(args: argparse.Namespace) -> int:
    source = sys.stdin.buffer if args.input in (None, "-") else args.input
    progress = make_progress(quiet=args.quiet, layers_off_tty=False)
    try:
        result = archive.load(source, store=_store(args), progress=progress)
    finally:
        progress.close()
    if args.quiet:
        for name, desc in result.images:
            print(name or desc.digest)
    return 0


def register(sub: Any) -> None:
    """Add the distribution subcommands to ``imgcore``'s subparsers."""
    p = sub.add_parser("pull", help="download an image from a registry")
    p.add_argument("reference", help="NAME[:TAG|@DIGEST]")
    p.add_argument("--platform", default=None, help="os/arch[/variant] to pick from a multi-platform image")
    p.add_argument("-q", "--quiet", action="store_true", help="print only the image reference")
    p.add_argument(
        "-j", "--jobs", "--max-concurrent-downloads", dest="jobs", type=positive, default=3,
        help="layers downloaded at the same time (default 3)",
    )  # fmt: skip
    p.add_argument("--unpack", action="store_true", help="unpack layers as they arrive")
    p.add_argument(
        "--allow-foreign-url", default=None, metavar="REGEX",
        help="fetch foreign layers the registry lacks only from URLs this regex matches whole "
        "(default $IMGCORE_FOREIGN_URLS, else any http/https URL)",
    )  # fmt: skip
    transport_flags(p)
    p.set_defaults(func=cmd_pull)

    p = sub.add_parser("push", help="upload an image to a registry")
    p.add_argument("reference", help="NAME[:TAG] to push to")
    p.add_argument("--source", default=None, help="local image to push (default: the same reference)")
    p.add_argument("-q", "--quiet", action="store_true", help="print nothing but errors")
    p.add_argument("-j", "--jobs", type=positive, default=3, help="blobs uploaded at the same time (default 3)")
    p.add_argument("--chunk-size", type=positive, default=None, help="upload in PATCH chunks of this many bytes")
    transport_flags(p)
    p.set_defaults(func=cmd_push)

    p = sub.add_parser("login", help="store credentials for a registry")
    p.add_argument("server", nargs="?", default="docker.io")
    p.add_argument("-u", "--username", default=None)
    p.add_argument("-p", "--password", default=None)
    p.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    transport_flags(p)
    p.set_defaults(func=cmd_login)

    p = sub.add_parser("logout", help="forget the credentials for a registry")
    p.add_argument("server", nargs="?", default="docker.io")
    p.set_defaults(func=cmd_logout)

    p = sub.add_parser("save", help="write images to a tar archive (docker-save or OCI)")
    p.add_argument("images", nargs="+")
    p.add_argument("-o", "--output", default=None, help="file to write (default stdout)")
    p.add_argument("--format", choices=("docker", "oci", "oci-dir"), default="docker")
    p.set_defaults(func=cmd_save)

    p = sub.add_parser("load", help="load images from a docker-save or OCI archive (or an OCI layout dir)")
    p.add_argument("-i", "--input", default=None, help="archive or directory to read (default stdin)")
    p.add_argument("-q", "--quiet", action="store_true", help="print only the loaded names")
    p.set_defaults(func=cmd_load)
