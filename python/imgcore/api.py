"""The front door: one :class:`Store` object for the whole image workflow, as docker-py's client is for docker.

::

    import imgcore

    store = imgcore.Store()                       # $IMGCORE_ROOT or ~/.local/share/imgcore
    tomcat = store.pull("localhost:5000/tomcat")  # -> imgcore.Image
    box = store.run(tomcat, detach=True)          # -> imgcore.Container, running under runc
    box.exec(["sh", "-c", "cp -r webapps.dist/* webapps"])
    new = box.commit("new_tomcat:1.0", message="newtomcat", author="xxx")
    print([i.tags for i in store.images()])

Invariants: this module only composes the workflows below it (catalog, builder, layers, containers, transfers,
reshape, GC); it holds no policy of its own. Every text that names an image goes through the one resolver; values
returned (:class:`~imgcore.image.model.Image`, :class:`~imgcore.image.model.Layer`) are immutable.
"""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, BinaryIO, Unpack

from imgcore._core import Change
from imgcore._progress import Progress
from imgcore.analysis import Analysis, analyze
from imgcore.containers.commit import commit as _commit
from imgcore.containers.export import export as _export
from imgcore.containers.manager import Container as _Record
from imgcore.containers.manager import Containers, ExecResult, image_of, rootless
from imgcore.gc.collect import DeleteRecord, PruneReport, prune, remove_image
from imgcore.gc.usage import DiskUsage, disk_usage
from imgcore.image.catalog import catalog, list_images, resolve, tag
from imgcore.image.importer import import_image
from imgcore.image.model import Image
from imgcore.models import Platform
from imgcore.reference import parse
from imgcore.registry.auth import Credentials
from imgcore.reshape.mutate import append_layers as _append_layers
from imgcore.reshape.mutate import rebase as _rebase
from imgcore.reshape.mutate import reconfigure as _reconfigure
from imgcore.reshape.squash import flatten as _flatten
from imgcore.reshape.squash import squash as _squash
from imgcore.reshape.squash import squash_leased
from imgcore.runtime import logs as _logs
from imgcore.runtime._state import State
from imgcore.runtime.spec import RunOptions
from imgcore.store import ContentStore, FsckProblem, Lease
from imgcore.transfer import remote as _remote
from imgcore.transfer.archive import load as _load
from imgcore.transfer.archive import save as _save
from imgcore.transfer.copy import CopyOptions, CopyResult
from imgcore.transfer.copy import copy as _copy
from imgcore.transfer.pull import pull as _pull
from imgcore.transfer.push import PushResult
from imgcore.transfer.push import push as _push
from imgcore.transfer.remote import Clients
from imgcore.transfer.sources import DEFAULT_JOBS
from imgcore.transfer.sync import HEAD_JOBS, SyncOptions, SyncResult
from imgcore.transfer.sync import sync as _sync

__all__ = ["Container", "CopyResult", "ExecResult", "Registry", "Store", "SyncResult", "copy", "sync"]


