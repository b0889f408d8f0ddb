"""Contract test suites shipped with insitu, for implementations of its interfaces."""
