"""`python -m pipeline`: the CLI."""

from pipeline.cli.main import run

run()