class Container:
    """A container of a :class:`Store`: a writable root over an image (docker-py's ``Container``)."""

    def __init__(self, store: Store, record: _Record) -> None:
        self._store = store
        self._record = record

    def __repr__(self) -> str:
        return f"<Container {self.short_id} {self.name!r} image={self._record.image!r}>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Container) and other.id == self.id

    def __hash__(self) -> int:
        return hash(self.id)

    @property
    def id(self) -> str:
        """The full container ID (64 hex digits)."""
        return self._record.id

    @property
    def short_id(self) -> str:
        """The first 12 hex digits of the ID, as ``docker ps`` shows it."""
        return self._record.id[:12]

    @property
    def name(self) -> str:
        """The container's name (given, or made up as docker does)."""
        return self._record.name

    @property
    def driver(self) -> str:
        """``overlay`` or ``copy``."""
        return self._record.driver

    @property
    def rootfs(self) -> Path:
        """Where the container's root filesystem is (mounted on demand: see :meth:`mount`)."""
        return self._record.rootfs

    @property
    def image(self) -> Image:
        """The image the container was created from (pinned by manifest digest)."""
        return image_of(self._store.content, self._record)

    @property
    def skipped(self) -> tuple[tuple[str, str], ...]:
        """Entries of the image's layers that could not be created in this container (devices without root)."""
        return self._record.skipped

    def exec(
        self,
        argv: Sequence[str],
        *,
        capture: bool = False,
        env: dict[str, str] | None = None,
        workdir: str | None = None,
        user: str | None = None,
    ) -> ExecResult:
        """Runs ``argv`` in the running container (``runc exec``) with its Env, WorkingDir and User; returns the
        exit code and, with ``capture``, stdout and stderr (docker-py's ``exec_run``). On a container that ran
        and stopped: ``ContainerNotRunning``. A container never started runs it as a one-shot container on its
        rootfs (runc as root, bubblewrap otherwise), with its Env, WorkingDir and User."""
        return self._store._containers.exec(
            self._record, list(argv), env=env, capture=capture, workdir=workdir, user=user
        )

    def start(self) -> State:
        """Starts the container under the OCI runtime (``docker start``); returns its state."""
        return self._store._containers.start(self._record)

    def stop(self, timeout: float = 10) -> int:
        """``docker stop``: the stop signal, SIGKILL after ``timeout`` seconds; returns the exit code."""
        return self._store._containers.stop(self._record, timeout)

    def kill(self, signal: str | int = "KILL") -> None:
        """``docker kill``: sends ``signal`` to the container's process."""
        self._store._containers.kill(self._record, signal)

    def wait(self, timeout: float | None = None) -> int:
        """Blocks until the container exits; returns its exit code (``docker wait``)."""
        return self._store._containers.wait(self._record, timeout)

    def logs(self, *, stdout: bool = True, stderr: bool = True, tail: int | None = None) -> bytes:
        """What the container wrote, from its json-file log (``docker logs``)."""
        out, err = io.BytesIO(), io.BytesIO()
        _logs.read(self._record.path, tail=tail, stdout=out, stderr=err)
        return (out.getvalue() if stdout else b"") + (err.getvalue() if stderr else b"")

    @property
    def status(self) -> str:
        """``created``, ``running``, ``paused`` or ``exited`` (docker-py's ``Container.status``)."""
        return self._store._containers.state(self._record).status

    @property
    def state(self) -> State:
        """The runtime state: status, exit code, pid, start and finish times."""
        return self._store._containers.state(self._record)

    def diff(self, *, paranoid: bool = False) -> list[Change]:
        """What changed against the image: ``Change('A'|'C'|'D', path, metadata_only)`` (``docker diff``)."""
        return self._store._containers.diff(self._record, paranoid=paranoid)

    def commit(
        self,
        ref: str | None = None,
        *,
        message: str | None = None,
        author: str | None = None,
        changes: Sequence[str] = (),
        compression: str = "gzip",
        exclude: Sequence[str] = (),
        squash: bool = False,
    ) -> Image:
        """The container's changes as a new image (``docker commit -m -a -c``), tagged ``ref`` when given; paths
        matching an ``exclude`` glob are left out; ``squash`` merges the image's layers and the change into one
        layer (buildah's ``commit --squash``)."""
        content = self._store.content
        tag = parse(ref) if ref else None

        def squashed(image: Image, lease: Lease) -> Image:
            return squash_leased(content, lease, image, 0, tag=tag, compression=compression,
                                 created_by="imgcore commit --squash")  # fmt: skip

        result = _commit(
            content,
            self._store._containers,
            self._record,
            ref,
            message=message,
            author=author,
            changes=changes,
            compression=compression,
            exclude=exclude,
            then=squashed if squash else None,
        )
        return result.image

    @contextlib.contextmanager
    def mount(self) -> Iterator[Path]:
        """The container's root filesystem for the ``with`` block (unmounted after, if it was not mounted)."""
        cs = self._store._containers
        was = self._record.driver != "overlay" or os.path.ismount(self._record.rootfs)
        path = cs.mount(self._record)
        try:
            yield path
        finally:
            if not was:
                cs.unmount(self._record)

    def export(self, out: BinaryIO) -> int:
        """The merged root filesystem as a tar on ``out`` (``docker export``); returns the number of entries."""
        return _export(self._store.content, self.id, out)

    def remove(self, *, force: bool = False) -> None:
        """Deletes the container and its changes (``docker rm``; ``force`` kills a running one first)."""
        self._store._containers.remove(self._record, force=force)


