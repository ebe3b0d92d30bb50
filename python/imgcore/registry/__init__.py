"""The OCI distribution protocol: a registry client (:mod:`.client`) and credentials and challenges (:mod:`.auth`)."""

from __future__ import annotations

from imgcore.registry.auth import Credentials, load_credentials, redact, remove_credentials, save_credentials
from imgcore.registry.client import BlobStream, ManifestResponse, RegistryClient, error_from_response, is_insecure_host

__all__ = [
    "BlobStream",
    "Credentials",
    "ManifestResponse",
    "RegistryClient",
    "error_from_response",
    "is_insecure_host",
    "load_credentials",
    "redact",
    "remove_credentials",
    "save_credentials",
]
