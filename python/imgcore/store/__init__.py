"""The store: an OCI image layout (the content-addressed blobs and ``index.json``), imgcore's paths beside it,
and leases that keep a writer's blobs from garbage collection until its tag is written."""

from imgcore.store.cas import ContentStore, FsckProblem, Ingest, default_root, without_name
from imgcore.store.lease import Lease, collecting, leased
from imgcore.store.paths import StorePaths

__all__ = [
    "ContentStore",
    "FsckProblem",
    "Ingest",
    "Lease",
    "StorePaths",
    "collecting",
    "default_root",
    "leased",
    "without_name",
]