class Store:
    """An image store: pull, create, commit, list, move and clean up images, in one object.

    ``root`` is the store directory (an OCI image layout that skopeo and umoci read as ``oci:<root>:<ref>``);
    by default ``$IMGCORE_ROOT`` or ``~/.local/share/imgcore``.
    """

    def __init__(self, root: str | os.PathLike[str] | None = None) -> None:
        self.content = ContentStore(root)
        """The content store underneath (blobs, ``index.json``, tags): for what this front door does not cover."""
        self._containers = Containers(self.content)

    def __repr__(self) -> str:
        return f"imgcore.Store({str(self.root)!r})"

    @property
    def root(self) -> Path:
        """The store directory."""
        return self.content.root

    # -- images ---------------------------------------------------------------------------------------------------

    def image(self, ref: str) -> Image:
        """The image ``ref`` names: ``repo[:tag]``, ``repo@sha256:…``, a full or short image ID."""
        return resolve(self.content, ref)

    def images(self, filters: Iterable[str] = (), *, reference: str | None = None, all: bool = True) -> list[Image]:
        """The store's images, newest first, each once (``docker images`` lists one row per tag instead).

        ``filters`` are docker's (``dangling=true``, ``reference=PATTERN``, ``label=K[=V]``, ``before=``,
        ``since=``); with ``all=False`` dangling images are left out."""
        seen: dict[str, Image] = {}
        everything = catalog(self.content)
        if filters or reference:
            wanted = {r.image.digest for r in list_images(self.content, filters, reference=reference)}
            everything = [img for img in everything if img.digest in wanted]
        for img in everything:
            if (all or img.tags) and img.digest not in seen:
                seen[img.digest] = img
        return sorted(seen.values(), key=lambda i: -(i.created.timestamp() if i.created else 0.0))

    def tag(self, source: str | Image, target: str) -> Image:
        """``docker tag``: ``target`` now names ``source``'s image."""
        return tag(self.content, source.id if isinstance(source, Image) else source, target)

    def remove(self, ref: str | Image, *, force: bool = False) -> list[DeleteRecord]:
        """``docker rmi [-f]`` with docker's rules (a used image needs ``force``)."""
        return remove_image(self.content, ref.id if isinstance(ref, Image) else ref, force=force)

    def prune(self, *, all: bool = False) -> PruneReport:
        """``docker image prune [-a]``: dangling (or all unused) images, then every unreachable blob."""
        return prune(self.content, all=all)

    def import_rootfs(
        self,
        source: str | os.PathLike[str] | IO[bytes],
        ref: str | None = None,
        *,
        message: str | None = None,
        changes: Sequence[str] = (),
        platform: Platform | None = None,
    ) -> Image:
        """``docker import``: a root filesystem tarball (tar, gzip, zstd) as a one-layer image."""
        return import_image(self.content, source, ref, message=message, changes=changes, platform=platform)

    def fsck(self, *, repair: bool = False) -> list[FsckProblem]:
        """Re-hashes every blob on all cores and checks ``index.json`` and every container's state files; returns
        what is wrong (empty when all is well). ``repair`` moves what is broken into ``imgcore/lost+found/``."""
        return self.content.fsck(repair=repair) + self._containers.fsck(repair=repair)

    def analyze(self, ref: str | Image, *, cache: bool = True) -> Analysis:
        """How well an image uses its layers (``imgcore analyze``): dive's figures, content-true waste, what-ifs."""
        return analyze(self.image(ref) if isinstance(ref, str) else ref, cache=cache)

    def disk_usage(self) -> DiskUsage:
        """``docker system df -v``: images, layers (shared and unique), containers."""
        return disk_usage(self.content)

    # -- reshaping (imgcore.reshape) -------------------------------------------------------------------------

    def _img(self, image: str | Image) -> Image:
        return image if isinstance(image, Image) else resolve(self.content, image)

    def squash(
        self,
        image: str | Image,
        tag: str | None = None,
        *,
        last: int | None = None,
        from_layer: str | None = None,
        exclude: Sequence[str] = (),
        compression: str = "gzip",
    ) -> Image:
        """``imgcore squash``: the top ``last`` layers (or those above ``from_layer``, a layer digest, diff_id or
        base image; everything by default) merged into one; paths matching ``exclude`` globs left out."""
        return _squash(self.content, self._img(image), tag, last=last, from_layer=from_layer, exclude=exclude,
                       compression=compression)  # fmt: skip

    def flatten(
        self, image: str | Image, tag: str | None = None, *, exclude: Sequence[str] = (), compression: str = "gzip"
    ) -> Image:
        """``imgcore flatten``: one layer equal to the image's merged filesystem (history kept as empty_layer)."""
        return _flatten(self.content, self._img(image), tag, exclude=exclude, compression=compression)

    def rebase(self, image: str | Image, old_base: str | Image, new_base: str | Image, tag: str | None = None) -> Image:
        """``imgcore rebase`` (crane's): ``old_base``'s layers at the bottom of ``image`` replaced by ``new_base``'s;
        :class:`~imgcore.errors.BaseMismatch` when ``old_base`` is not the image's base."""
        return _rebase(self.content, self._img(image), self._img(old_base), self._img(new_base), tag)

    def append(self, image: str | Image, layers: Sequence[str | os.PathLike[str]], tag: str | None = None) -> Image:
        """``imgcore append``: layer tarballs (tar, gzip, zstd) added on top, one history entry each, on every
        platform when ``image`` is an index."""
        return _append_layers(self.content, self._img(image), layers, tag)

    def reconfigure(self, image: str | Image, changes: Sequence[str], tag: str | None = None) -> Image:
        """``imgcore config IMAGE -c ...``: the config changed by Dockerfile instructions, no layer added."""
        return _reconfigure(self.content, self._img(image), changes, tag)

    # -- transports -------------------------------------------------------------------------------------------

    def pull(
        self,
        ref: str,
        *,
        platform: str | Platform | None = None,
        jobs: int = DEFAULT_JOBS,
        progress: Progress | None = None,
        unpack: bool = False,
        insecure: Iterable[str] = (),
        ca_file: str | os.PathLike[str] | None = None,
    ) -> Image:
        """``docker pull``: the image from its registry, layers ``jobs`` at a time, each verified; returns it."""
        result = _pull(
            ref,
            store=self.content,
            platform=platform,
            jobs=jobs,
            unpack=unpack,
            progress=progress,
            insecure=insecure,
            ca_file=ca_file,
        )
        return result.image if result.image is not None else resolve(self.content, result.reference)

    def push(
        self,
        ref: str,
        *,
        source: str | Image | None = None,
        jobs: int = DEFAULT_JOBS,
        progress: Progress | None = None,
        insecure: Iterable[str] = (),
        ca_file: str | os.PathLike[str] | None = None,
    ) -> PushResult:
        """``docker push``: the image (``source``, or the one ``ref`` names) to ``ref``'s registry."""
        src = source.id if isinstance(source, Image) else source
        return _push(
            ref, store=self.content, source=src, jobs=jobs, progress=progress, insecure=insecure, ca_file=ca_file
        )

    def save(
        self, refs: Iterable[str | Image], output: str | os.PathLike[str] | BinaryIO, *, format: str = "docker"
    ) -> list[str]:
        """``docker save``: images into an archive (``docker``, ``oci`` or ``oci-dir``)."""
        names = [r.id if isinstance(r, Image) else r for r in refs]
        return _save(names, output, store=self.content, format=format)

    def load(self, source: str | os.PathLike[str] | BinaryIO, *, progress: Progress | None = None) -> list[Image]:
        """``docker load``: every image of an archive, verified before anything is stored; returns them."""
        result = _load(source, store=self.content, progress=progress)
        out: dict[str, Image] = {}
        for _, desc in result.images:
            img = resolve(self.content, desc.digest) if desc.digest not in out else out[desc.digest]
            out[desc.digest] = img
        return list(out.values())

    # -- containers -------------------------------------------------------------------------------------------

    def create(self, image: str | Image, name: str | None = None, *, driver: str | None = None) -> Container:
        """A new container from ``image`` (``docker create``)."""
        return Container(self, self._containers.create(image, name=name, driver=driver))

    def run(
        self,
        image: str | Image,
        argv: Sequence[str] | None = None,
        *,
        detach: bool = False,
        name: str | None = None,
        env: Iterable[str] = (),
        workdir: str | None = None,
        user: str | None = None,
        remove: bool = False,
    ) -> Container | ExecResult:
        """``docker run``: a new container from ``image`` running ``argv`` (default: its ENTRYPOINT + CMD) under
        the OCI runtime. With ``detach`` returns the running :class:`Container`; otherwise waits for the exit and
        returns its code and output (stdout, stderr from the log), removing the container when ``remove``."""
        opts = RunOptions(argv=tuple(argv) if argv else None, env=tuple(env), workdir=workdir, user=user)
        record = self._containers.create(image, name=name, options=opts, auto_remove=remove)
        box = Container(self, record)
        if rootless() and not detach:  # bubblewrap, in the foreground
            try:
                return self._containers.run_unprivileged(record, capture=True)
            finally:
                if remove:
                    box.remove(force=True)
        try:
            box.start()
        except BaseException:
            if remove:
                box.remove(force=True)
            raise
        if detach:
            return box
        code = box.wait()
        out, err = io.BytesIO(), io.BytesIO()
        _logs.read(record.path, stdout=out, stderr=err)
        command = tuple(self._containers.command(record))
        if remove:
            box.remove(force=True)
        return ExecResult(command, code, out.getvalue(), err.getvalue())

    def container(self, name_or_id: str) -> Container:
        """A container by name, ID or unique ID prefix."""
        return Container(self, self._containers.get(name_or_id))

    def containers(self) -> list[Container]:
        """Every container, newest first (``docker ps -a``)."""
        return [Container(self, c) for c in self._containers.list()]


