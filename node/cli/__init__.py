"""The ``disco`` command line: a thin layer over :mod:`node.lab`.

Each command parses its arguments, calls the library and prints text or JSON;
library errors become one line on stderr (see :mod:`node.cli.common`).
"""

from __future__ import annotations

import importlib
from pathlib import Path

import click

from node.cli.common import DiscoGroup, home_option, run_main

COMMANDS = {
    "init": "node.cli.setup:init",
    "federation": "node.cli.setup:federation",
    "join": "node.cli.setup:join",
    "member": "node.cli.entries:member",
    "record": "node.cli.entries:record",
    "log": "node.cli.inspect:log",
    "verify": "node.cli.inspect:verify",
    "transfer": "node.cli.ledger:transfer",
    "acknowledge": "node.cli.ledger:acknowledge",
    "income": "node.cli.ledger:income",
    "policy": "node.cli.ledger:policy",
    "correct": "node.cli.corrections:correct",
    "void": "node.cli.corrections:void",
    "balance": "node.cli.ledger:balance",
    "transfers": "node.cli.ledger:transfers",
    "flows": "node.cli.ledger:flows",
    "payout": "node.cli.ledger:payout",
    "rebuild": "node.cli.ledger:rebuild",
    "export-vf": "node.cli.ledger:export_vf",
    "serve": "node.cli.network:serve",
    "peer": "node.cli.network:peer",
    "sync": "node.cli.network:sync",
    "status": "node.cli.network:status",
    "export": "node.cli.audit:export",
    "audit": "node.cli.audit:audit",
    "prove": "node.cli.audit:prove",
    "checkpoint": "node.cli.audit:checkpoint",
    "propose": "node.cli.governance:propose",
    "vote": "node.cli.governance:vote",
    "proposals": "node.cli.governance:proposals",
    "leave": "node.cli.governance:leave",
    "key": "node.cli.governance:key",
    "backup": "node.cli.backup:backup",
    "restore": "node.cli.backup:restore",
}
"""Every command, and where it is defined: a module is imported only when one of its
commands runs (``disco record`` does not load the HTTP client, the server or the
audit), as click's documentation shows for a lazily loading group."""


class LazyGroup(DiscoGroup):
    """:class:`DiscoGroup` whose commands (:data:`COMMANDS`) are imported on first
    use, each given ``--home`` after its name (and its sub-commands too)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*self.commands, *COMMANDS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in COMMANDS:
            module, attr = COMMANDS[cmd_name].split(":")
            command = getattr(importlib.import_module(module), attr)
            _with_home_after(command)
            self.add_command(command, cmd_name)
        return self.commands.get(cmd_name)

    def all_commands(self) -> dict[str, click.Command]:
        """Every command, imported (for the reference and the tests)."""
        ctx = click.Context(self)
        return {name: c for name in self.list_commands(ctx)
                if (c := self.get_command(ctx, name)) is not None}


def _with_home_after(command: click.Command) -> None:
    """The command, and each sub-command of a group, also takes --home after its name."""
    command.params.append(home_option())
    if isinstance(command, click.Group):
        for sub in command.commands.values():
            _with_home_after(sub)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
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


def run() -> None:
    """Console-script entry point (``disco``)."""
    run_main(main)
