"""The unpacked-layer cache: each layer unpacked once, keyed by chain ID, shared by every container and image.

Two forms, one per container driver:

- overlay (root where the kernel allows overlayfs): each layer of an image is unpacked in overlay form (whiteouts
  as char 0/0 devices, opaque directories as the ``trusted.overlay.opaque`` xattr) into
  ``imgcore/layers/<chain-id hex>/diff``, with ``info.json`` beside it, and used as an overlay lowerdir;
- copy (everywhere else): the image is flattened once into ``imgcore/rootfs/<top chain-id hex>/rootfs`` (the
  read-only baseline a container's private copy is made from and diffed against).

Invariants:
- verify, then trust: an entry is made only by extracting the stored blob with its digest *and* the config's
  diff_id checked in the same pass (containerd's rule), so a chain ID names exactly the content it claims; an
  image whose layer count differs from its diff_id count is refused;
- an entry is built under a ``.tmp-*`` name and renamed into place when complete, under a per-entry lock across
  processes: a killed command leaves only ``.tmp-*`` leftovers, which :meth:`LayerCache.cleanup` removes once
  they are an hour old;
- as root, device nodes and FIFOs of the layers are created (the runtime's device allow-list makes a hostile node
  harmless); without root they are skipped, and every skip is reported to the caller.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import subprocess
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from imgcore import _fs
from imgcore._core import Digest, extract_layer
from imgcore._host import MOUNT, UMOUNT, host_env
from imgcore.errors import InvalidArgument, InvalidManifest
from imgcore.image.model import Image, chain_ids
from imgcore.models import Descriptor
from imgcore.store import ContentStore

__all__ = ["DRIVERS", "LayerCache", "Unpacked", "default_driver", "overlay_supported", "tree_bytes"]

DRIVERS = ("overlay", "copy")
"""Container storage drivers: ``overlay`` mounts the shared layers under a writable upper dir (root);
``copy`` gives each container a private copy of the flattened image (works anywhere)."""
_overlay_probe: dict[str, str | None] = {}


def overlay_supported(scratch: Path) -> str | None:
    """None when an overlay mount works here, else the reason it does not. Probed once per kernel under
    ``scratch`` (a successful probe is remembered in ``scratch/.overlay-ok`` with the kernel's release, so a
    command does not pay a mount and an unmount each time)."""
    key = str(scratch)
    if key in _overlay_probe:
        return _overlay_probe[key]
    if os.geteuid() != 0:
        _overlay_probe[key] = "overlayfs needs root"
        return _overlay_probe[key]
    marker = scratch / ".overlay-ok"
    release = os.uname().release
    with contextlib.suppress(OSError):
        if marker.read_text() == release:
            _overlay_probe[key] = None
            return None
    reason: str | None = None
    probe = scratch / f".overlay-probe-{secrets.token_hex(4)}"
    try:
        for d in ("l", "u", "w", "m"):
            (probe / d).mkdir(parents=True)
        opts = f"lowerdir={probe / 'l'},upperdir={probe / 'u'},workdir={probe / 'w'}"
        r = subprocess.run(
            [MOUNT, "-t", "overlay", "overlay", "-o", opts, str(probe / "m")],
            capture_output=True,
            text=True,
            check=False,
            env=host_env(),
        )
        if r.returncode != 0:
            reason = f"overlay mount refused: {r.stderr.strip()}"
        else:
            subprocess.run([UMOUNT, str(probe / "m")], check=False, env=host_env())
            with contextlib.suppress(OSError):
                _fs.atomic_write(marker, release.encode())
    except OSError as e:
        reason = f"overlay probe failed: {e}"
    finally:
        _fs.rmtree(probe, ignore_errors=True)
    _overlay_probe[key] = reason
    return reason


def default_driver(scratch: Path) -> str:
    """``$IMGCORE_DRIVER`` when set, else overlay where root may mount it, else copy."""
    env = os.environ.get("IMGCORE_DRIVER")
    if env:
        if env not in DRIVERS:
            raise InvalidArgument(f"IMGCORE_DRIVER={env!r}: expected one of {', '.join(DRIVERS)}")
        return env
    return "overlay" if overlay_supported(scratch) is None else "copy"


@dataclass
class Unpacked:
    """What :meth:`LayerCache.ensure_layers` did: the diff dirs (bottom first) and every skipped entry."""

    dirs: list[Path]
    skipped: list[tuple[str, str]] = field(default_factory=list)


class LayerCache:
    """The unpacked layers and flattened baselines of one store."""

    def __init__(self, store: ContentStore) -> None:
        self.store = store
        self.layers_dir = store.paths.layers
        self.rootfs_dir = store.paths.rootfs
        for d in (self.layers_dir, self.rootfs_dir):
            d.mkdir(parents=True, exist_ok=True)

    @staticmethod
    def key(chain_id: str) -> str:
        """The lease name of an unpacked layer: ``layers/<chain hex>``."""
        return f"layers/{Digest(chain_id).hex}"

    def layer_dir(self, chain_id: str) -> Path:
        """Where the layer with this chain ID is (or will be) unpacked."""
        return self.layers_dir / Digest(chain_id).hex

    def is_unpacked(self, chain_id: str) -> bool:
        """Whether the layer with this chain ID is complete in the cache."""
        return (self.layer_dir(chain_id) / "info.json").is_file()

    @staticmethod
    def check(image: Image) -> list[str]:
        """The image's chain IDs; refuses an image whose layer count differs from its diff_id count."""
        diff_ids = image.config.diff_ids
        if len(diff_ids) != len(image.manifest.layers):
            raise InvalidManifest(
                f"image {image.id}: {len(image.manifest.layers)} layers but {len(diff_ids)} diff_ids in its config"
            )
        return chain_ids(diff_ids)

    def ensure_layers(self, image: Image) -> Unpacked:
        """Unpacks (once, shared) every layer of ``image`` in overlay form; returns the ``diff`` dirs, bottom first."""
        chains = self.check(image)
        out = Unpacked([])
        for desc, diff_id, chain in zip(image.manifest.layers, image.config.diff_ids, chains, strict=True):
            out.dirs.append(self.ensure_layer(desc, diff_id, chain, out.skipped))
        return out

    def ensure_layer(
        self, desc: Descriptor, diff_id: str, chain: str, skipped: list[tuple[str, str]] | None = None
    ) -> Path:
        """Unpacks one stored layer in overlay form into the cache, once (locked across processes, built aside and
        renamed into place); returns its ``diff`` dir. The blob's digest and diff_id are verified while unpacking.
        Entries that could not be created (devices without root, ...) are appended to ``skipped``."""
        final = self.layer_dir(chain)
        if (final / "info.json").is_file():
            return final / "diff"
        with _fs.locked(self.layers_dir / f".{final.name}.lock"):
            if not (final / "info.json").is_file():
                tmp = self.layers_dir / f".tmp-{final.name}-{secrets.token_hex(4)}"
                try:
                    (tmp / "diff").mkdir(parents=True)
                    stats = extract_layer(
                        self.store.blob_path(desc.digest),
                        tmp / "diff",
                        overlay=True,
                        expected_digest=desc.digest,
                        expected_diff_id=diff_id,
                        allow_devices=os.geteuid() == 0,
                    )
                    if skipped is not None:
                        skipped.extend(stats.skipped)
                    info = {"chain_id": chain, "diff_id": diff_id, "digest": desc.digest, "size": stats.bytes,
                            "entries": stats.entries, "skipped": [list(s) for s in stats.skipped]}  # fmt: skip
                    _fs.atomic_write_json(tmp / "info.json", info)
                    _fs.rmtree(final, ignore_errors=True)
                    tmp.rename(final)
                finally:
                    _fs.rmtree(tmp, ignore_errors=True)
        return final / "diff"

    def baseline_key(self, image: Image) -> str:
        """The directory name of the image's flattened baseline (its top chain ID's hex, ``empty`` for none)."""
        chains = self.check(image)
        return Digest(chains[-1]).hex if chains else "empty"

    def ensure_rootfs(self, image: Image) -> Path:
        """The image flattened once into a read-only baseline directory (copy driver); every layer's digest and
        diff_id are verified while it is flattened, before it is cached under its chain ID."""
        key = self.baseline_key(image)
        final = self.rootfs_dir / key
        if (final / ".complete").is_file():
            return final / "rootfs"
        with _fs.locked(self.rootfs_dir / f".{key}.lock"):
            if not (final / ".complete").is_file():
                tmp = self.rootfs_dir / f".tmp-{key}-{secrets.token_hex(4)}"
                try:
                    (tmp / "rootfs").mkdir(parents=True)
                    # One layer at a time, each checked against its digest and the config's diff_id; whiteouts of
                    # a layer apply to what the layers below it wrote (flatten form).
                    for desc, diff_id in zip(image.manifest.layers, image.config.diff_ids, strict=True):
                        extract_layer(
                            self.store.blob_path(desc.digest),
                            tmp / "rootfs",
                            expected_digest=desc.digest,
                            expected_diff_id=diff_id,
                            allow_devices=os.geteuid() == 0,
                        )
                    (tmp / ".complete").write_text(time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
                    _fs.rmtree(final, ignore_errors=True)
                    tmp.rename(final)
                finally:
                    _fs.rmtree(tmp, ignore_errors=True)
        return final / "rootfs"

    def unpacked_bytes(self, chain_id: str) -> int:
        """Bytes of an unpacked layer as recorded when it was made (0 when not unpacked)."""
        try:
            data = _fs.read_json(self.layer_dir(chain_id) / "info.json")
            return int(data.get("unpacked_bytes") or data.get("size") or 0)
        except (OSError, ValueError, AttributeError, TypeError):
            return 0

    def baselines_bytes(self) -> int:
        """Bytes of every complete flattened baseline."""
        total = 0
        for p in self.rootfs_dir.iterdir():
            if not p.name.startswith(".") and (p / ".complete").is_file():
                total += tree_bytes(p)
        return total

    def sweep(self, keep_chains: Iterable[str], keep_baselines: Iterable[str]) -> tuple[list[str], int]:
        """Removes unpacked layers and baselines whose key is not kept (caller holds the GC lock). Each goes under
        the lock it is built under, renamed away first so it vanishes atomically. Returns (removed, bytes)."""
        keep = {Digest(c).hex if ":" in c else c for c in keep_chains}
        tops = set(keep_baselines)
        removed: list[str] = []
        reclaimed = 0
        for base, marker, wanted, label in (
            (self.layers_dir, "info.json", keep, "layers"),
            (self.rootfs_dir, ".complete", tops, "rootfs"),
        ):
            for p in sorted(base.iterdir()):
                if p.name.startswith(".") or p.name in wanted or not (p / marker).is_file():
                    continue
                with _fs.locked(base / f".{p.name}.lock"):
                    if not p.is_dir():
                        continue
                    size = tree_bytes(p)
                    trash = base / f".tmp-rm-{p.name}-{secrets.token_hex(4)}"
                    p.rename(trash)
                    _fs.rmtree(trash, ignore_errors=True)
                removed.append(f"{label}/{p.name}")
                reclaimed += size
        return removed, reclaimed

    def cleanup(self, max_age: float = 3600.0) -> list[Path]:
        """Removes ``.tmp-*`` leftovers older than ``max_age`` seconds (a build still running elsewhere is left)."""
        removed: list[Path] = []
        for d in (self.layers_dir, self.rootfs_dir):
            for p in d.glob(".tmp-*"):
                if time.time() - p.lstat().st_mtime > max_age:
                    _fs.rmtree(p, ignore_errors=True)
                    removed.append(p)
        return removed


def tree_bytes(path: Path) -> int:
    """Apparent size of the files under ``path``, each inode once, symlinks not followed; iterative, so a deep
    tree cannot exhaust the stack."""
    total = 0
    seen: set[tuple[int, int]] = set()
    stack = [path]
    while stack:
        d = stack.pop()
        try:
            it = os.scandir(d)
        except OSError:
            continue
        with it:
            for e in it:
                try:
                    st = e.stat(follow_symlinks=False)
                except OSError:
                    continue
                if e.is_dir(follow_symlinks=False):
                    stack.append(Path(e.path))
                    continue
                key = (st.st_dev, st.st_ino)
                if key in seen:
                    continue
                seen.add(key)
                total += st.st_size
    return total
