"""The one place that names imgcore's own paths inside a store.

A store is an OCI image layout (``oci-layout``, ``index.json``, ``blobs/``) that other tools read as it is;
everything imgcore keeps beside it lives under ``imgcore/``:

==========================  =================================================================================
``imgcore/ingest/``         blobs being written (hashed while written, renamed into ``blobs/`` when verified)
``imgcore/tmp/``            staging of archives being loaded (removed when the load ends, swept by ``prune``)
``imgcore/leases/``         one file per running writer: what it holds against garbage collection
``imgcore/sizes/``          the uncompressed size of each layer blob, once computed
``imgcore/sources/``        which repositories a blob came from (cross-repository mounts on push)
``imgcore/images/``         per-image metadata that is not in the image (the last tag time)
``imgcore/summaries.json``  what ``images`` lists of each index entry, keyed by its digest
``imgcore/lost+found/``     what ``fsck --repair`` moved aside
``imgcore/analysis/``       each layer's file table (``analyze``), one ``.npz`` per layer digest; ``output/``:
                            reports ``analyze`` printed, by image and options
``imgcore/layers/<chain>``  each layer unpacked once, overlay form, shared by containers (the layer cache)
``imgcore/rootfs/<chain>``  an image flattened once, the copy driver's read-only baseline
``imgcore/containers/<id>`` one directory per container
``imgcore/*.lock``          the index lock, the GC lock, the container-name lock
==========================  =================================================================================

Invariant: no other module spells one of these names; they ask :class:`StorePaths`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = ["StorePaths"]


@dataclass(frozen=True)
class StorePaths:
    """The paths of one store, rooted at ``root`` (absolute)."""

    root: Path

    @property
    def state(self) -> Path:
        """``imgcore/``: everything that is not part of the OCI layout."""
        return self.root / "imgcore"

    @property
    def blobs(self) -> Path:
        """``blobs/``: the layout's content-addressed files."""
        return self.root / "blobs"

    @property
    def index(self) -> Path:
        """``index.json``: the layout's index (tags)."""
        return self.root / "index.json"

    @property
    def oci_layout(self) -> Path:
        """``oci-layout``: the layout's version marker."""
        return self.root / "oci-layout"

    @property
    def ingest(self) -> Path:
        """Blobs being written."""
        return self.state / "ingest"

    @property
    def tmp(self) -> Path:
        """Staging for archives being loaded."""
        return self.state / "tmp"

    @property
    def leases(self) -> Path:
        """One file per live writer."""
        return self.state / "leases"

    @property
    def sizes(self) -> Path:
        """Uncompressed sizes of layer blobs."""
        return self.state / "sizes"

    @property
    def sources(self) -> Path:
        """Which repositories each blob came from."""
        return self.state / "sources"

    @property
    def tag_times(self) -> Path:
        """When each image was last tagged (``inspect``'s ``Metadata.LastTagTime``)."""
        return self.state / "images" / "last-tag-time.json"

    @property
    def repo_digests(self) -> Path:
        """The ``repo@digest`` names each image was pulled or pushed as (``inspect``'s ``RepoDigests``)."""
        return self.state / "images" / "repo-digests.json"

    @property
    def lost_and_found(self) -> Path:
        """Where ``fsck --repair`` moves what is broken (never deleted)."""
        return self.state / "lost+found"

    @property
    def summaries(self) -> Path:
        """What ``images`` shows of each index entry, cached by its (immutable) digest."""
        return self.state / "summaries.json"

    @property
    def analysis(self) -> Path:
        """Per-layer file tables of ``analyze``, one ``<algorithm>-<hex>.npz`` per layer blob digest."""
        return self.state / "analysis"

    @property
    def analysis_output(self) -> Path:
        """What ``analyze`` printed, by a key over the image and the options (``cli/_output_cache.py``)."""
        return self.analysis / "output"

    def analysis_table(self, digest: str) -> Path:
        """The cached file table of the layer blob ``digest`` (``algorithm:hex``, already validated)."""
        algorithm, _, hexpart = digest.partition(":")
        return self.analysis / f"{algorithm}-{hexpart}.npz"

    @property
    def layers(self) -> Path:
        """The unpacked-layer cache (overlay form), one directory per chain ID."""
        return self.state / "layers"

    @property
    def rootfs(self) -> Path:
        """Flattened images (the copy driver's baselines), one directory per top chain ID."""
        return self.state / "rootfs"

    @property
    def containers(self) -> Path:
        """One directory per container."""
        return self.state / "containers"

    @property
    def runtime(self) -> Path:
        """The OCI runtime's private state (its ``--root``)."""
        return self.state / "runtime"

    @property
    def index_lock(self) -> Path:
        """Held exclusively while ``index.json`` is rewritten."""
        return self.state / "index.lock"

    @property
    def gc_lock(self) -> Path:
        """Held exclusively by garbage collection, shared by writers for their short critical sections."""
        return self.state / "gc.lock"

    @property
    def names_lock(self) -> Path:
        """Held while a container name is checked and claimed."""
        return self.state / "names.lock"
