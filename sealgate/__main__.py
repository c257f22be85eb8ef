"""`python -m sealgate` runs the same command as the `sealgate` console script."""

from sealgate.cli import main

main()
