"""``python -m insitu.cli``: the same as the ``insitu`` command."""

from insitu.cli.main import main

main()
