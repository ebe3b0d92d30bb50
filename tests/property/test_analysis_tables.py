"""Per-layer file tables: the Rust reader (``_core.layer_tables``) and the pure twin (tarfile + hashlib) give the
same columns, byte for byte, on random layer stacks (whiteouts, opaque markers, hardlinks, symlinks, chmod-style
rewrites, xattrs) in every compression; and the final view the change pass derives from them holds exactly the
paths of the Rust union index (``layer_index``) for stacks without symlinked parents; the image-wide passes
(``image_pass``: change kinds, fates, dive's sums) agree with their pure twin."""

from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

import imgcore
import imgcore.pure.analysis
from imgcore.analysis import figures
from imgcore.analysis.tables import LayerTable
from tests.strategies import Layer, Node, TarEntry, layer_stacks

extra_entries = st.lists(
    st.builds(
        lambda name, data, mode, xattr: TarEntry.file(
            name, data, mode=mode, pax={"SCHILY.xattr." + xattr[0]: xattr[1]} if xattr else {}
        ),
        st.sampled_from(["x", "y/z", "a/.wh.b", "y/.wh..wh..opq", "./q", "long/" + "n" * 150]),
        st.binary(max_size=3000),
        st.sampled_from([0o644, 0o600, 0o4755]),
        st.none()
        | st.tuples(st.sampled_from(["user.a", "security.capability", "security.selinux"]), st.text(max_size=5)),
    ),
    max_size=4,
)


def _clean(name: str) -> str:
    return "/".join(c for c in name.split("/") if c not in ("", "."))


def _tables(reader: object, blobs: list[Path]) -> list[LayerTable]:
    rows = reader([(b, None) for b in blobs])  # type: ignore[operator]
    return [LayerTable.from_columns(c, str(b)) for c, b in zip(rows, blobs, strict=True)]


@settings(max_examples=60, deadline=None)
@given(
    stack=layer_stacks(),
    extra=extra_entries,
    comps=st.lists(st.sampled_from(["none", "gzip", "zstd"]), min_size=5, max_size=5),
)
def test_rust_and_twin_tables_agree(
    stack: tuple[list[Layer], dict[str, Node]], extra: list[TarEntry], comps: list[str]
) -> None:
    layers, _model = stack
    layers = [*layers, Layer(extra)] if extra else layers
    with tempfile.TemporaryDirectory() as tmp:
        blobs = []
        for i, (layer, comp) in enumerate(zip(layers, comps, strict=False)):
            p = Path(tmp) / f"l{i}"
            p.write_bytes(layer.blob(comp))
            blobs.append(p)
        rust = _tables(imgcore._core.layer_tables, blobs)
        pure = _tables(imgcore.pure.analysis.layer_tables, blobs)
        for r, p in zip(rust, pure, strict=True):
            rc, pc = r.columns(), p.columns()
            assert rc.keys() == pc.keys()
            for k, v in rc.items():
                if isinstance(v, np.ndarray):
                    assert v.dtype == pc[k].dtype, k
                    assert np.array_equal(v, pc[k]), k
                else:
                    assert v == pc[k], k
        # The image-wide passes agree too: changes, fates, replaced copies and dive's sums.
        cols = [t.columns() for t in rust]
        got, want = imgcore._core.image_pass(cols), imgcore.pure.analysis.image_pass(cols)
        for g, w in zip((*got[:4], got[5]), (*want[:4], want[5]), strict=True):
            assert len(g) == len(w)
            for x, y in zip(g, w, strict=True):
                assert x.dtype == y.dtype
                assert np.array_equal(x, y)
        assert got[4][:2] == want[4][:2]
        # dive's inefficient paths: the same columns (NUL-joined paths, offsets, references, sizes), same order.
        for g, w in zip(got[4][2], want[4][2], strict=True):
            assert g.dtype == w.dtype
            assert np.array_equal(g, w)
        # Every row's content hash is the sha256 of the file as extracted.
        for t, layer in zip(rust, layers, strict=False):
            names = t.names()
            for r in np.flatnonzero(t.kind == 0).tolist():
                path = names[t.path[r]].decode()
                want = [e.data for e in layer.entries if e.kind == "file" and _clean(e.name) == path]
                assert want, path
                assert t.sha256[r].tobytes() in {hashlib.sha256(w).digest() for w in want}


@settings(max_examples=40, deadline=None)
@given(stack=layer_stacks())
def test_final_view_is_the_union_index(stack: tuple[list[Layer], dict[str, Node]]) -> None:
    layers, model = stack
    with tempfile.TemporaryDirectory() as tmp:
        blobs = []
        for i, layer in enumerate(layers):
            p = Path(tmp) / f"l{i}"
            p.write_bytes(layer.blob())
            blobs.append(p)
        tables = _tables(imgcore._core.layer_tables, blobs)
        names = [t.names() for t in tables]
        m = figures.merge(tables)
        view = {p.decode() for p in figures.final_view(tables, names, m)}
        index = {row[0] for row in imgcore.layer_index(blobs)}
        if not any(n.kind == "symlink" for n in model.values()):
            assert view == index
        # Each visible row is the last writer of its path; every hidden one is hidden by a layer at or above it.
        for li, sh in enumerate(m.shadowed_by):
            assert np.all((sh == figures.VISIBLE) | (sh >= li))
