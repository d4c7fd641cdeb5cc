"""`python -m pipeline`: the CLI."""

from pipeline.cli import run

run()
