"""Writable containers on top of read-only images: create, list, mount, exec, remove.

Two drivers, chosen per container at ``create`` (see :mod:`imgcore.layers.cache` for the shared read-only part):

- ``overlay``: the container is an ``upper/`` + ``work/`` pair mounted over the image's cached layers at
  ``merged/``; its changes are exactly what lands in ``upper/``, so a commit costs what changed;
- ``copy``: the container is a private copy (``cp -a --reflink=auto``) of the image's flattened baseline, and a
  commit compares the copy against the baseline.

Invariants:
- a container directory is built as ``.tmp-<id>`` and renamed into place when complete, so a killed ``create``
  leaves the container whole or absent; a container's ``config.json`` pins its image by manifest digest, which
  makes the container a garbage-collection root from the moment it exists;
- ``create`` holds a lease on the image's blobs and layers until the container exists (it is renamed into place
  under the lease's guard, so no collection sees neither), and claims its name under the store's name lock, so
  two ``create --name`` of one name never both succeed;
- host helpers (mount, umount, cp) are called by absolute path with imgcore's own environment; the image's
  environment only ever reaches processes inside the container;
- one unreadable container never breaks listing the others.
"""

from __future__ import annotations

import builtins
import contextlib
import os
import re
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
from imgcore._core import Change, diff
from imgcore._host import BWRAP, CP, MOUNT, UMOUNT, host_env
from imgcore.errors import ContainerNotFound, ImgcoreError, InvalidArgument
from imgcore.image.catalog import load_image, resolve
from imgcore.image.model import Image
from imgcore.layers.cache import DRIVERS, LayerCache, default_driver, overlay_supported
from imgcore.models import Descriptor
from imgcore.store import ContentStore

__all__ = ["Container", "Containers", "ExecResult", "image_of", "mounted", "now_rfc3339"]

_NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]*")


