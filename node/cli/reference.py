"""The command-line reference (``docs/cli.md``), generated from ``--help``.

``make docs`` rewrites the file; a test fails when it drifts from the commands.
"""

from __future__ import annotations

import click

from node.cli import main


def _walk(group: click.Group, path: list[str]) -> list[tuple[list[str], click.Command]]:
    out: list[tuple[list[str], click.Command]] = []
    commands = main.all_commands() if group is main else group.commands
    for name in sorted(commands):
        command = commands[name]
        out.append(([*path, name], command))
        if isinstance(command, click.Group):
            out += _walk(command, [*path, name])
    return out


def render() -> str:
    """Markdown with the help text of every command, in a stable order."""
    parts = ["# Command-line reference\n",
             "Generated from `disco --help` by `make docs`; do not edit by hand.\n"]
    for path, command in [([], main), *_walk(main, [])]:
        ctx = click.Context(command, info_name=" ".join(["disco", *path]), terminal_width=88,
                            max_content_width=88, help_option_names=["-h", "--help"])
        parts.append(f"## disco {' '.join(path)}".rstrip() + "\n")
        parts.append("```\n" + command.get_help(ctx).rstrip() + "\n```\n")
    return "\n".join(parts)


if __name__ == "__main__":
    print(render(), end="")
