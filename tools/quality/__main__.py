"""`python -m tools.quality`: the lab's command line (cli.py)."""

from .cli import main

main()
