"""``commit``: a container's changes -> layer blob -> config -> manifest -> tag.

The layer is written by the Rust diff engine (``imgcore.write_layer``) straight into the store's ingest area,
digest and diff_id computed in the same pass, then moved into ``blobs/``; the image is built by the one builder
(:func:`imgcore.image.builder.append`), which extends the base image's ``rootfs.diff_ids`` and ``history``.

Invariants:
- the base is the image the container was created from, pinned by manifest digest (a moved tag changes nothing);
- a lease covers the base's blobs, the new layer, config and manifest from the first blob to the tag;
- the layer's media type comes from the layer writer; ``SOURCE_DATE_EPOCH`` (or ``source_date_epoch``) fixes
  every time in the layer and the config, so the same change gives the same digests;
- an empty change adds a history entry marked ``empty_layer`` and no layer, as docker does;
- a running container is paused (``runc pause``) while its change is read, unless ``pause=False``, and thawed
  after, as docker's ``commit --pause``; the mountpoints the runtime made are never in the layer;
- the history's ``created_by`` is the container's command as docker writes it (its args joined by spaces);
- ``exclude`` globs (:mod:`imgcore.layers.exclude`) leave paths out of the layer; ``then`` (``commit --squash``,
  given by the caller that composes it with :mod:`imgcore.reshape`) receives the new image before it is listed in
  ``index.json``, inside the same lease, and returns the image that is kept (it tags it).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from imgcore import _fs
from imgcore._core import write_layer
from imgcore._progress import NullProgress, Progress
from imgcore.containers.manager import Container, Containers, image_of
from imgcore.errors import InvalidArgument
from imgcore.image.builder import Addition, append
from imgcore.image.model import Image
from imgcore.layers.exclude import exclude_changes, patterns
from imgcore.models import Descriptor
from imgcore.reference import parse
from imgcore.runtime._state import ContainerStateError
from imgcore.store import ContentStore, Lease

__all__ = ["CommitResult", "commit"]

_COMPRESSIONS = ("gzip", "zstd", "none")


@dataclass(frozen=True)
class CommitResult:
    """What :func:`commit` made: the new image, and the layer it added (None for an empty change)."""

    image: Image
    layer: Descriptor | None
    diff_id: str | None
    changes: int
    tag: str | None

    @property
    def image_id(self) -> str:
        """The new image's ID (its config digest)."""
        return self.image.id

    @property
    def manifest(self) -> Descriptor:
        """The new image's manifest descriptor."""
        return self.image.manifest_desc


def _created_by(containers: Containers, container: Container) -> str:
    """docker's ``created_by`` for a commit: the container's command (its process args, or entrypoint + cmd)."""
    argv = containers.command(container)
    return " ".join(argv) if argv else "imgcore commit"


@contextlib.contextmanager
def _paused(containers: Containers, container: Container, pause: bool) -> Iterator[None]:
    """The container frozen for the block when it is running (and not already paused)."""
    frozen = pause and containers.state(container).status == "running"
    if frozen:
        try:
            containers.pause(container)
        except ContainerStateError:  # it exited meanwhile: nothing to freeze
            frozen = False
    try:
        yield
    finally:
        if frozen:
            with contextlib.suppress(ContainerStateError):
                containers.unpause(container)


@_fs.disk_full_is_an_error("commit")
def commit(
    store: ContentStore,
    containers: Containers,
    container: Container,
    repo_tag: str | None = None,
    *,
    message: str | None = None,
    author: str | None = None,
    changes: Sequence[str] = (),
    compression: str = "gzip",
    paranoid: bool = False,
    source_date_epoch: int | None = None,
    progress: Progress | None = None,
    pause: bool = True,
    exclude: Sequence[str] = (),
    then: Callable[[Image, Lease], Image] | None = None,
) -> CommitResult:
    """Turns ``container``'s changes into a new image, tagged ``repo_tag`` when given; ``progress`` hears
    ``Writing layer`` and ``Layer written``. A running container is paused meanwhile unless ``pause`` is False.
    Paths matching an ``exclude`` glob are left out; ``then`` replaces the new image by what it returns (it is
    given the image untagged and unlisted, and tags the one it returns itself)."""
    globs = patterns(exclude)
    progress = progress if progress is not None else NullProgress()
    ref = parse(repo_tag) if repo_tag else None
    if compression not in _COMPRESSIONS:
        raise InvalidArgument(f"commit: unknown compression {compression!r} (gzip, zstd or none)")
    with store.lease("commit") as lease:
        with lease.guard():
            image = image_of(store, container)
            lease.add(image.manifest_desc.digest, image.id, *(d.digest for d in image.manifest.layers))
        if container.driver == "overlay":
            base: str | list[str] = [str(p) for p in containers.lowerdirs(container)]
            target = container.upper
        else:
            base = str(containers.baseline(container))
            target = container.rootfs
        out = store.temp_path(".layer")
        progress.layer(container.id[:12], "Writing layer")
        try:
            with _paused(containers, container, pause):
                wanted = exclude_changes(containers.diff(container, paranoid=paranoid), globs)
                result = write_layer(
                    base,
                    str(target),
                    str(out),
                    overlay=container.driver == "overlay",
                    paranoid=paranoid,
                    compression=compression,
                    source_date_epoch=source_date_epoch,
                    changes=wanted,
                )
            layer: Descriptor | None = None
            if wanted and result.changes:
                with lease.guard():
                    stored = store.adopt_file(out, result.digest)
                    lease.add(stored.digest)
                layer = Descriptor(result.media_type, stored.digest, stored.size)
            progress.layer(container.id[:12], "Layer written", result.size, result.size)
        finally:
            out.unlink(missing_ok=True)
        addition = Addition(
            layer,
            result.diff_id if layer is not None else None,
            result.uncompressed_size if layer is not None else None,
            created_by=_created_by(containers, container),
            comment=message or "",
            author=author or "",
        )
        new = append(
            store,
            lease,
            image,
            [addition],
            changes=changes,
            author=author,
            comment=message,
            tag=ref if then is None else None,
            source_date_epoch=source_date_epoch,
            index_entry=then is None,
        )
        if then is not None:
            new = then(new, lease)
    return CommitResult(
        new, layer, result.diff_id if layer is not None else None, len(wanted), str(ref) if ref else None
    )
