"""Writable containers on top of read-only images.

Two drivers, chosen per container at ``create``:

- ``overlay`` (root where the kernel allows overlayfs): each layer of the image is unpacked once, in overlay form,
  into ``imgcore/layers/<chain-id hex>/diff`` and shared by every container whose image has that layer (docker's
  overlay2). A container is an ``upper/`` + ``work/`` pair mounted over those lowerdirs at ``merged/``; its
  changes are exactly what lands in ``upper/``, so a commit costs what changed, not the image's size.
- ``copy`` (everywhere else): the image is flattened once into ``imgcore/rootfs/<top chain-id hex>`` (the
  read-only baseline) and the container gets a private copy (``cp -a --reflink=auto``: reflinks where the
  filesystem has them). A commit compares the copy against the baseline.

Consistency: a container directory is built as ``.tmp-<id>`` and renamed into place when complete; unpacked
layers and flattened roots likewise. A killed command leaves only ``.tmp-*`` entries, which are ignored and
removed by ``prune`` once an hour old. Mounts are re-established on demand, so containers survive restarts of
the program.
"""

from __future__ import annotations

import builtins
import contextlib
import json
import os
import secrets
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from imgcore import _fs
from imgcore.errors import ContainerNotFound, ImgcoreError
from imgcore.images import Image, chain_ids, load_image, resolve
from imgcore.models import Descriptor, Manifest
from imgcore.store import Store

__all__ = ["Container", "Containers", "image_of", "overlay_supported", "resolve_image"]

DRIVERS = ("overlay", "copy")


def now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def resolve_image(store: Store, ref: str) -> Image:
    """An image by reference, (short) image ID or digest, as docker resolves them (``images.resolve``)."""
    return resolve(store, ref)


def image_of(store: Store, c: Container) -> Image:
    """The image a container was created from, by its manifest digest: still there after ``rmi -f`` (which keeps
    a container's blobs), and unaffected by tags that moved since."""
    desc = Descriptor("", c.manifest_digest, store.blob_size(c.manifest_digest))
    image = load_image(store, desc)
    return image


_overlay_probe: dict[str, str | None] = {}


def overlay_supported(scratch: Path) -> str | None:
    """None when an overlay mount works here (probed once under ``scratch``), else the reason it does not."""
    key = str(scratch)
    if key in _overlay_probe:
        return _overlay_probe[key]
    reason: str | None = None
    if os.geteuid() != 0:
        reason = "overlayfs needs root"
    else:
        probe = scratch / f".overlay-probe-{secrets.token_hex(4)}"
        try:
            for d in ("l", "u", "w", "m"):
                (probe / d).mkdir(parents=True)
            opts = f"lowerdir={probe / 'l'},upperdir={probe / 'u'},workdir={probe / 'w'}"
            r = subprocess.run(
                ["mount", "-t", "overlay", "overlay", "-o", opts, str(probe / "m")],
                capture_output=True,
                text=True,
                check=False,
            )
            if r.returncode != 0:
                reason = f"overlay mount refused: {r.stderr.strip()}"
            else:
                subprocess.run(["umount", str(probe / "m")], check=False)
        except OSError as e:
            reason = f"overlay probe failed: {e}"
        finally:
            shutil.rmtree(probe, ignore_errors=True)
    _overlay_probe[key] = reason
    return reason


def _mounted(path: Path) -> bool:
    target = str(path)
    with open("/proc/self/mountinfo") as f:  # noqa: PTH123
        return any(line.split()[4] == target for line in f)


@dataclass(frozen=True)
class Container:
    """A container's recorded state (``config.json``)."""

    id: str
    name: str
    image: str
    manifest_digest: str
    image_id: str
    created: str
    driver: str
    path: Path
    chain_ids: tuple[str, ...]

    @property
    def rootfs(self) -> Path:
        return self.path / ("merged" if self.driver == "overlay" else "rootfs")

    @property
    def upper(self) -> Path:
        return self.path / "upper"

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "image": self.image,
            "manifest_digest": self.manifest_digest,
            "image_id": self.image_id,
            "created": self.created,
            "driver": self.driver,
            "chain_ids": list(self.chain_ids),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any], path: Path) -> Container:
        return cls(
            data["id"],
            data["name"],
            data["image"],
            data["manifest_digest"],
            data["image_id"],
            data["created"],
            data["driver"],
            path,
            tuple(data.get("chain_ids", ())),
        )


