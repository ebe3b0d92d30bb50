"""Pure-Python twin of ``_core.inspect_blob``: hashlib plus gzip/zstd decoders, the same answers and errors.

Invariants: the compression is detected from the magic bytes (never a media type), both digests are computed
in one streaming pass, memory stays bounded by one chunk, and a corrupt, truncated or oversized stream raises
the same exception class as the Rust core.
"""

from __future__ import annotations

import hashlib
import os
import zlib
from typing import Any

from imgcore.errors import InvalidArchive, LimitExceeded

__all__ = ["inspect_blob"]

_CHUNK = 1 << 20
_DEFAULT_MAX_BYTES = 64 << 30


def _zstd() -> Any:
    import zstandard  # type: ignore[import-not-found,unused-ignore]  # test extra; the twin is test-only

    return zstandard


def inspect_blob(src: str | os.PathLike[str], *, max_bytes: int = _DEFAULT_MAX_BYTES) -> tuple[str, str, str, int, int]:
    """See ``imgcore._core.inspect_blob``."""
    where = os.fspath(src)
    digest, diff_id = hashlib.sha256(), hashlib.sha256()
    total = compressed = 0
    with open(src, "rb") as f:  # noqa: PTH123
        head = f.read(6)
        f.seek(0)
        if head.startswith(b"\x1f\x8b"):
            kind = "gzip"
        elif head.startswith(b"\x28\xb5\x2f\xfd"):
            kind = "zstd"
        elif head.startswith(b"BZh"):
            raise InvalidArchive(f"{where}: bzip2-compressed layers are not supported")
        elif head.startswith(b"\xfd7zXZ\x00"):
            raise InvalidArchive(f"{where}: xz-compressed layers are not supported")
        else:
            kind = "none"
        d: Any = None
        if kind == "gzip":
            d = zlib.decompressobj(31)
        elif kind == "zstd":
            d = _zstd().ZstdDecompressor().decompressobj()
        started = False
        while chunk := f.read(_CHUNK):
            compressed += len(chunk)
            digest.update(chunk)
            outs: list[bytes] = []
            if d is None:
                outs.append(chunk)
            else:
                data = chunk
                try:
                    while data:
                        if started and d.eof:
                            if not data.strip(b"\0"):
                                break
                            d = zlib.decompressobj(31) if kind == "gzip" else _zstd().ZstdDecompressor().decompressobj()
                        started = True
                        outs.append(d.decompress(data))
                        data = d.unused_data if d.eof else b""
                except Exception as e:
                    raise InvalidArchive(f"{where}: corrupt {kind} stream: {e}") from None
            for out in outs:
                total += len(out)
                if total > max_bytes:
                    raise LimitExceeded(f"{where}: more than {max_bytes} uncompressed bytes")
                diff_id.update(out)
        if d is not None and started and not d.eof:
            raise InvalidArchive(f"{where}: truncated {kind} stream")
    dg = f"sha256:{digest.hexdigest()}"
    return dg, (dg if d is None else f"sha256:{diff_id.hexdigest()}"), kind, compressed, total
