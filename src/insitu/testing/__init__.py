"""Contract test suites shipped with insitu, for implementations of its interfaces."""

from insitu.testing.cluster_backend import ClusterBackendTests
from insitu.testing.format_reader import FormatReaderTests
from insitu.testing.job_store import JobStoreTests
from insitu.testing.token_store import TokenStoreTests

__all__ = ["ClusterBackendTests", "FormatReaderTests", "JobStoreTests", "TokenStoreTests"]