_ADJ = (
    "admiring",
    "bold",
    "brave",
    "calm",
    "clever",
    "eager",
    "focused",
    "gifted",
    "happy",
    "jolly",
    "keen",
    "modest",
    "nifty",
    "quirky",
    "serene",
    "tender",
    "upbeat",
    "vibrant",
    "wizardly",
    "zealous",
)
_NOUN = (
    "babbage",
    "curie",
    "darwin",
    "euler",
    "fermi",
    "galileo",
    "hopper",
    "kepler",
    "lovelace",
    "mayer",
    "newton",
    "noether",
    "pasteur",
    "ritchie",
    "shannon",
    "thompson",
    "turing",
    "volta",
    "wozniak",
    "yalow",
)


class Containers:
    """The containers of one store."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.dir = store.root / "imgcore" / "containers"
        self.layers_dir = store.root / "imgcore" / "layers"
        self.rootfs_dir = store.root / "imgcore" / "rootfs"
        for d in (self.dir, self.layers_dir, self.rootfs_dir):
            d.mkdir(parents=True, exist_ok=True)

    # -- queries ------------------------------------------------------------------------------------------------

    def list(self) -> builtins.list[Container]:
        out = []
        for p in sorted(self.dir.iterdir()):
            if p.name.startswith(".") or not (p / "config.json").is_file():
                continue
            out.append(Container.from_json(_fs.read_json(p / "config.json"), p))
        return sorted(out, key=lambda c: c.created, reverse=True)

    def get(self, name_or_id: str) -> Container:
        matches = [c for c in self.list() if c.name == name_or_id]
        if not matches and name_or_id:
            matches = [c for c in self.list() if c.id.startswith(name_or_id)]
        if not matches:
            raise ContainerNotFound(f"no such container: {name_or_id}")
        if len(matches) > 1:
            raise ContainerNotFound(f"container ID prefix {name_or_id!r} is ambiguous: {len(matches)} match")
        return matches[0]

    def using_image(self, digest: str) -> builtins.list[Container]:
        """Containers created from the image with this manifest digest or image ID."""
        return [c for c in self.list() if digest in (c.manifest_digest, c.image_id)]

    # -- layers -------------------------------------------------------------------------------------------------

    def layer_dir(self, chain_id: str) -> Path:
        return self.layers_dir / chain_id.split(":", 1)[1]

    def ensure_layers(self, image: Image) -> builtins.list[Path]:
        """Unpacks (once, shared) every layer of ``image`` in overlay form; returns the ``diff`` dirs, bottom first."""

        diff_ids = image.config.diff_ids
        if len(diff_ids) != len(image.manifest.layers):
            from imgcore.errors import InvalidManifest

            raise InvalidManifest(
                f"image {image.id}: {len(image.manifest.layers)} layers but {len(diff_ids)} diff_ids in its config"
            )
        return [
            self.ensure_layer(desc, diff_id, chain)
            for desc, diff_id, chain in zip(image.manifest.layers, diff_ids, chain_ids(diff_ids), strict=True)
        ]

    def ensure_layer(self, desc: Descriptor, diff_id: str, chain: str) -> Path:
        """Unpacks one stored layer in overlay form into the shared cache, once (locked across processes, built
        aside and renamed into place); returns its ``diff`` dir. The blob's digest and diff_id are verified."""
        from imgcore import extract_layer

        final = self.layer_dir(chain)
        if not (final / "info.json").is_file():
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
                        )
                        info = {"chain_id": chain, "diff_id": diff_id, "digest": desc.digest, "size": stats.bytes,
                                "entries": stats.entries}  # fmt: skip
                        _fs.atomic_write_json(tmp / "info.json", info)
                        shutil.rmtree(final, ignore_errors=True)
                        tmp.rename(final)
                    finally:
                        shutil.rmtree(tmp, ignore_errors=True)
        return final / "diff"

    def ensure_rootfs(self, image: Image) -> Path:
        """The image flattened once into a read-only baseline directory (copy driver)."""
        from imgcore import unpack_layers

        chains = chain_ids(image.config.diff_ids)
        key = chains[-1].split(":", 1)[1] if chains else "empty"
        final = self.rootfs_dir / key
        if (final / ".complete").is_file():
            return final / "rootfs"
        with _fs.locked(self.rootfs_dir / f".{key}.lock"):
            if not (final / ".complete").is_file():
                tmp = self.rootfs_dir / f".tmp-{key}-{secrets.token_hex(4)}"
                try:
                    (tmp / "rootfs").mkdir(parents=True)
                    layers = [self.store.blob_path(d.digest) for d in image.manifest.layers]
                    unpack_layers(layers, tmp / "rootfs")
                    (tmp / ".complete").write_text(now_rfc3339())
                    shutil.rmtree(final, ignore_errors=True)
                    tmp.rename(final)
                finally:
                    shutil.rmtree(tmp, ignore_errors=True)
        return final / "rootfs"

    # -- lifecycle ----------------------------------------------------------------------------------------------

    def default_driver(self) -> str:
        env = os.environ.get("IMGCORE_DRIVER")
        if env:
            if env not in DRIVERS:
                raise ImgcoreError(f"IMGCORE_DRIVER={env!r}: expected one of {', '.join(DRIVERS)}")
            return env
        return "overlay" if overlay_supported(self.dir) is None else "copy"

    def _new_name(self) -> str:
        taken = {c.name for c in self.list()}
        for _ in range(100):
            name = f"{secrets.choice(_ADJ)}_{secrets.choice(_NOUN)}"
            if name not in taken:
                return name
        return f"container_{secrets.token_hex(4)}"

    def create(self, image_ref: str, name: str | None = None, driver: str | None = None) -> Container:
        image = resolve_image(self.store, image_ref)
        driver = driver or self.default_driver()
        if driver not in DRIVERS:
            raise ImgcoreError(f"unknown driver {driver!r}: expected one of {', '.join(DRIVERS)}")
        if driver == "overlay":
            reason = overlay_supported(self.dir)
            if reason is not None:
                raise ImgcoreError(f"create: overlay driver unavailable: {reason}")
        if name is not None:
            _check_name(name)
            if any(c.name == name for c in self.list()):
                raise ImgcoreError(f'create: the container name "{name}" is already in use')
        cid = secrets.token_hex(32)
        tmp = self.dir / f".tmp-{cid}"
        final = self.dir / cid
        try:
            tmp.mkdir()
            if driver == "overlay":
                self.ensure_layers(image)
                for d in ("upper", "work", "merged"):
                    (tmp / d).mkdir()
            else:
                base = self.ensure_rootfs(image)
                r = subprocess.run(
                    ["cp", "-a", "--reflink=auto", str(base), str(tmp / "rootfs")],
                    capture_output=True,
                    text=True,
                    check=False,
                )
                if r.returncode != 0:
                    raise ImgcoreError(f"create: copying the image's rootfs failed: {r.stderr.strip()}")
            c = Container(
                id=cid,
                name=name or self._new_name(),
                image=image.tags[0] if image.tags else image_ref,
                manifest_digest=image.manifest_desc.digest,
                image_id=image.id,
                created=now_rfc3339(),
                driver=driver,
                path=final,
                chain_ids=tuple(chain_ids(image.config.diff_ids)),
            )
            _fs.atomic_write_json(tmp / "config.json", c.to_json())
            tmp.rename(final)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        return c

    def lowerdirs(self, c: Container) -> builtins.list[Path]:
        """The container's overlay lowerdirs, TOP layer first (overlayfs order)."""
        return [self.layer_dir(ch) / "diff" for ch in reversed(c.chain_ids)]

    def mount(self, c: Container) -> Path:
        """Makes sure the container's rootfs is there (mounting the overlay if needed) and returns its path."""
        if c.driver != "overlay":
            return c.rootfs
        if _mounted(c.rootfs):
            return c.rootfs
        lowers = [str(p.relative_to(self.layers_dir)) for p in self.lowerdirs(c)]
        if not lowers:
            empty = self.layers_dir / "empty"
            empty.mkdir(exist_ok=True)
            lowers = ["empty"]
        # index/redirect_dir/metacopy off: every change in upper/ is then a plain file, directory, whiteout or
        # opaque marker, which is what the layer diff reads (a renamed directory is copied up whole, not redirected).
        opts = (
            f"lowerdir={':'.join(lowers)},upperdir={c.upper},workdir={c.path / 'work'},"
            "index=off,redirect_dir=off,metacopy=off"
        )
        # Relative lowerdirs, resolved against the layers directory, keep the option string short (docker does
        # the same) so that deep images fit the kernel's one-page limit on mount data.
        r = subprocess.run(
            ["mount", "-t", "overlay", "overlay", "-o", opts, str(c.rootfs)],
            cwd=self.layers_dir,
            capture_output=True,
            text=True,
            check=False,
        )
        if r.returncode != 0:
            raise ImgcoreError(f"mount {c.name}: overlay mount failed: {r.stderr.strip()}")
        return c.rootfs

    def unmount(self, c: Container) -> None:
        if c.driver == "overlay" and _mounted(c.rootfs):
            r = subprocess.run(["umount", str(c.rootfs)], capture_output=True, text=True, check=False)
            if r.returncode != 0:
                raise ImgcoreError(f"unmount {c.name}: {r.stderr.strip()}")

    @contextlib.contextmanager
    def unmounted(self, c: Container) -> Iterator[None]:
        """For reading ``upper/`` consistently: the overlay is unmounted (and remounted after if it was)."""
        was = c.driver == "overlay" and _mounted(c.rootfs)
        self.unmount(c)
        try:
            yield
        finally:
            if was:
                self.mount(c)

    def remove(self, c: Container) -> None:
        self.unmount(c)
        trash = self.dir / f".tmp-rm-{c.id}"
        c.path.rename(trash)  # atomic: the container is gone from listings even if deletion is interrupted
        shutil.rmtree(trash, ignore_errors=True)

    def exec(self, c: Container, argv: builtins.list[str], *, env: dict[str, str] | None = None) -> int:
        """Runs ``argv`` inside the container's rootfs: chroot as root, else bubblewrap; returns its exit code."""
        if not argv:
            raise ImgcoreError("exec: no command given")
        root = self.mount(c)
        image_env = _image_env(self.store, c)
        full_env = {
            "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "HOME": "/root",
            **image_env,
            **(env or {}),
        }
        if os.geteuid() == 0 and shutil.which("chroot"):
            cmd = ["chroot", str(root), *argv]
        elif shutil.which("bwrap"):
            cmd = ["bwrap", "--bind", str(root), "/", "--proc", "/proc", "--dev", "/dev", "--chdir", "/", *argv]
        else:
            raise ImgcoreError("exec: needs root (chroot) or bubblewrap (apt-get install bubblewrap); neither is here")
        try:
            return subprocess.run(cmd, env=full_env, check=False).returncode
        except OSError as e:
            raise ImgcoreError(f"exec {c.name}: {e}") from None

    def cleanup(self, max_age: float = 3600.0) -> builtins.list[Path]:
        """Removes leftovers of interrupted commands (``.tmp-*`` older than ``max_age`` seconds, so a create still
        copying a large image in another process is left alone); ``prune`` calls it. Returns what it removed."""
        removed: builtins.list[Path] = []
        for d in (self.dir, self.layers_dir, self.rootfs_dir):
            for p in d.glob(".tmp-*"):
                if time.time() - p.lstat().st_mtime > max_age:
                    if p.is_dir() and _mounted(p / "merged"):
                        continue
                    shutil.rmtree(p, ignore_errors=True)
                    removed.append(p)
        return removed


def _image_env(store: Store, c: Container) -> dict[str, str]:
    try:
        man = Manifest.from_bytes(store.get_blob(c.manifest_digest))
        cfg = json.loads(store.get_blob(man.config.digest))
    except ImgcoreError:
        return {}
    out = {}
    for item in (cfg.get("config") or {}).get("Env") or []:
        k, _, v = item.partition("=")
        out[k] = v
    return out


def _check_name(name: str) -> None:
    import re

    if not re.fullmatch(r"[a-zA-Z0-9][a-zA-Z0-9_.-]*", name):
        raise ImgcoreError(f'invalid container name "{name}": only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed')
