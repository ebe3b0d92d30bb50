"""``python -m imgcore``: the command line."""

from imgcore.cli import run

run()
