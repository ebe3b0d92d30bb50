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
- one unreadable container never breaks listing the others: every state file (``config.json``, ``run.json``,
  the monitor's ``state.json``) is read through the bounded loader and checked against its schema; a container
  whose ``config.json`` fails is listed with :attr:`Container.error` set (what its record still says is kept,
  its image's blobs included, so a collection keeps them), every operation but ``remove`` refuses it with
  :class:`~imgcore.errors.InvalidStateFile`, and :meth:`Containers.fsck` reports (and moves aside) bad files;
- a container runs under the OCI runtime (runc) from a bundle in its directory (``CDIR/bundle``), started through
  its monitor (:mod:`imgcore.runtime.lifecycle`), with the store's private runtime root; the paths the runtime
  creates in the rootfs as mountpoints (``/proc``, ``/etc/hosts``, volume destinations, ...) are recorded in
  ``CDIR/run.json`` before the first start, and ``diff``/``commit`` leave them out (with the parent directories
  that changed only because of them) while they are still the empty file or directory the runtime made;
- ``exec`` on a running container is ``runc exec`` with the container's Env/WorkingDir/User; on a container that
  ran and stopped it is docker's ``container <id> is not running``. In a container that was never started the
  library's exec runs a one-shot container of its own on the same rootfs and spec (``runc run`` as root,
  bubblewrap without root), never a chroot (the library's README and tutorial build images that way);
- without root, ``run`` in the foreground is the container's spec under bubblewrap; a container that outlives
  the command (``start``, ``run -d``) needs root and runc, and says so;
- ``run -d --rm``: the monitor removes the container when it exits (by ``imgcore rm -f``); ``ps`` removes one
  whose monitor could not.
"""

from __future__ import annotations

import builtins
import contextlib
import dataclasses
import errno
import os
import re
import secrets
import stat
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from imgcore import _fs
from imgcore._core import Change, Digest, diff
from imgcore._host import CP, MOUNT, UMOUNT, host_env, umount
from imgcore._json import read_json_file
from imgcore.errors import (
    ContainerNotFound,
    ImgcoreError,
    InvalidArgument,
    InvalidDigest,
    InvalidStateFile,
    InvalidTree,
)
from imgcore.image.catalog import load_image, resolve
from imgcore.image.model import Image
from imgcore.layers.cache import DRIVERS, LayerCache, default_driver, overlay_supported
from imgcore.models import Descriptor, SchemaCheck
from imgcore.runtime import lifecycle
from imgcore.runtime._runc_cmd import Runc, start_failure_exit_status
from imgcore.runtime._state import (
    LOCK,
    STATE,
    ContainerNotRunning,
    ContainerStartFailed,
    ContainerStateError,
    State,
    load_state,
    lock_held,
)
from imgcore.runtime.bwrap import bwrap_command, run_foreground
from imgcore.runtime.host import RuntimeUnavailable, find_bwrap
from imgcore.runtime.runc import find_runtime, find_sandbox
from imgcore.runtime.spec import RunOptions, build_spec, lookup_user, merge_env, missing_mountpoints, write_bundle
from imgcore.store import ContentStore, FsckProblem

__all__ = [
    "RUN_RECORD",
    "Container",
    "Containers",
    "ExecResult",
    "RunOptions",
    "image_of",
    "mounted",
    "now_rfc3339",
    "rootless",
]

#: The container's run options and runtime-made mountpoints, beside its ``config.json``.
RUN_RECORD = "run.json"
#: The container's record (id, name, image by manifest digest, driver, chain IDs).
CONFIG = "config.json"

_NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]*")


def now_rfc3339() -> str:
    """The current time as docker writes it (RFC 3339, microseconds, UTC)."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def image_of(store: ContentStore, c: Container) -> Image:
    """The image a container was created from, by its manifest digest: still there after ``rmi -f`` (which keeps
    a container's blobs), and unaffected by tags that moved since."""
    c.check()
    return load_image(store, Descriptor("", c.manifest_digest, store.blob_size(c.manifest_digest)))


def rootless() -> bool:
    """Whether this process runs containers under bubblewrap, in the foreground only: it has no root, and runc
    (every container that outlives the command) needs root. The CLI and the library ask this one question."""
    return os.geteuid() != 0


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
    error: str = ""  # why its config.json is unusable (a broken container: listed, removable, nothing else)

    def check(self) -> None:
        """Raises ``InvalidStateFile`` for a broken container (one whose ``config.json`` is unusable)."""
        if self.error:
            raise InvalidStateFile(f"container {self.id[:12]}: {self.error}")

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
    def from_json(cls, data: Any, path: Path) -> Container:
        """The record read back from ``config.json``, checked against its schema (``InvalidStateFile`` naming the
        field otherwise)."""
        doc = SchemaCheck(CONFIG, InvalidStateFile)
        obj = doc.obj(data, "")
        cid = doc.text(doc.required(obj, "id", ""), "id")
        if cid != path.name:
            doc.fail("id", f"{cid[:80]!r} is not the container's directory name {path.name!r}")
        name = doc.text(doc.required(obj, "name", ""), "name")
        if not _NAME.fullmatch(name):
            doc.expected("name", "a container name ([a-zA-Z0-9][a-zA-Z0-9_.-]*)", name)
        driver = doc.text(doc.required(obj, "driver", ""), "driver")
        if driver not in DRIVERS:
            doc.expected("driver", f"one of {', '.join(DRIVERS)}", driver)
        chains = doc.opt_str_list(obj, "chain_ids", "") or []
        skipped = obj.get("skipped") or []
        if not isinstance(skipped, list):
            doc.expected("skipped", "an array of [path, reason] pairs", skipped)
        for i, pair in enumerate(skipped):
            if not (isinstance(pair, list) and len(pair) == 2 and all(isinstance(x, str) for x in pair)):
                doc.expected(f"skipped[{i}]", "a [path, reason] pair of strings", pair)
        return cls(
            cid,
            name,
            doc.text(doc.required(obj, "image", ""), "image"),
            doc.digest(doc.required(obj, "manifest_digest", ""), "manifest_digest"),
            doc.digest(doc.required(obj, "image_id", ""), "image_id"),
            doc.text(doc.required(obj, "created", ""), "created"),
            driver,
            path,
            tuple(doc.digest(x, f"chain_ids[{i}]") for i, x in enumerate(chains)),
            tuple((p, w) for p, w in skipped),
        )

    @classmethod
    def broken(cls, path: Path, error: str, data: Any = None) -> Container:
        """A container whose ``config.json`` is unusable: what the record still says (a valid name, image digests,
        driver) is kept, so listings show it, ``rm`` can remove it and a collection keeps its image."""
        obj = data if isinstance(data, dict) else {}

        def text(key: str, ok: Callable[[str], bool] = bool) -> str:
            value = obj.get(key)
            return value if isinstance(value, str) and ok(value) else ""

        def digest(key: str) -> str:
            value = text(key)
            try:
                return str(Digest(value)) if value else ""
            except (InvalidDigest, ValueError):
                return ""

        driver = text("driver", lambda d: d in DRIVERS) or ("overlay" if (path / "upper").is_dir() else "copy")
        try:
            created = datetime.fromtimestamp(path.lstat().st_mtime, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        except OSError:
            created = ""
        return cls(path.name, text("name", lambda n: bool(_NAME.fullmatch(n))), text("image")[:200],
                   digest("manifest_digest"), digest("image_id"), created, driver, path, (), error=error)  # fmt: skip


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
        """Every container, newest first; one whose ``config.json`` is missing, unreadable or off its schema is
        listed as broken (:attr:`Container.error` says why)."""
        out = []
        for p in sorted(self.dir.iterdir()):
            if p.name.startswith(".") or p.is_symlink() or not p.is_dir():
                continue
            out.append(_read_container(p))
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

    @_fs.disk_full_is_an_error("create")
    def create(
        self,
        image_ref: str | Image,
        name: str | None = None,
        driver: str | None = None,
        *,
        options: RunOptions | None = None,
        runtime: str | None = None,
        auto_remove: bool = False,
    ) -> Container:
        """A new container from ``image_ref`` (any text :func:`~imgcore.image.catalog.resolve` accepts, or an
        :class:`Image`). The image's layers are unpacked into the shared cache (verified) or flattened (copy).
        ``options`` (docker ``create``'s flags), ``runtime`` and ``auto_remove`` are kept for :meth:`start`."""
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
                    _fs.atomic_write_json(tmp / RUN_RECORD, _run_record(options or RunOptions(), runtime, auto_remove))
                    # Published under the guard: a collection lists the containers once, then reads the
                    # leases; a container appearing in between, its lease already dropped, would lose its image.
                    with lease.guard():
                        tmp.rename(final)
            finally:
                if tmp.exists():
                    _fs.rmtree(tmp, ignore_errors=True)
        return c

    def lowerdirs(self, c: Container) -> builtins.list[Path]:
        """The container's overlay lowerdirs, TOP layer first (overlayfs order)."""
        return [self.layers.layer_dir(ch) / "diff" for ch in reversed(c.chain_ids)]

    def baseline(self, c: Container) -> Path:
        """The copy driver's read-only baseline for ``c`` (re-made, verified, if it was pruned)."""
        return self.layers.ensure_rootfs(image_of(self.store, c))

    def diff(self, c: Container, *, paranoid: bool = False) -> builtins.list[Change]:
        """The container's changes against its image, as ``docker diff`` lists them (A/C/D, path-sorted); what
        the runtime made as mountpoints (and directories changed only because of them) is left out."""
        c.check()
        try:
            if c.driver == "overlay":
                changes = diff([str(p) for p in self.lowerdirs(c)], str(c.upper), overlay=True, paranoid=paranoid)
            else:
                changes = diff(str(self.baseline(c)), str(c.rootfs), paranoid=paranoid)
        except OSError as e:
            if e.errno != errno.ENAMETOOLONG:
                raise
            raise InvalidTree(
                f"diff {c.name}: a path in the container is longer than the kernel accepts (PATH_MAX, 4096 bytes; "
                f"a directory nested too deep): {str(e.filename or '')[-120:]}",
                path=e.filename,
            ) from None
        return _without_runtime_paths(changes, self.runtime_made(c))

    def runtime_made(self, c: Container) -> set[str]:
        """The recorded runtime mountpoints that are still what the runtime made (an empty file, or a directory
        holding nothing but other such mountpoints)."""
        recorded = set(self.run_record(c).get("mountpoints") or ())
        top = c.upper if c.driver == "overlay" else c.rootfs
        made: set[str] = set()
        for mp in sorted(recorded, key=lambda m: -m.count("/")):  # children first
            try:
                st = os.lstat(top / mp.lstrip("/"))
            except OSError:
                continue
            if stat.S_ISREG(st.st_mode) and st.st_size == 0:
                made.add(mp)
            elif stat.S_ISDIR(st.st_mode):
                with contextlib.suppress(OSError):
                    if all(f"{mp.rstrip('/')}/{n.name}" in made for n in (top / mp.lstrip("/")).iterdir()):
                        made.add(mp)
        return made

    def mount(self, c: Container) -> Path:
        """Makes sure the container's rootfs is there (mounting the overlay if needed) and returns its path."""
        c.check()
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
            try:
                umount(c.rootfs)
            except OSError as e:
                raise ImgcoreError(f"unmount {c.name}: {c.rootfs}: {e.strerror}") from None

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

    def remove(self, c: Container, *, force: bool = False) -> None:
        """Unmounts and deletes the container (atomically gone from listings first); a running one needs
        ``force`` (docker ``rm -f``: it is killed first). A broken container, or one whose ``state.json`` is
        corrupt, is removed too (if its monitor still lives, only with ``force``: its runc container is deleted)."""
        try:
            st = self.state(c)
        except InvalidStateFile:
            st = None
        if st is None or c.error:
            self._remove_broken(c, force=force)
        elif st.running:
            if not force:
                raise ContainerStateError(
                    f'cannot remove container "/{c.name}": container is {st.status}: stop the container before '
                    "removing or force remove",
                    cid=c.id,
                    status=st.status,
                )
            with contextlib.suppress(ContainerNotRunning):
                if st.status == "paused":
                    lifecycle.unpause(c.path)
                lifecycle.kill(c.path, "KILL")
            lifecycle.wait(c.path, timeout=30)
        elif st.status == "exited":
            lifecycle.stop(c.path, 0)  # a container whose monitor died may still run: runc delete --force
        self.unmount(c)
        trash = self.dir / f".tmp-rm-{c.id}"
        c.path.rename(trash)
        _fs.rmtree(trash, ignore_errors=True)

    def _remove_broken(self, c: Container, *, force: bool) -> None:
        if lock_held(c.path / LOCK):
            if not force:
                raise ContainerStateError(
                    f'cannot remove container "/{c.name or c.id[:12]}": its monitor is still running: force remove',
                    cid=c.id, status="unknown")  # fmt: skip
            with contextlib.suppress(ImgcoreError, OSError):
                rt = find_runtime(None, root=self.store.paths.runtime)
                Runc(str(rt.path), str(rt.root)).run("delete", "--force", c.id)
        if c.driver == "overlay" and mounted(c.rootfs):
            subprocess.run([UMOUNT, "-l", str(c.rootfs)], capture_output=True, check=False, env=host_env())

    def sweep_auto_removed(self) -> builtins.list[Container]:
        """Removes the containers run with ``--rm`` that have exited (a detached one outlives its starter, so it
        is removed by the next listing, as docker's daemon removes it on exit); returns them."""
        gone = []
        for c in self.list():
            with contextlib.suppress(ImgcoreError, OSError):  # a broken record: listed with its error, left alone
                if not c.error and self.run_record(c).get("auto_remove") and self.state(c).status == "exited":
                    self.remove(c)
                    gone.append(c)
        return gone

    # -- running ------------------------------------------------------------------------------------------------

    def run_record(self, c: Container) -> dict[str, Any]:
        """``CDIR/run.json``: the run options, runtime, auto-remove flag and recorded runtime mountpoints (the
        defaults when there is none); a corrupt one raises ``InvalidStateFile`` naming the field."""
        c.check()
        try:
            return check_run_record(read_json_file(c.path / RUN_RECORD, RUN_RECORD, error=InvalidStateFile))
        except FileNotFoundError:
            return _run_record(RunOptions(), None, False)
        except OSError as e:
            raise InvalidStateFile(f"container {c.id[:12]}: {RUN_RECORD}: unreadable: {e.strerror or e}") from None
        except InvalidStateFile as e:
            raise InvalidStateFile(f"container {c.id[:12]}: {e}") from None

    def options(self, c: Container) -> RunOptions:
        """The container's run options, as given to ``create``/``run``."""
        o = self.run_record(c).get("options") or {}
        argv, entry = o.get("argv"), o.get("entrypoint")
        return RunOptions(
            argv=tuple(argv) if argv is not None else None,
            entrypoint=tuple(entry) if entry is not None else None,
            env=tuple(o.get("env") or ()),
            workdir=o.get("workdir"),
            user=o.get("user"),
            tty=bool(o.get("tty")),
            open_stdin=bool(o.get("open_stdin")),
            hostname=o.get("hostname"),
            volumes=tuple(o.get("volumes") or ()),
            network=str(o.get("network") or "bridge"),
            container_id=c.id,
        )

    def command(self, c: Container) -> builtins.list[str]:
        """The container's command (its process args: ENTRYPOINT + CMD, or what ``run`` overrode)."""
        args = self.run_record(c).get("args")
        if args:
            return [str(a) for a in args]
        o = self.options(c)
        rc = image_of(self.store, c).run_config
        entry = list(o.entrypoint) if o.entrypoint is not None else list(rc.entrypoint)
        cmd = list(o.argv) if o.argv else ([] if o.entrypoint is not None else list(rc.cmd))
        return entry + cmd

    def state(self, c: Container) -> State:
        """The runtime state: ``created`` (never started), ``running``, ``paused`` or ``exited`` with its code and
        times (a container whose monitor died reads as exited). A corrupt ``state.json`` raises
        ``InvalidStateFile``."""
        return lifecycle.state(c.path)

    def fsck(self, *, repair: bool = False) -> builtins.list[FsckProblem]:
        """Checks every state file of every container against its schema (``config.json``, ``run.json``,
        ``state.json``, the exec records, the runtime bundle's ``config.json``); with ``repair`` a bad one is
        moved into ``imgcore/lost+found/`` (never deleted), which leaves a container without a usable record
        listed as broken until ``rm`` removes it."""
        problems: builtins.list[FsckProblem] = []
        for p in sorted(self.dir.iterdir()):
            if p.name.startswith("."):
                continue
            if p.is_symlink() or not p.is_dir():
                problems.append(self._fsck_problem(p, "not a container directory (a symlink or a file)", repair))
                continue
            problems.extend(self._fsck_problem(f, why, repair) for f, why in _bad_state_files(p))
        return problems

    def _fsck_problem(self, path: Path, why: str, repair: bool) -> FsckProblem:
        if not repair or (not path.exists() and not path.is_symlink()):
            return FsckProblem(str(path), why)
        lost = self.store.paths.lost_and_found
        lost.mkdir(parents=True, exist_ok=True)
        rel = path.relative_to(self.dir)
        dest = lost / f"{int(time.time())}-{secrets.token_hex(4)}-container-{'-'.join(rel.parts)}"
        try:
            path.rename(dest)
        except OSError as e:
            return FsckProblem(str(path), why, f"could not move it aside: {e.strerror or e}")
        return FsckProblem(str(path), why, f"moved to {dest}")

    def start(self, c: Container, *, attach_first: bool = False, runtime: str | None = None) -> State:
        """Starts the container under the OCI runtime (docker ``start``): mounts its rootfs, builds the runtime
        spec from the image config and its run options, writes the bundle, records the mountpoints the runtime
        will create, and starts it through its monitor. A running container is left as it is."""
        c.check()
        current = self.state(c)
        if current.running:
            return current
        if rootless():
            sandbox = "bubblewrap is" if find_bwrap() else "bubblewrap (apt-get install -y bubblewrap) would be"
            raise RuntimeUnavailable(
                f"start {c.name}: a container that outlives the command needs root and runc (imgcore sets up no "
                f"rootless runtime); without root {sandbox} used for `run` in the foreground (no -d)"
            )
        record = self.run_record(c)
        rt = find_runtime(runtime or record.get("runtime") or None, root=self.store.paths.runtime)
        opts = self.options(c)
        self._bundle(c, opts, c.path)
        # run --rm: a detached container is removed by its monitor when it exits (docker's daemon does it); one
        # that is attached to is removed by the command that waits for it
        return lifecycle.start(
            c.path, c.id, rt.path, rt.root, tty=opts.tty, open_stdin=opts.open_stdin, attach_first=attach_first,
            remove_on_exit=self.store.root if record.get("auto_remove") and not attach_first else None,
        )  # fmt: skip

    def run_foreground(self, c: Container, *, runtime: str | None = None) -> int:
        """``run --rm`` without ``-d``, ``-i`` or ``-t``: the container under runc in the foreground with this
        process's stdio and no monitor (:func:`imgcore.runtime.lifecycle.run_foreground`); returns its exit code."""
        if rootless():
            return self.run_unprivileged(c).returncode
        rt = find_runtime(runtime or self.run_record(c).get("runtime") or None, root=self.store.paths.runtime)
        self._bundle(c, self.options(c), c.path)
        return lifecycle.run_foreground(c.path, c.id, rt.path, rt.root)

    def run_unprivileged(
        self, c: Container, *, capture: bool = False, warn: Callable[[str], None] | None = None
    ) -> ExecResult:
        """``run`` without root: the container's spec under bubblewrap in the foreground (see
        :mod:`imgcore.runtime.bwrap` for what it keeps and loses; ``warn`` hears the losses). Returns the exit
        code and, with ``capture``, the output. Raises :class:`RuntimeUnavailable` when bubblewrap is missing."""
        bwrap = find_bwrap()
        if bwrap is None:
            raise RuntimeUnavailable(
                f"run {c.name}: without root imgcore runs containers under bubblewrap, which is not installed "
                "(apt-get install -y bubblewrap); runc needs root"
            )
        opts = self.options(c)
        self._bundle(c, opts, c.path)
        out = subprocess.PIPE if capture else None
        stdin = None if opts.open_stdin else subprocess.DEVNULL
        proc = run_foreground(c.path, c.id, bwrap, stdin=stdin, stdout=out, stderr=out, warn=warn)
        return ExecResult(tuple(self.command(c)), proc.returncode, proc.stdout, proc.stderr)

    def stop_signal(self, c: Container) -> str:
        """The image's StopSignal, else SIGTERM."""
        return str(image_of(self.store, c).config.config.get("StopSignal") or "SIGTERM")

    def stop(self, c: Container, timeout: float = 10) -> int:
        """docker ``stop``: the stop signal, then SIGKILL after ``timeout`` seconds; returns the exit code."""
        return lifecycle.stop(c.path, timeout, self.stop_signal(c))

    def kill(self, c: Container, signal: str | int = "KILL") -> None:
        """docker ``kill``: ``signal`` to the container's process."""
        lifecycle.kill(c.path, signal)

    def wait(self, c: Container, timeout: float | None = None) -> int:
        """Blocks until the container exits; its exit code (docker ``wait``). A never-started one is an error."""
        if self.state(c).status == "created":
            raise ContainerStateError(f"container {c.id} was never started", cid=c.id, status="created")
        return lifecycle.wait(c.path, timeout)

    def restart(self, c: Container, timeout: float = 10) -> State:
        """docker ``restart``: stop if running, then start again (the spec is rebuilt, as docker does)."""
        if self.state(c).running:
            self.stop(c, timeout)
        return self.start(c)

    def pause(self, c: Container) -> None:
        """Freezes the container's processes (``runc pause``)."""
        lifecycle.pause(c.path)

    def unpause(self, c: Container) -> None:
        """Thaws a paused container."""
        lifecycle.unpause(c.path)

    def exec_process(
        self,
        c: Container,
        argv: builtins.list[str],
        *,
        env: dict[str, str] | builtins.list[str] | None = None,
        workdir: str | None = None,
        user: str | None = None,
    ) -> dict[str, Any]:
        """The OCI process for ``exec`` in the running container: its spec's Env (plus ``env``), cwd and user."""
        if not argv:
            raise InvalidArgument("exec: no command given")
        try:
            spec = _fs.read_json(c.path / "bundle" / "config.json")
        except (OSError, ValueError):
            raise ContainerNotRunning(f"container {c.id} is not running", cid=c.id) from None
        base = dict(spec.get("process") or {})
        extra = [f"{k}={v}" for k, v in env.items()] if isinstance(env, dict) else list(env or ())
        process: dict[str, Any] = {
            "args": list(argv),
            "env": merge_env(list(base.get("env") or ()), extra),
            "cwd": workdir or base.get("cwd") or "/",
            "user": base.get("user") or {"uid": 0, "gid": 0},
        }
        for key in ("capabilities", "rlimits"):
            if key in base:
                process[key] = base[key]
        if user is not None:
            u = lookup_user(c.rootfs, user)
            process["user"] = {"uid": u.uid, "gid": u.gid}
            if u.additional_gids:
                process["user"]["additionalGids"] = list(u.additional_gids)
        return process

    def exec(
        self,
        c: Container,
        argv: builtins.list[str],
        *,
        env: dict[str, str] | builtins.list[str] | None = None,
        capture: bool = False,
        workdir: str | None = None,
        user: str | None = None,
        tty: bool = False,
        stdin: bool = False,
        detach: bool = False,
        created_fallback: bool = True,
    ) -> ExecResult:
        """Runs ``argv`` in the container (docker ``exec``); returns the exit code and, with ``capture``, stdout
        and stderr. A running container: ``runc exec`` with its Env, WorkingDir and User. One that was never
        started (``created_fallback``): a one-shot container on its rootfs (:meth:`_exec_created`). Otherwise
        docker's ``container <id> is not running``."""
        c.check()
        if not argv:
            raise InvalidArgument("exec: no command given")
        st = self.state(c)
        if st.status == "created" and created_fallback and not (tty or stdin or detach):
            as_dict = dict(e.partition("=")[::2] for e in env) if isinstance(env, list) else env
            return self._exec_created(c, argv, env=as_dict, capture=capture, workdir=workdir, user=user)
        if st.status == "paused":
            raise ContainerStateError(f"container {c.id} is paused, unpause the container before exec", cid=c.id,
                                      status=st.status)  # fmt: skip
        if not st.running:
            raise ContainerNotRunning(f"container {c.id} is not running", cid=c.id, status=st.status)
        process = self.exec_process(c, argv, env=env, workdir=workdir, user=user)
        if not capture:
            code = lifecycle.exec(c.path, c.id, process, tty=tty, stdin=stdin, detach=detach)
            return ExecResult(tuple(argv), code if code is not None else 0, None, None)
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            code = lifecycle.exec(c.path, c.id, process, stdio=(0, out.fileno(), err.fileno()))
            out.seek(0)
            err.seek(0)
            return ExecResult(tuple(argv), code if code is not None else 0, out.read(), err.read())

    def _exec_created(
        self,
        c: Container,
        argv: builtins.list[str],
        *,
        env: dict[str, str] | None = None,
        capture: bool = False,
        workdir: str | None = None,
        user: str | None = None,
    ) -> ExecResult:
        """Runs ``argv`` in a container that was never started, as a one-shot container of its own on the same
        rootfs (as ``buildah run`` does): the container's spec (Env, WorkingDir, User, mounts, namespaces,
        capabilities, masked paths) with ``argv`` as the process, under runc as root, else under bubblewrap.
        The runtime's mountpoints are recorded, so ``diff``/``commit`` leave them out. Returns the exit code and,
        with ``capture``, stdout and stderr."""
        if not argv:
            raise InvalidArgument("exec: no command given")
        base = self.options(c)
        extra_env = tuple(f"{k}={v}" for k, v in (env or {}).items())
        tid = f"{c.id}-x{secrets.token_hex(4)}"
        opts = dataclasses.replace(
            base, argv=tuple(argv), entrypoint=(), env=base.env + extra_env, workdir=workdir or base.workdir,
            user=user if user is not None else base.user, tty=False, open_stdin=False,
            hostname=base.hostname or c.id[:12], container_id=tid,
        )  # fmt: skip
        sandbox = find_sandbox(self.run_record(c).get("runtime") or None, root=self.store.paths.runtime)
        bundle = self._bundle(c, opts, c.path / f".exec-{tid}")
        out = subprocess.PIPE if capture else None
        try:
            if isinstance(sandbox, str):
                spec = _fs.read_json(bundle / "config.json")
                proc = subprocess.run(bwrap_command(spec, sandbox).argv, env=host_env(), stdin=subprocess.DEVNULL,
                                      stdout=out, stderr=out, check=False)  # fmt: skip
            else:
                proc = sandbox.run(bundle, tid, stdout=out, stderr=out)
        except OSError as e:
            raise ImgcoreError(f"exec {c.name}: {argv[0]}: {e.strerror or e}") from None
        finally:
            _fs.rmtree(bundle.parent, ignore_errors=True)
        marker = b"unable to start container process: "
        if not isinstance(sandbox, str) and proc.returncode != 0 and capture and marker in (proc.stderr or b""):
            message = proc.stderr.decode(errors="replace").strip().splitlines()[-1]
            reason = message.split(marker.decode(), 1)[1]
            raise ContainerStartFailed(message, cid=c.id, stage="exec", runtime_message=message, reason=reason,
                                       exit_status=start_failure_exit_status(message))  # fmt: skip
        return ExecResult(tuple(argv), proc.returncode, proc.stdout, proc.stderr)

    def _bundle(self, c: Container, opts: RunOptions, cdir: Path) -> Path:
        """Mounts the container's rootfs, builds the runtime spec from the image config and ``opts``, records the
        mountpoints the runtime will create and the process args in ``run.json``, and writes the bundle under
        ``cdir``; returns the bundle directory."""
        before = self.run_record(c)
        record = dict(before)  # the keys below are replaced, never changed in place
        root = self.mount(c)
        spec = build_spec(image_of(self.store, c).config.data, root.absolute(), opts)
        made = missing_mountpoints(root, spec)
        record["mountpoints"] = sorted(set(record.get("mountpoints") or ()) | set(made))
        if cdir == c.path:
            record["args"] = list(spec["process"]["args"])
        if record != before:  # unchanged on a restart: no second durable write
            _fs.atomic_write_json(c.path / RUN_RECORD, record)
        return write_bundle(cdir, spec)

    def cleanup(self, max_age: float = 3600.0) -> builtins.list[Path]:
        """Removes leftovers of interrupted commands (``.tmp-*`` older than ``max_age`` seconds, so a create still
        copying a large image in another process is left alone); ``prune`` calls it. Returns what it removed."""
        removed: builtins.list[Path] = []
        for p in self.dir.glob(".tmp-*"):
            if time.time() - p.lstat().st_mtime > max_age:
                if p.is_dir() and mounted(p / "merged"):
                    continue
                _fs.rmtree(p, ignore_errors=True)
                removed.append(p)
        return removed + self.layers.cleanup(max_age)


def _run_record(options: RunOptions, runtime: str | None, auto_remove: bool) -> dict[str, Any]:
    """What ``CDIR/run.json`` holds before the first start."""
    o = options
    return {
        "options": {
            "argv": list(o.argv) if o.argv is not None else None,
            "entrypoint": list(o.entrypoint) if o.entrypoint is not None else None,
            "env": list(o.env),
            "workdir": o.workdir,
            "user": o.user,
            "tty": o.tty,
            "open_stdin": o.open_stdin,
            "hostname": o.hostname,
            "volumes": [
                v if isinstance(v, str) else f"{v.source}:{v.destination}{':ro' if v.read_only else ''}"
                for v in o.volumes
            ],
            "network": o.network,
        },
        "runtime": runtime,
        "auto_remove": auto_remove,
        "mountpoints": [],
        "args": None,
    }


def _without_runtime_paths(changes: builtins.list[Change], made: set[str]) -> builtins.list[Change]:
    """``changes`` minus the runtime-made mountpoints and the directories that changed only because of them."""
    if not made:
        return changes
    ancestors = {p.rsplit("/", i)[0] or "/" for p in made for i in range(1, p.count("/"))}
    kept = [ch for ch in changes if ch.path not in made]
    paths = {ch.path for ch in kept}
    for ch in sorted(kept, key=lambda ch: -ch.path.count("/")):  # deepest first: a parent sees its children gone
        if ch.kind == "C" and ch.metadata_only and ch.path in ancestors:
            prefix = ch.path.rstrip("/") + "/"
            if not any(p.startswith(prefix) for p in paths):
                paths.discard(ch.path)
    return [ch for ch in kept if ch.path in paths]


def _read_container(p: Path) -> Container:
    """The container in directory ``p``, or a broken one saying why its ``config.json`` is unusable."""
    data: Any = None
    try:
        data = read_json_file(p / CONFIG, CONFIG, error=InvalidStateFile)
        return Container.from_json(data, p)
    except FileNotFoundError:
        return Container.broken(p, f"{CONFIG} is missing")
    except InvalidStateFile as e:
        return Container.broken(p, str(e), data)
    except OSError as e:
        return Container.broken(p, f"{CONFIG}: unreadable: {e.strerror or e}")


def check_run_record(data: Any) -> dict[str, Any]:
    """``run.json`` checked against its schema (what :func:`_run_record` writes; ``null`` is absent)."""
    doc = SchemaCheck(RUN_RECORD, InvalidStateFile)
    obj = doc.obj(data, "")
    o = obj.get("options")
    if o is not None:
        doc.obj(o, "options")
        for key in ("argv", "entrypoint", "env", "volumes"):
            doc.opt_str_list(o, key, "options")
        for key in ("workdir", "user", "hostname", "network"):
            doc.opt_str(o, key, "options")
        for key in ("tty", "open_stdin"):
            doc.flag(o, key, "options")
    doc.opt_str(obj, "runtime", "")
    doc.flag(obj, "auto_remove", "")
    doc.opt_str_list(obj, "mountpoints", "")
    doc.opt_str_list(obj, "args", "")
    return dict(obj)


def _check_json_object(path: Path, what: str) -> None:
    data = read_json_file(path, what, error=InvalidStateFile)
    SchemaCheck(what, InvalidStateFile).obj(data, "")


def _bad_state_files(cdir: Path) -> Iterator[tuple[Path, str]]:
    """The state files of one container directory that fail their schema (file, why)."""
    checks: builtins.list[tuple[Path, Callable[[Path], object]]] = [
        (cdir / CONFIG, lambda f: Container.from_json(read_json_file(f, CONFIG, error=InvalidStateFile), cdir)),
        (cdir / RUN_RECORD, lambda f: check_run_record(read_json_file(f, RUN_RECORD, error=InvalidStateFile))),
        (cdir / STATE, load_state),
        (cdir / "bundle" / "config.json", lambda f: _check_json_object(f, "bundle/config.json")),
    ]
    checks += [(f, load_state) for f in sorted(cdir.glob("exec-*.state.json"))]
    checks += [(f, lambda f: _check_json_object(f, f.name)) for f in sorted(cdir.glob("exec-*.process.json"))]
    for f, check in checks:
        if f.is_symlink():
            yield f, "a symlink where a state file belongs"
            continue
        try:
            check(f)
        except FileNotFoundError:
            if f.name == CONFIG and f.parent == cdir:
                yield f, f"{CONFIG} is missing: the container has no record"
        except (InvalidStateFile, OSError) as e:
            yield f, str(e)
