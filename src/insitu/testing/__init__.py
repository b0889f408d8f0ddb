"""Contract test suites shipped with insitu, for implementations of its interfaces."""

from insitu.testing.format_reader import FormatReaderTests

__all__ = ["FormatReaderTests"]
