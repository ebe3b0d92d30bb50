"""A file swapped for a symlink (or another file) between the walk's lstat and the read is refused by export and
by the layer writer, never read through (the pattern of docker's CVE-2018-15664)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from imgcore.containers.export import _open_same
from imgcore.errors import InvalidTree


def test_export_refuses_a_swapped_file(tmp_path: Path) -> None:
    f = tmp_path / "f"
    f.write_bytes(b"container data")
    host = tmp_path / "host-secret"
    host.write_bytes(b"host data")
    st = os.lstat(f)
    with _open_same(f, st) as ok:
        assert ok.read() == b"container data"
    f.unlink()
    f.symlink_to(host)
    with pytest.raises(InvalidTree, match="replaced by a symlink"):
        _open_same(f, st)  # O_NOFOLLOW: the symlink itself is never followed
    f.unlink()
    os.link(host, f)
    with pytest.raises(InvalidTree, match="replaced while it was being read"):
        _open_same(f, st)  # another inode at the same path (a parent directory swapped lands here too)
