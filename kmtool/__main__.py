"""`python -m kmtool` runs the same CLI as the `kmtool` console script."""

from kmtool.cli import main

main()
