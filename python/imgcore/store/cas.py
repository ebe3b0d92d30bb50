"""The content store: an OCI image layout directory with verified, atomic, idempotent blob writes.

Layout (OCI image-layout spec): ``oci-layout``, ``index.json``, ``blobs/<alg>/<hex>``. imgcore's own state lives in
``imgcore/`` beside them (partial ingests, locks; later containers and unpacked layers), so skopeo and umoci read
the store as a plain OCI layout.

Invariants:
- a file under ``blobs/`` always hashes to its name: content is streamed into ``imgcore/ingest/`` on the same
  filesystem while being hashed, checked, fsynced and only then renamed into place;
- an interrupted ingest never shows up as a blob; a resumable one keeps its bytes as ``<hex>.partial``;
- ``index.json`` is replaced atomically under an exclusive lock, so concurrent tag writes lose none.
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import json
import os
import secrets
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, BinaryIO

from imgcore import _fs
from imgcore._core import Digest, Hasher, hash_files, sha256_file
from imgcore.errors import BlobNotFound, DigestMismatch, ImageNotFound, InvalidManifest, SizeMismatch, StoreError
from imgcore.models import REF_NAME, Descriptor
from imgcore.reference import Reference, parse
from imgcore.store.lease import Lease
from imgcore.store.paths import StorePaths

__all__ = ["ContentStore", "FsckProblem", "Ingest", "default_root", "without_name"]

CHUNK = 1 << 20
_FSCK_BATCH = 256  # blobs hashed per call, so progress moves and all cores stay busy
OCI_LAYOUT_VERSION = "1.0.0"
CONTAINERD_NAME = "io.containerd.image.name"
Source = bytes | bytearray | memoryview | IO[bytes] | os.PathLike[str] | str


def default_root() -> Path:
    """``$IMGCORE_ROOT``, else ``$XDG_DATA_HOME/imgcore``, else ``~/.local/share/imgcore``."""
    env = os.environ.get("IMGCORE_ROOT")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_DATA_HOME")
    base = Path(xdg) if xdg else Path.home() / ".local" / "share"
    return base / "imgcore"


def _digest(value: str | Digest) -> Digest:
    return value if isinstance(value, Digest) else Digest(str(value))


@dataclass(frozen=True)
class FsckProblem:
    """One thing ``fsck`` found wrong."""

    path: str
    problem: str
    repaired: str = ""  # with ``fsck(repair=True)``: what was done (moved aside to ..., entry dropped)

    def __str__(self) -> str:
        return f"{self.path}: {self.problem}" + (f" ({self.repaired})" if self.repaired else "")


class Ingest:
    """A blob being written: stream chunks in, then :meth:`commit` (verify, fsync, rename) or :meth:`abort`.

    With an expected digest and ``resume=True`` the bytes are kept in ``<hex>.partial`` across runs: a new
    ``Ingest`` for the same digest starts at :attr:`offset` (the bytes already there, re-hashed on open), which
    a downloader turns into a ``Range`` request. Leaving a ``with`` block without committing keeps the partial.
    """

    def __init__(self, store: ContentStore, digest: str | None, size: int | None, *, resume: bool) -> None:
        self._store = store
        self.expected = _digest(digest) if digest is not None else None
        self.expected_size = size
        self._hasher = Hasher(self.expected.algorithm if self.expected else "sha256")
        self._done = False
        ingest_dir = store.paths.ingest
        ingest_dir.mkdir(parents=True, exist_ok=True)
        self._file: BinaryIO | None = None
        if self.expected is not None and resume:
            path = ingest_dir / f"{self.expected.algorithm}-{self.expected.hex}.partial"
            f = path.open("a+b")
            try:
                fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                # Another process is ingesting the same blob: write a private copy; both end with one blob.
                f.close()
            else:
                self._file, self.path = f, path
                f.seek(0)
                while chunk := f.read(CHUNK):
                    self._hasher.update(chunk)
                if size is not None and self._hasher.size > size:
                    f.truncate(0)
                    self._hasher = Hasher(self.expected.algorithm)
                f.seek(0, io.SEEK_END)
        if self._file is None:
            self.path = ingest_dir / f"tmp-{os.getpid()}-{secrets.token_hex(8)}"
            self._file = self.path.open("w+b")
        self.resumable = resume and self.expected is not None

    @property
    def offset(self) -> int:
        """Bytes written so far (including those found from an earlier, interrupted ingest)."""
        return int(self._hasher.size)

    def write(self, chunk: bytes | bytearray | memoryview) -> None:
        """Appends ``chunk``, hashing it as it goes; more bytes than the expected size abort the ingest and raise
        ``SizeMismatch`` at once, so an oversized download is cut off early."""
        assert self._file is not None, "ingest already finished"
        if self.expected_size is not None and self._hasher.size + len(chunk) > self.expected_size:
            got = self._hasher.size + len(chunk)
            self.abort()
            raise SizeMismatch(
                f"ingest {self.expected}: more data than the expected {self.expected_size} bytes (got {got})",
                expected=self.expected_size,
                actual=got,
            )
        self._file.write(chunk)
        self._hasher.update(chunk)

    def restart(self) -> None:
        """Drops what was written (a server that ignored our Range request sends the whole blob again)."""
        assert self._file is not None
        self._file.seek(0)
        self._file.truncate(0)
        self._hasher = Hasher(self.expected.algorithm if self.expected else "sha256")

    def commit(self) -> Descriptor:
        """Verifies digest and size, makes the blob durable and visible; idempotent if it already exists."""
        assert self._file is not None, "ingest already finished"
        actual = self._hasher.digest()
        size = int(self._hasher.size)
        where = f"ingest {self.expected or actual}"
        if self.expected_size is not None and size != self.expected_size:
            self.abort()
            raise SizeMismatch(
                f"{where}: size mismatch: expected {self.expected_size} bytes, got {size}",
                expected=self.expected_size,
                actual=size,
            )
        if self.expected is not None and actual != str(self.expected):
            self.abort()
            raise DigestMismatch(
                f"{where}: digest mismatch: expected {self.expected}, got {actual}",
                expected=str(self.expected),
                actual=actual,
            )
        self._file.flush()
        os.fsync(self._file.fileno())
        final = self._store.blob_path(actual)
        final.parent.mkdir(parents=True, exist_ok=True)
        self.path.chmod(0o444)
        self.path.replace(final)
        self._file.close()
        self._file = None
        self._done = True
        _fs.fsync_dir(final.parent)
        return Descriptor("application/octet-stream", actual, size)

    def abort(self) -> None:
        """Discards the bytes, partial included."""
        if self._file is not None:
            self._file.close()
            self._file = None
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        self._done = True

    def close(self) -> None:
        """Stops without committing: a resumable partial stays for the next run, a private temp file goes."""
        if self._done:
            return
        if self._file is not None:
            self._file.flush()
            if self.resumable:
                os.fsync(self._file.fileno())
            self._file.close()
            self._file = None
        if not self.resumable:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
        self._done = True

    def __enter__(self) -> Ingest:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class ContentStore:
    """An OCI image layout used as imgcore's content store and tag database (the CAS and ``index.json``).

    The front door is :class:`imgcore.Store`, which owns one of these; workflows take this one."""

    def __init__(self, root: str | os.PathLike[str] | None = None) -> None:
        self.root = (Path(root) if root is not None else default_root()).absolute()
        self.paths = StorePaths(self.root)
        self._blobs_dir = str(self.paths.blobs)
        self.root.mkdir(parents=True, exist_ok=True)
        layout = self.root / "oci-layout"
        if layout.exists():
            try:
                version = _fs.read_json(layout).get("imageLayoutVersion")
            except (OSError, ValueError, AttributeError) as e:
                raise StoreError(f"store {self.root}: unreadable oci-layout: {e}") from None
            if version != OCI_LAYOUT_VERSION:
                raise StoreError(f"store {self.root}: unsupported imageLayoutVersion {version!r}")
        else:
            _fs.atomic_write_json(layout, {"imageLayoutVersion": OCI_LAYOUT_VERSION})
        (self.root / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
        self.paths.state.mkdir(exist_ok=True)
        if not (self.root / "index.json").exists():
            with self._index_lock():
                if not (self.root / "index.json").exists():
                    self._write_index(
                        {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": []}
                    )

    def lease(self, purpose: str) -> Lease:
        """A hold against garbage collection for one writer, from its first blob to its tag (a context manager)."""
        return Lease(self.paths, purpose)

    def __repr__(self) -> str:
        return f"ContentStore({str(self.root)!r})"

    # -- blobs -------------------------------------------------------------------------------------------------

    def blob_path(self, digest: str | Digest) -> Path:
        """Where the blob is (or would be) stored: ``<root>/blobs/<algorithm>/<hex>``; does not check it exists."""
        return Path(self._blob_file(digest))

    def _blob_file(self, digest: str | Digest) -> str:
        # A plain string: listing 1,000 images touches thousands of blobs, and pathlib costs more than the reads.
        d = _digest(digest)
        return f"{self._blobs_dir}/{d.algorithm}/{d.hex}"

    def has_blob(self, digest: str | Digest) -> bool:
        """Whether the blob is stored (no re-hash)."""
        return os.path.isfile(self._blob_file(digest))  # noqa: PTH113 (see _blob_file)

    def blob_size(self, digest: str | Digest) -> int:
        """The stored blob's size in bytes; ``BlobNotFound`` when it is not stored."""
        try:
            return os.stat(self._blob_file(digest)).st_size  # noqa: PTH116 (see _blob_file)
        except FileNotFoundError:
            raise BlobNotFound(f"blob {digest}: not in store {self.root}", digest=str(digest)) from None

    def ingest(self, digest: str | None = None, size: int | None = None, *, resume: bool = True) -> Ingest:
        """Starts writing a blob; see :class:`Ingest`."""
        return Ingest(self, digest, size, resume=resume)

    def temp_path(self, suffix: str = "") -> Path:
        """A fresh path on the store's filesystem for a file that :meth:`adopt_file` will move in."""
        ingest_dir = self.paths.ingest
        ingest_dir.mkdir(parents=True, exist_ok=True)
        return ingest_dir / f"tmp-{os.getpid()}-{secrets.token_hex(8)}{suffix}"

    def adopt_file(self, path: Path, digest: str, *, verify: bool = False) -> Descriptor:
        """Moves ``path`` (on the store's filesystem, written by imgcore, whose digest was computed while it was
        written) into ``blobs/``; with ``verify`` it is re-hashed first. The file is gone afterwards either way."""
        d = _digest(digest)
        try:
            if verify:
                actual = sha256_file(path)
                if actual != str(d):
                    raise DigestMismatch(
                        f"adopt {path}: digest mismatch: expected {d}, got {actual}", expected=str(d), actual=actual
                    )
            size = path.stat().st_size
            with path.open("rb") as f:
                os.fsync(f.fileno())
            final = self.blob_path(d)
            path.chmod(0o444)
            path.replace(final)
            _fs.fsync_dir(final.parent)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            raise
        return Descriptor("application/octet-stream", str(d), size)

    def put_blob(self, source: Source, *, digest: str | None = None, size: int | None = None) -> Descriptor:
        """Stores ``source`` (bytes, a binary file object or a path), verified against ``digest``/``size``.

        Idempotent: storing a blob that is already there verifies the input and keeps one copy.
        """
        if isinstance(source, bytes | bytearray | memoryview):
            return self._put_chunks([source], digest, size)
        if isinstance(source, str | os.PathLike):
            with Path(source).open("rb") as f:
                return self._put_chunks(iter(lambda: f.read(CHUNK), b""), digest, size)
        return self._put_chunks(iter(lambda: source.read(CHUNK), b""), digest, size)

    def put_chunks(self, chunks: Iterable[bytes], *, digest: str | None = None, size: int | None = None) -> Descriptor:
        """Stores a blob given as an iterable of byte chunks."""
        return self._put_chunks(chunks, digest, size)

    def _put_chunks(self, chunks: Iterable[Any], digest: str | None, size: int | None) -> Descriptor:
        ing = Ingest(self, digest, size, resume=False)
        try:
            for chunk in chunks:
                ing.write(chunk)
            return ing.commit()
        finally:
            ing.close()

    def get_blob(self, digest: str | Digest, *, verify: bool = False) -> bytes:
        """The blob's bytes; with ``verify`` they are re-hashed and a corrupt blob raises ``DigestMismatch``."""
        path = self._blob_file(digest)
        try:
            with open(path, "rb") as f:  # noqa: PTH123 (see _blob_file)
                data = f.read()
        except FileNotFoundError:
            raise BlobNotFound(f"blob {digest}: not in store {self.root}", digest=str(digest)) from None
        if verify:
            h = Hasher(_digest(digest).algorithm)
            h.update(data)
            actual = h.digest()
            if actual != str(digest):
                raise DigestMismatch(
                    f"blob {path}: corrupt: expected {digest}, got {actual}", expected=str(digest), actual=actual
                )
        return data

    def open_blob(self, digest: str | Digest) -> BinaryIO:
        """The blob opened for binary reading (not verified: see :meth:`get_blob`); ``BlobNotFound`` when absent."""
        try:
            return self.blob_path(digest).open("rb")
        except FileNotFoundError:
            raise BlobNotFound(f"blob {digest}: not in store {self.root}", digest=str(digest)) from None

    def delete_blob(self, digest: str | Digest) -> bool:
        """Removes a blob; True if it was there. Idempotent."""
        try:
            self.blob_path(digest).unlink()
        except FileNotFoundError:
            return False
        return True

    def list_blobs(self) -> list[str]:
        """Every stored blob's digest, sorted by algorithm then hex."""
        out: list[str] = []
        blobs = self.root / "blobs"
        for alg_dir in sorted(p for p in blobs.iterdir() if p.is_dir()):
            out.extend(f"{alg_dir.name}:{p.name}" for p in sorted(alg_dir.iterdir()))
        return out

    def get_json(self, digest: str | Digest) -> Any:
        """The blob parsed as JSON (a config or manifest); ``BlobNotFound`` when absent."""
        return json.loads(self.get_blob(digest))

    def fsck(self, progress: Callable[[int, int], None] | None = None, *, repair: bool = False) -> list[FsckProblem]:
        """Re-hashes every blob on all cores; returns what is corrupt or misnamed (empty when all is well).
        ``progress(done, total)`` hears the bytes checked after each batch.

        With ``repair``, what is broken is moved aside into ``imgcore/lost+found/`` (never deleted): bad blob
        entries, an unreadable ``index.json`` (replaced by an empty one), and index entries that are bogus or whose
        manifest is missing (kept there as JSON); each problem then says what was done."""
        problems: list[FsckProblem] = []
        entries: list[tuple[str, Path]] = []
        for alg_dir in sorted(p for p in (self.root / "blobs").iterdir() if p.is_dir()):
            for p in sorted(alg_dir.iterdir()):
                name = f"{alg_dir.name}:{p.name}"
                try:
                    Digest(name)
                except ValueError:
                    problems.append(FsckProblem(str(p), "not a valid digest name"))
                    continue
                if p.is_symlink() or not p.is_file():
                    problems.append(FsckProblem(str(p), "not a regular file (a symlink or other entry in blobs/)"))
                    continue
                entries.append((name, p))
        by_alg: dict[str, list[tuple[str, Path]]] = {}
        for name, p in entries:
            by_alg.setdefault(name.split(":", 1)[0], []).append((name, p))
        total = sum(p.lstat().st_size for _, p in entries)
        done = 0
        results_by: dict[str, list[tuple[str | None, int, str | None]]] = {}
        for alg, group in by_alg.items():
            results_by[alg] = []
            for i in range(0, len(group), _FSCK_BATCH):
                batch = group[i : i + _FSCK_BATCH]
                part = hash_files([p for _, p in batch], alg)
                results_by[alg].extend(part)
                done += sum(size for _, size, _ in part)
                if progress is not None:
                    progress(done, total)
        for alg, group in by_alg.items():
            results = results_by[alg]
            for (name, p), (actual, _size, err) in zip(group, results, strict=True):
                if err is not None:
                    problems.append(FsckProblem(str(p), f"unreadable: {err}"))
                elif actual != name:
                    problems.append(FsckProblem(str(p), f"corrupt: content hashes to {actual}"))
        if repair:
            problems = [self._move_aside(pr) for pr in problems]
        try:
            manifests = self._index()["manifests"]
        except StoreError as e:
            problems.append(self._reset_index(str(e)) if repair else FsckProblem("index.json", str(e)))
            manifests = []
        bad: list[int] = []
        for i, desc in enumerate(manifests):
            digest = desc.get("digest") if isinstance(desc, dict) else None
            try:
                present = isinstance(digest, str) and self.has_blob(digest)
            except ValueError:
                present = False
            if not isinstance(digest, str):
                problems.append(FsckProblem("index.json", f"manifests[{i}]: no digest"))
                bad.append(i)
            elif not present:
                problems.append(FsckProblem("index.json", f"manifests[{i}]: manifest {digest} is missing"))
                bad.append(i)
        if repair and bad:
            problems = self._drop_entries(problems, manifests, bad)
        return problems

    def _lost_and_found(self) -> Path:
        d = self.paths.lost_and_found
        d.mkdir(parents=True, exist_ok=True)
        return d

    def _move_aside(self, problem: FsckProblem) -> FsckProblem:
        src = Path(problem.path)
        dest = self._lost_and_found() / f"{int(time.time())}-{secrets.token_hex(4)}-{src.name}"
        try:
            src.rename(dest)  # a symlink is moved as the link itself, never followed
        except OSError as e:
            return FsckProblem(problem.path, problem.problem, f"could not move it aside: {e.strerror or e}")
        return FsckProblem(problem.path, problem.problem, f"moved to {dest}")

    def _reset_index(self, why: str) -> FsckProblem:
        dest = self._lost_and_found() / f"{int(time.time())}-{secrets.token_hex(4)}-index.json"
        with self._index_lock():
            with contextlib.suppress(FileNotFoundError):
                (self.root / "index.json").rename(dest)
            self._write_index({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                               "manifests": []})  # fmt: skip
        return FsckProblem("index.json", why, f"moved to {dest}; a new empty index.json was written")

    def _drop_entries(self, problems: list[FsckProblem], manifests: list[Any], bad: list[int]) -> list[FsckProblem]:
        dropped = [manifests[i] for i in bad]
        dest = self._lost_and_found() / f"{int(time.time())}-{secrets.token_hex(4)}-index-entries.json"
        _fs.atomic_write(dest, json.dumps(dropped).encode())
        gone = {json.dumps(m, sort_keys=True) for m in dropped}
        self.update_index(lambda ms: [m for m in ms if json.dumps(m, sort_keys=True) not in gone])
        out = []
        for pr in problems:
            if pr.path == "index.json" and not pr.repaired:
                pr = FsckProblem(pr.path, pr.problem, f"entry dropped, kept in {dest}")
            out.append(pr)
        return out

    # -- index.json and tags -----------------------------------------------------------------------------------

    def _index_lock(self) -> contextlib.AbstractContextManager[None]:
        return _fs.locked(self.paths.index_lock)

    def _index(self) -> dict[str, Any]:
        try:
            data = _fs.read_json(self.root / "index.json")
        except FileNotFoundError:
            return {"schemaVersion": 2, "manifests": []}
        except ValueError as e:
            raise StoreError(f"store {self.root}: index.json is not valid JSON: {e}") from None
        if not isinstance(data, dict) or not isinstance(data.get("manifests"), list):
            raise StoreError(f"store {self.root}: index.json has no manifests list")
        return data

    def _write_index(self, data: dict[str, Any]) -> None:
        _fs.atomic_write_json(self.root / "index.json", data)

    def update_index(self, fn: Callable[[list[dict[str, Any]]], list[dict[str, Any]]]) -> None:
        """Applies ``fn`` to the index's manifest list under the lock and writes the result atomically."""
        with self._index_lock():
            data = self._index()
            data["manifests"] = fn(list(data["manifests"]))
            self._write_index(data)

    def index_entries(self) -> list[Descriptor]:
        """Every descriptor in index.json (tagged images and kept untagged ones); an entry that is not a valid
        descriptor is left out (``fsck`` reports it), so one bad entry never hides the others."""
        out = []
        for i, m in enumerate(self._index()["manifests"]):
            with contextlib.suppress(InvalidManifest, ValueError, TypeError):
                out.append(Descriptor.from_json(m, f"index.json: manifests[{i}]"))
        return out

    def put_manifest(self, raw: bytes, media_type: str) -> Descriptor:
        """Stores a manifest or index's raw bytes; returns its descriptor (digest computed from those bytes)."""
        desc = self.put_blob(raw)
        return Descriptor(media_type, desc.digest, desc.size)

    def tag(self, ref: str | Reference, desc: Descriptor, annotations: Mapping[str, str] | None = None) -> None:
        """Points the tag ``ref`` at ``desc`` (its entry also carries ``annotations``). The image it pointed at
        stays in the index, untagged (dangling), until it is removed or pruned, as docker keeps ``<none>`` images."""
        name = str(_ref(ref))
        if not self.has_blob(desc.digest):
            raise BlobNotFound(f"tag {name}: manifest {desc.digest} is not in the store", digest=desc.digest)

        def update(manifests: list[dict[str, Any]]) -> list[dict[str, Any]]:
            out = []
            for m in manifests:
                if (m.get("annotations") or {}).get(REF_NAME) == name:
                    if m["digest"] == desc.digest:
                        continue
                    m = without_name(m)
                out.append(m)
            out = [m for m in out if not (_is_untagged(m) and m["digest"] == desc.digest)]
            entry = desc.with_annotations({**(annotations or {}), REF_NAME: name, CONTAINERD_NAME: name}).to_json()
            out.append(entry)
            return _dedupe_untagged(out)

        self.update_index(update)

    def add_untagged(self, desc: Descriptor) -> None:
        """Keeps ``desc`` in the index without a tag (a root for GC); its annotations other than a name stay."""
        kept = {k: v for k, v in (desc.annotations or {}).items() if k not in (REF_NAME, CONTAINERD_NAME)}

        def update(manifests: list[dict[str, Any]]) -> list[dict[str, Any]]:
            if any(m["digest"] == desc.digest for m in manifests):
                return manifests
            return [*manifests, desc.with_annotations(kept or None).to_json()]

        self.update_index(update)

    def untag(self, ref: str | Reference) -> Descriptor:
        """Removes a tag; returns what it pointed at. The image stays as untagged if nothing else tags it."""
        name = str(_ref(ref))
        found: list[Descriptor] = []

        def update(manifests: list[dict[str, Any]]) -> list[dict[str, Any]]:
            out = []
            for m in manifests:
                if (m.get("annotations") or {}).get(REF_NAME) == name:
                    found.append(Descriptor.from_json(m))
                    continue
                out.append(m)
            return out

        self.update_index(update)
        if not found:
            raise ImageNotFound(f"no such image: {name}")
        return found[0].with_annotations(None)

    def remove_from_index(self, digest: str) -> None:
        """Drops every index entry (tagged or not) for ``digest``."""
        self.update_index(lambda ms: [m for m in ms if m["digest"] != digest])

    def tags(self) -> dict[str, Descriptor]:
        """Tag (full normalised reference) -> manifest descriptor."""
        out = {}
        for m in self._index()["manifests"]:
            name = (m.get("annotations") or {}).get(REF_NAME)
            if name:
                out[name] = Descriptor.from_json(m, "index.json").with_annotations(None)
        return out

    def iter_blob(self, digest: str | Digest, chunk: int = CHUNK) -> Iterator[bytes]:
        """The blob's bytes in ``chunk``-sized pieces, for streaming without holding it in memory."""
        with self.open_blob(digest) as f:
            while data := f.read(chunk):
                yield data


def _ref(ref: str | Reference) -> Reference:
    return ref if isinstance(ref, Reference) else parse(ref)


def without_name(m: dict[str, Any]) -> dict[str, Any]:
    """An ``index.json`` entry without its name annotations (other annotations, such as the original manifest
    of a converted image, stay with the now untagged image)."""
    kept = {k: v for k, v in (m.get("annotations") or {}).items() if k not in (REF_NAME, CONTAINERD_NAME)}
    out = {k: v for k, v in m.items() if k != "annotations"}
    if kept:
        out["annotations"] = kept
    return out


def _is_untagged(m: dict[str, Any]) -> bool:
    return not (m.get("annotations") or {}).get(REF_NAME)


def _dedupe_untagged(manifests: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """An untagged entry is dropped when the same digest is tagged elsewhere, or listed twice."""
    tagged = {m["digest"] for m in manifests if not _is_untagged(m)}
    seen: set[str] = set()
    out = []
    for m in manifests:
        if _is_untagged(m):
            if m["digest"] in tagged or m["digest"] in seen:
                continue
            seen.add(m["digest"])
        out.append(m)
    return out
