"""dive's figures, golden: for twelve seeded images (rewrites, chmod copies, whiteouts of files, directories and
missing paths, opaque directories, hardlinks, duplicates), ``Analysis.dive`` equals what dive 0.13 itself
printed for the same images (``tests/vectors/analysis/dive.json``, written by ``python3 -m
tests.analysis_images`` with dive on PATH), with the Rust passes and with the pure twins."""

from __future__ import annotations

import json

import pytest

import imgcore.pure.analysis
from imgcore.analysis import analyze
from imgcore.store import ContentStore
from tests.analysis_images import SEEDS, VECTORS, stack
from tests.images_helpers import make_image

WANT = json.loads(VECTORS.read_text())


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("reader", ["rust", "pure"])
def test_dive_figures_equal_dive(store: ContentStore, seed: int, reader: str) -> None:
    image = None
    for i, tar in enumerate(stack(seed)):
        image = make_image(store, f"seed{seed}:{i}", {}, parent=image, tar=tar, created="2024-01-01T00:00:00Z")
    assert image is not None
    pure = imgcore.pure.analysis
    a = analyze(image, reader=pure.layer_tables if reader == "pure" else None,
                image_pass=pure.image_pass if reader == "pure" else None, cache=False)  # fmt: skip
    want = WANT[str(seed)]
    assert a.dive.efficiency == want["efficiencyScore"]
    assert a.dive.wasted_bytes == want["inefficientBytes"]
    assert a.dive.size_bytes == want["sizeBytes"]
    assert sorted([p, c, s] for p, c, s in a.dive.inefficient) == want["fileReference"]
