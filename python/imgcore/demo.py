"""The README's main job: imgcore's workflow end to end in a fresh store, printed step by step."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

__all__ = ["run"]


def _say(text: str) -> None:
    print(text, flush=True)


def run(root: str | os.PathLike[str] | None = None) -> int:
    """Runs the demo in ``root`` (a new temporary directory when None); returns a process exit code."""
    from imgcore import sha256
    from imgcore.store import Store

    base = Path(root) if root is not None else Path(tempfile.mkdtemp(prefix="imgcore-demo-"))
    store = Store(base / "store")
    _say(f"$ store at {store.root} (an OCI image layout)")
    blobs = [b"hello, imgcore\n", os.urandom(1 << 20), b""]
    for data in blobs:
        desc = store.put_blob(data, digest=sha256(data), size=len(data))
        _say(f"put  {desc.digest}  {desc.size} bytes")
    again = store.put_blob(blobs[0])
    _say(f"put again (idempotent): {again.digest} -> {len(store.list_blobs())} blobs stored")
    for d in store.list_blobs():
        _say(f"blob {d}  {store.blob_size(d)}")
    problems = store.fsck()
    _say(f"fsck: {len(store.list_blobs())} blobs re-hashed, {len(problems)} problem(s)")
    return 1 if problems else 0
