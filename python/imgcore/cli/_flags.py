"""Options shared by the command groups that talk to registries (``distribution``, ``remote``)."""

from __future__ import annotations

import argparse

__all__ = ["positive", "transport_flags"]


def transport_flags(p: argparse.ArgumentParser) -> None:
    """``--insecure-registry HOST`` (repeatable) and ``--ca-file PEM``."""
    p.add_argument(
        "--insecure-registry",
        action="append",
        default=[],
        metavar="HOST",
        help="allow plain HTTP / unverified TLS for HOST[:PORT] (loopback always is)",
    )
    p.add_argument("--ca-file", default=None, help="PEM bundle to verify the registry certificate with")


def positive(text: str) -> int:
    """An argparse type: an integer of at least 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value
