"""Pure-Python twins of every ``imgcore._core`` entry point: the property tests' oracle and the benchmarks'
baseline. Same signatures and semantics as the Rust versions, built on the standard library only."""

from __future__ import annotations

from imgcore.pure.diff import Change, LayerResult, diff, write_layer

__all__ = ["Change", "LayerResult", "diff", "write_layer"]
