"""``python -m node.cli``: the same as the ``disco`` command."""

from node.cli import run

run()