def now_rfc3339() -> str:
    """The current time as docker writes it (RFC 3339, microseconds, UTC)."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def image_of(store: ContentStore, c: Container) -> Image:
    """The image a container was created from, by its manifest digest: still there after ``rmi -f`` (which keeps
    a container's blobs), and unaffected by tags that moved since."""
    return load_image(store, Descriptor("", c.manifest_digest, store.blob_size(c.manifest_digest)))


def mounted(path: Path) -> bool:
    """Whether ``path`` is a mount point (read from the kernel's mount table)."""
    target = str(path)
    with open("/proc/self/mountinfo") as f:  # noqa: PTH123
        return any(line.split()[4] == target for line in f)


@dataclass(frozen=True)
class ExecResult:
    """What :meth:`Containers.exec` returns: the exit code and, when captured, the output (like
    ``subprocess.CompletedProcess``)."""

    args: tuple[str, ...]
    returncode: int
    stdout: bytes | None = None
    stderr: bytes | None = None

    @property
    def exit_code(self) -> int:
        """docker-py's name for :attr:`returncode`."""
        return self.returncode

    @property
    def output(self) -> bytes | None:
        """docker-py's ``exec_run(...).output``: the captured stdout."""
        return self.stdout


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
    skipped: tuple[tuple[str, str], ...] = ()  # entries of its layers not created (devices without root, ...)

    @property
    def rootfs(self) -> Path:
        """The container's root filesystem (the overlay mount point, or the private copy)."""
        return self.path / ("merged" if self.driver == "overlay" else "rootfs")

    @property
    def upper(self) -> Path:
        """The overlay driver's writable layer."""
        return self.path / "upper"

    def to_json(self) -> dict[str, Any]:
        """The record as stored in the container's ``config.json``."""
        return {
            "id": self.id,
            "name": self.name,
            "image": self.image,
            "manifest_digest": self.manifest_digest,
            "image_id": self.image_id,
            "created": self.created,
            "driver": self.driver,
            "chain_ids": list(self.chain_ids),
            "skipped": [list(s) for s in self.skipped],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any], path: Path) -> Container:
        """The record read back from ``config.json``."""
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
            tuple((str(p), str(w)) for p, w in data.get("skipped") or ()),
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

    def __init__(self, store: ContentStore) -> None:
        self.store = store
        self.dir = store.paths.containers
        self.layers = LayerCache(store)
        self.dir.mkdir(parents=True, exist_ok=True)

    # -- queries ------------------------------------------------------------------------------------------------

    def list(self) -> builtins.list[Container]:
        """Every complete container, newest first; an unreadable ``config.json`` is skipped (see :meth:`broken`)."""
        out = []
        for p in sorted(self.dir.iterdir()):
            if p.name.startswith(".") or not (p / "config.json").is_file():
                continue
            with contextlib.suppress(OSError, ValueError, KeyError, TypeError, AttributeError):
                out.append(Container.from_json(_fs.read_json(p / "config.json"), p))
        return sorted(out, key=lambda c: c.created, reverse=True)

    def get(self, name_or_id: str) -> Container:
        """A container by name, full ID or unique ID prefix (docker's rules)."""
        everything = self.list()
        matches = [c for c in everything if c.name == name_or_id]
        if not matches and name_or_id:
            matches = [c for c in everything if c.id.startswith(name_or_id)]
        if not matches:
            raise ContainerNotFound(f"No such container: {name_or_id}")
        if len(matches) > 1:
            raise ContainerNotFound(f"container ID prefix {name_or_id!r} is ambiguous: {len(matches)} match")
        return matches[0]

    def using_image(self, digest: str) -> builtins.list[Container]:
        """Containers created from the image with this manifest digest or image ID."""
        return [c for c in self.list() if digest in (c.manifest_digest, c.image_id)]

    # -- lifecycle ----------------------------------------------------------------------------------------------

    def default_driver(self) -> str:
        """The driver ``create`` uses when none is named (``$IMGCORE_DRIVER``, else overlay where possible)."""
        return default_driver(self.dir)

    def _new_name(self) -> str:
        taken = {c.name for c in self.list()}
        for _ in range(100):
            name = f"{secrets.choice(_ADJ)}_{secrets.choice(_NOUN)}"
            if name not in taken:
                return name
        return f"container_{secrets.token_hex(4)}"

    def create(self, image_ref: str | Image, name: str | None = None, driver: str | None = None) -> Container:
        """A new container from ``image_ref`` (any text :func:`~imgcore.image.catalog.resolve` accepts, or an
        :class:`Image`). The image's layers are unpacked into the shared cache (verified) or flattened (copy)."""
        driver = driver or self.default_driver()
        if driver not in DRIVERS:
            raise InvalidArgument(f"unknown driver {driver!r}: expected one of {', '.join(DRIVERS)}")
        if driver == "overlay":
            reason = overlay_supported(self.dir)
            if reason is not None:
                raise ImgcoreError(f"create: overlay driver unavailable: {reason}")
        if name is not None and not _NAME.fullmatch(name):
            raise InvalidArgument(f'Invalid container name "{name}", only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed')
        cid = secrets.token_hex(32)
        tmp = self.dir / f".tmp-{cid}"
        final = self.dir / cid
        with self.store.lease("create") as lease:
            with lease.guard():
                image = resolve(self.store, image_ref) if isinstance(image_ref, str) else image_ref
                chains = self.layers.check(image)
                lease.add(image.digest, image.manifest_desc.digest, image.id,
                          *(d.digest for d in image.manifest.layers), *(LayerCache.key(c) for c in chains))  # fmt: skip
            skipped: builtins.list[tuple[str, str]] = []
            try:
                tmp.mkdir()
                if driver == "overlay":
                    skipped = self.layers.ensure_layers(image).skipped
                    for d in ("upper", "work", "merged"):
                        (tmp / d).mkdir()
                else:
                    base = self.layers.ensure_rootfs(image)
                    lease.hold(f"rootfs/{self.layers.baseline_key(image)}")
                    r = subprocess.run(
                        [CP, "-a", "--reflink=auto", str(base), str(tmp / "rootfs")],
                        capture_output=True,
                        text=True,
                        check=False,
                        env=host_env(),
                    )
                    if r.returncode != 0:
                        raise ImgcoreError(f"create: copying the image's rootfs failed: {r.stderr.strip()}")
                label = image.tags[0] if image.tags else (image_ref if isinstance(image_ref, str) else image.id)
                with _fs.locked(self.store.paths.names_lock):
                    taken = {c.name for c in self.list()}
                    if name is not None and name in taken:
                        raise ImgcoreError(
                            f'Conflict. The container name "/{name}" is already in use by container '
                            f'"{next(c.id for c in self.list() if c.name == name)}". You have to remove (or rename) '
                            "that container to be able to reuse that name."
                        )
                    c = Container(
                        id=cid,
                        name=name or self._new_name(),
                        image=label,
                        manifest_digest=image.manifest_desc.digest,
                        image_id=image.id,
                        created=now_rfc3339(),
                        driver=driver,
                        path=final,
                        chain_ids=tuple(chains),
                        skipped=tuple((str(p), str(why)) for p, why in skipped),
                    )
                    _fs.atomic_write_json(tmp / "config.json", c.to_json())
                    # Published under the guard: a collection lists the containers once, then reads the
                    # leases; a container appearing in between, its lease already dropped, would lose its image.
                    with lease.guard():
                        tmp.rename(final)
            finally:
                if tmp.exists():
                    shutil.rmtree(tmp, ignore_errors=True)
        return c

    def lowerdirs(self, c: Container) -> builtins.list[Path]:
        """The container's overlay lowerdirs, TOP layer first (overlayfs order)."""
        return [self.layers.layer_dir(ch) / "diff" for ch in reversed(c.chain_ids)]

    def baseline(self, c: Container) -> Path:
        """The copy driver's read-only baseline for ``c`` (re-made, verified, if it was pruned)."""
        return self.layers.ensure_rootfs(image_of(self.store, c))

    def diff(self, c: Container, *, paranoid: bool = False) -> builtins.list[Change]:
        """The container's changes against its image, as ``docker diff`` lists them (A/C/D, path-sorted)."""
        if c.driver == "overlay":
            return diff([str(p) for p in self.lowerdirs(c)], str(c.upper), overlay=True, paranoid=paranoid)
        return diff(str(self.baseline(c)), str(c.rootfs), paranoid=paranoid)

    def mount(self, c: Container) -> Path:
        """Makes sure the container's rootfs is there (mounting the overlay if needed) and returns its path."""
        if c.driver != "overlay":
            return c.rootfs
        if mounted(c.rootfs):
            return c.rootfs
        lowers = [str(p.relative_to(self.layers.layers_dir)) for p in self.lowerdirs(c)]
        if not lowers:
            (self.layers.layers_dir / "empty").mkdir(exist_ok=True)
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
            [MOUNT, "-t", "overlay", "overlay", "-o", opts, str(c.rootfs)],
            cwd=self.layers.layers_dir,
            capture_output=True,
            text=True,
            check=False,
            env=host_env(),
        )
        if r.returncode != 0:
            raise ImgcoreError(f"mount {c.name}: overlay mount failed: {r.stderr.strip()}")
        return c.rootfs

    def unmount(self, c: Container) -> None:
        """Unmounts the container's overlay (nothing to do for the copy driver)."""
        if c.driver == "overlay" and mounted(c.rootfs):
            r = subprocess.run([UMOUNT, str(c.rootfs)], capture_output=True, text=True, check=False, env=host_env())
            if r.returncode != 0:
                raise ImgcoreError(f"unmount {c.name}: {r.stderr.strip()}")

    @contextlib.contextmanager
    def unmounted(self, c: Container) -> Iterator[None]:
        """For reading ``upper/`` consistently: the overlay is unmounted (and remounted after if it was)."""
        was = c.driver == "overlay" and mounted(c.rootfs)
        self.unmount(c)
        try:
            yield
        finally:
            if was:
                self.mount(c)

    def remove(self, c: Container) -> None:
        """Unmounts and deletes the container (atomically gone from listings first)."""
        self.unmount(c)
        trash = self.dir / f".tmp-rm-{c.id}"
        c.path.rename(trash)
        shutil.rmtree(trash, ignore_errors=True)

    def exec(
        self,
        c: Container,
        argv: builtins.list[str],
        *,
        env: dict[str, str] | None = None,
        capture: bool = False,
        workdir: str | None = None,
    ) -> ExecResult:
        """Runs ``argv`` inside the container's rootfs with the image's Env and WorkingDir; as root the process is
        chrooted before it executes (no host binary ever runs with the image's environment), else bubblewrap.
        Returns the exit code and, with ``capture``, stdout and stderr."""
        if not argv:
            raise InvalidArgument("exec: no command given")
        root = self.mount(c)
        rc = image_of(self.store, c).run_config
        full_env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/root"}
        for item in rc.env:
            k, _, v = item.partition("=")
            full_env[k] = v
        full_env.update(env or {})
        cwd = workdir or rc.working_dir or "/"
        out = subprocess.PIPE if capture else None
        try:
            if os.geteuid() == 0:

                def enter() -> None:
                    os.chroot(root)
                    os.chdir(cwd)

                proc = subprocess.run(argv, env=full_env, preexec_fn=enter, stdout=out, stderr=out, check=False)
            elif Path(BWRAP).exists():
                setenv = [a for k, v in full_env.items() for a in ("--setenv", k, v)]
                cmd = [BWRAP, "--bind", str(root), "/", "--proc", "/proc", "--dev", "/dev", "--chdir", cwd,
                       "--clearenv", *setenv, "--", *argv]  # fmt: skip
                proc = subprocess.run(cmd, env=host_env(), stdout=out, stderr=out, check=False)
            else:
                raise ImgcoreError("exec: needs root or bubblewrap (apt-get install bubblewrap); neither is here")
        except OSError as e:
            raise ImgcoreError(f"exec {c.name}: {argv[0]}: {e.strerror or e}") from None
        return ExecResult(tuple(argv), proc.returncode, proc.stdout, proc.stderr)

    def cleanup(self, max_age: float = 3600.0) -> builtins.list[Path]:
        """Removes leftovers of interrupted commands (``.tmp-*`` older than ``max_age`` seconds, so a create still
        copying a large image in another process is left alone); ``prune`` calls it. Returns what it removed."""
        removed: builtins.list[Path] = []
        for p in self.dir.glob(".tmp-*"):
            if time.time() - p.lstat().st_mtime > max_age:
                if p.is_dir() and mounted(p / "merged"):
                    continue
                shutil.rmtree(p, ignore_errors=True)
                removed.append(p)
        return removed + self.layers.cleanup(max_age)
