"""The one exception hierarchy of imgcore.

Every error imgcore raises on purpose is an :class:`ImgcoreError`; the Rust core's errors are mapped to these
classes in one place (``rust/py/src/errors.rs``). OS errors stay ordinary :class:`OSError` subclasses that carry
the path. Messages are lowercase, context first, then the cause: ``extract sha256:ab12…: entry "../x" escapes root``.
Extra attributes are keyword-only, so every exception pickles (``BaseException`` keeps ``__dict__``).
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "AuthError",
    "BaseMismatch",
    "BlobNotFound",
    "ContainerNotFound",
    "DigestMismatch",
    "DiskFull",
    "ImageConflict",
    "ImageInUse",
    "ImageNotFound",
    "ImgcoreError",
    "InternalError",
    "InvalidArchive",
    "InvalidArgument",
    "InvalidDigest",
    "InvalidManifest",
    "InvalidReference",
    "InvalidStateFile",
    "InvalidTemplate",
    "InvalidTree",
    "LimitExceeded",
    "NotAnImage",
    "NotFound",
    "RateLimited",
    "RegistryError",
    "SizeMismatch",
    "StoreError",
    "UnsafeArchiveEntry",
    "UnsupportedMediaType",
    "UnsupportedOperation",
]


class ImgcoreError(Exception):
    """Base class of every error imgcore raises on purpose."""

    def __init__(self, message: str, **attrs: Any) -> None:
        super().__init__(message)
        self.__dict__.update(attrs)

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class InternalError(ImgcoreError):
    """A bug in imgcore (for example a Rust panic caught at the boundary)."""


class InvalidReference(ImgcoreError, ValueError):
    """An image reference (``name[:tag][@digest]``) that does not parse."""


class InvalidDigest(ImgcoreError, ValueError):
    """A digest string that is not ``algorithm:hex`` with a supported algorithm and length."""


class DigestMismatch(ImgcoreError):
    """Content hashed to another digest than expected. ``expected`` and ``actual`` are digest strings."""

    expected: str | None
    actual: str | None

    def __init__(self, message: str, *, expected: str | None = None, actual: str | None = None, **attrs: Any) -> None:
        super().__init__(message, expected=expected, actual=actual, **attrs)


class SizeMismatch(ImgcoreError):
    """Content had another length than its descriptor says."""

    expected: int | None
    actual: int | None

    def __init__(self, message: str, *, expected: int | None = None, actual: int | None = None, **attrs: Any) -> None:
        super().__init__(message, expected=expected, actual=actual, **attrs)


class BlobNotFound(ImgcoreError, LookupError):
    """The store has no blob with that digest."""

    digest: str | None

    def __init__(self, message: str, *, digest: str | None = None, **attrs: Any) -> None:
        super().__init__(message, digest=digest, **attrs)


class StoreError(ImgcoreError):
    """The store is unusable (not an OCI layout, a broken index.json, ...)."""


class DiskFull(ImgcoreError, OSError):
    """The file system that a command writes to is full (``ENOSPC``/``EDQUOT``). ``path`` is the store (or the
    destination) and ``file`` the file being written when the kernel said so (None when it did not say).
    What was half-written has been removed; free some space and run the command again."""

    errno = 28  # ENOSPC, also for EDQUOT: code that checks OSError.errno sees a full disk either way


class InvalidStateFile(StoreError):
    """A state file of the store or of a container (``config.json``, ``run.json``, ``state.json``, ...) that is not
    JSON, too large, or does not follow its schema; the message names the file and the field."""


class InvalidManifest(ImgcoreError, ValueError):
    """A manifest, index or config that does not follow the OCI or Docker schema."""


class UnsupportedMediaType(InvalidManifest):
    """A media type imgcore does not handle."""


class ImageNotFound(ImgcoreError, LookupError):
    """No image with that name, tag or ID in the store."""


class NotAnImage(ImgcoreError, ValueError):
    """The name is an OCI artifact (a manifest whose config is not an image config, or with an ``artifactType``):
    it can be listed, pulled and removed, not run, inspected or built on."""


class ImageInUse(ImgcoreError):
    """The image is used by a container (``rmi -f`` overrides)."""


class ImageConflict(ImgcoreError):
    """Deleting the image needs ``-f``: it has several tags, or a prefix matches several images."""


class InvalidArgument(ImgcoreError, ValueError):
    """A malformed option value: a ``--filter``, a ``-c`` change instruction, a platform."""


class ContainerNotFound(ImgcoreError, LookupError):
    """No container with that name or ID."""


class InvalidArchive(ImgcoreError):
    """A layer or image archive is malformed: truncated, corrupt header, bad compression stream."""


class LimitExceeded(InvalidArchive):
    """An archive exceeded a safety limit (total bytes, entry count): a likely archive bomb."""


class UnsafeArchiveEntry(ImgcoreError):
    """An archive entry would land, or reach through a link, outside the target directory."""

    entry: str | None

    def __init__(self, message: str, *, entry: str | None = None, **attrs: Any) -> None:
        super().__init__(message, entry=entry, **attrs)


class InvalidTree(ImgcoreError):
    """A filesystem tree that a diff or layer cannot represent: an unsupported overlayfs feature (redirect_dir),
    a file that changed while the layer was written, a change list naming a path that is not there.
    ``path`` is the offending path."""

    path: str | None

    def __init__(self, message: str, *, path: str | None = None, **attrs: Any) -> None:
        super().__init__(message, path=path, **attrs)


class RegistryError(ImgcoreError):
    """A registry answered with an error or could not be reached.

    ``status`` is the HTTP status (None for transport errors), ``code`` the distribution-spec error code
    (``MANIFEST_UNKNOWN``, ...), ``retryable`` whether trying again may help (5xx, 429, dropped connections).
    """

    status: int | None
    code: str | None
    retryable: bool

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        retryable: bool = False,
        **attrs: Any,
    ) -> None:
        super().__init__(message, status=status, code=code, retryable=retryable, **attrs)


class AuthError(RegistryError):
    """The registry refused the credentials (401/403)."""


class NotFound(RegistryError, LookupError):
    """The registry has no such repository, manifest or blob."""


class RateLimited(RegistryError):
    """The registry asked us to slow down (429)."""


class UnsupportedOperation(RegistryError):
    """The registry does not offer the operation (405, or the error code ``UNSUPPORTED``): a delete on a registry
    whose storage has deletes disabled, a catalog the registry does not list."""


class InvalidTemplate(ImgcoreError, ValueError):
    """A ``--format`` Go template that does not parse or fails while it runs (a field on a string, a function
    given the wrong types). ``template`` is the template text, ``offset`` the 0-based character offset of the
    failing element, ``line`` its 1-based line and ``column`` its 0-based column, counted as Go counts them."""

    template: str | None
    offset: int | None
    line: int | None
    column: int | None

    def __init__(
        self,
        message: str,
        *,
        template: str | None = None,
        offset: int | None = None,
        line: int | None = None,
        column: int | None = None,
        **attrs: Any,
    ) -> None:
        super().__init__(message, template=template, offset=offset, line=line, column=column, **attrs)


class BaseMismatch(InvalidArgument):
    """``rebase --old-base``: the named image is not the image's base (its diff_ids are not the bottom ones)."""