class Registry:
    """Registries seen from outside any store (crane's and skopeo's commands): read manifests, configs, digests,
    tags and catalogs, delete, copy and sync, with one keep-alive client per registry host for every call.

    ::

        with imgcore.Registry(credentials={"ghcr.io": Credentials("me", token)}) as reg:
            reg.copy("docker.io/library/alpine:3.20", "localhost:5000/mirror/alpine:3.20")
            reg.sync("localhost:5000/mirror/alpine", "localhost:5001/alpine")
            print(reg.tags("localhost:5001/alpine"), reg.digest("localhost:5001/alpine:3.20"))

    Args:
        insecure: extra hosts that may use plain HTTP / unverified TLS (loopback always may).
        ca_file: PEM bundle to verify registry certificates with.
        credentials: per-registry credentials; other registries get what ``imgcore login`` (or docker's
            ``config.json``) has for them. Each registry's credentials go only to that registry.
    """

    def __init__(
        self,
        *,
        insecure: Iterable[str] = (),
        ca_file: str | os.PathLike[str] | None = None,
        credentials: Mapping[str, Credentials | None] | None = None,
    ) -> None:
        self.clients = Clients(insecure=insecure, ca_file=ca_file, credentials=credentials, pool_size=HEAD_JOBS + 2)
        """The registry clients underneath, one per host."""

    def close(self) -> None:
        """Close the idle connections."""
        self.clients.close()

    def __enter__(self) -> Registry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def manifest(self, ref: str) -> bytes:
        """The manifest or index ``ref`` names, byte for byte as the registry serves it (``crane manifest``)."""
        return _remote.manifest(ref, self.clients).raw

    def config(self, ref: str, *, platform: str | Platform | None = None) -> bytes:
        """The config blob of ``ref``'s image (for ``platform``, the host's by default, when it is an index)."""
        return _remote.config(ref, self.clients, platform=platform)

    def digest(self, ref: str, *, platform: str | Platform | None = None) -> str:
        """The digest ``ref`` names (one HEAD); with ``platform``, that platform's manifest of an index."""
        return _remote.digest(ref, self.clients, platform=platform)

    def tags(self, repository: str, *, page_size: int | None = None) -> list[str]:
        """Every tag of ``repository`` (``host/ns/app``), following the registry's ``Link`` pages."""
        return _remote.list_tags(repository, self.clients, page_size=page_size)

    def catalog(self, registry: str, *, page_size: int | None = None) -> list[str]:
        """Every repository ``registry`` (``host[:port]``) lists at ``/v2/_catalog``."""
        return _remote.catalog(registry, self.clients, page_size=page_size)

    def delete(self, ref: str) -> str:
        """Delete the manifest ``ref`` names (a tag is resolved to its digest first); returns that digest.

        Raises :class:`~imgcore.errors.UnsupportedOperation` where the registry does not allow deletes."""
        return _remote.delete(ref, self.clients)

    def copy(self, src: str, dst: str, **options: Unpack[CopyOptions]) -> list[CopyResult]:
        """Copy ``src`` to ``dst`` registry to registry (see :func:`copy`)."""
        return _copy(src, dst, clients=self.clients, **options)

    def sync(self, src: str, dst: str, **options: Unpack[SyncOptions]) -> SyncResult:
        """Make every tag of repository ``src`` name the same digest in repository ``dst`` (see :func:`sync`)."""
        return _sync(src, dst, clients=self.clients, **options)


