"""The ``disco`` command line: a thin layer over :mod:`node.lab`.

Each command parses its arguments, calls the library and prints text or JSON;
library errors become one line on stderr (see :mod:`node.cli.common`).
"""

from __future__ import annotations

from pathlib import Path

import click

from node.cli import audit, corrections, entries, inspect, ledger, network, setup
from node.cli.common import DiscoGroup, home_option, run_main


@click.group(cls=DiscoGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--home", type=click.Path(path_type=Path), envvar="DISCO_HOME",
              help="The node's folder (default: DISCO_HOME or ~/.disco); it may also "
                   "follow the command name.")
@click.version_option(package_name="disco-ledger")
def main(home: Path | None) -> None:
    """DisCO federation ledger: a LAB's signed log and the federation's shared accounts.

    \b
    Example:
      disco --home ./farm init --name 'Freedom Farms'
    """


for command in (setup.init, setup.federation, setup.join, entries.member, entries.record,
                inspect.log, inspect.verify, ledger.transfer, ledger.acknowledge, ledger.income,
                ledger.policy, corrections.correct, corrections.void, ledger.balance,
                ledger.transfers, ledger.flows, ledger.payout,
                ledger.rebuild, ledger.export_vf, network.serve, network.peer, network.sync,
                network.status, audit.export, audit.audit, audit.prove, audit.checkpoint):
    main.add_command(command)


def _with_home_after(group: click.Group) -> None:
    """Every command and sub-group also takes --home after its name."""
    for command in group.commands.values():
        command.params.append(home_option())
        if isinstance(command, click.Group):
            _with_home_after(command)


_with_home_after(main)


def run() -> None:
    """Console-script entry point (``disco``)."""
    run_main(main)