def copy(
    src: str,
    dst: str,
    *,
    insecure: Iterable[str] = (),
    ca_file: str | os.PathLike[str] | None = None,
    **options: Unpack[CopyOptions],
) -> list[CopyResult]:
    """``imgcore copy``: an image from one registry repository to another, without the store or the disk.

    Blobs stream from the source into the destination's upload and are verified before the last byte is sent;
    blobs the destination has are skipped and, on one registry, mounted. An index is copied whole (every
    platform; the tag keeps its digest) unless ``platform`` names one, whose manifest is then tagged directly.
    With ``all_tags``, ``src`` and ``dst`` are repositories and every tag is copied. ``jobs`` blobs move at a
    time; ``chunk_size`` uploads in ``PATCH`` chunks instead of one ``PUT``. Returns one :class:`CopyResult`
    per reference copied.
    """
    with Registry(insecure=insecure, ca_file=ca_file) as reg:
        return reg.copy(src, dst, **options)


def sync(
    src: str,
    dst: str,
    *,
    insecure: Iterable[str] = (),
    ca_file: str | os.PathLike[str] | None = None,
    **options: Unpack[SyncOptions],
) -> SyncResult:
    """``imgcore sync``: every tag of repository ``src`` into repository ``dst`` (or only ``tags``); an
    unchanged tag costs one manifest HEAD on each side, ``head_jobs`` tags at a time."""
    with Registry(insecure=insecure, ca_file=ca_file) as reg:
        return reg.sync(src, dst, **options)
