"""What every command shares: --home, --json, errors as one line, exit codes.

Exit codes (DESIGN.md): 0 ok; 1 failure or violations found; 2 usage error or
unusable input. A user mistake gets one line on stderr, never a traceback.
"""

from __future__ import annotations

import inspect
import json
import os
import re
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, TypeVar

import click
from click.exceptions import NoArgsIsHelpError

from federation.errors import FederationError, GenesisError, RuleViolation
from federation.genesis import threshold_problem
from federation.kinds import MAX_AMOUNT, MAX_MINUTES, day_problem
from federation.valueflows import amount_text
from node.errors import NodeError
from node.home import Home, HomeError
from node.lab import LabNode
from protocol.entry import Ref
from protocol.errors import KeyFileError, PassphraseError, ProtocolError
from protocol.keys import Signer

F = TypeVar("F", bound=Callable[..., Any])

EXIT_FAILURE = 1
EXIT_UNUSABLE = 2
CHECK_MAX_AGE_DAYS = 30
"""``status``, ``balance`` and ``serve`` warn when the store's last full check is
older than this many days (``DISCO_CHECK_MAX_AGE_DAYS`` overrides it)."""


class Failure(click.ClickException):
    """One line on stderr and an exit code (1 by default)."""

    def __init__(self, message: str, exit_code: int = EXIT_FAILURE) -> None:
        super().__init__(message)
        self.exit_code = exit_code  # type: ignore[misc]

    def show(self, file: Any = None) -> None:
        click.echo(f"disco: {self.format_message()}", err=True)


def translate(error: Exception) -> Failure:
    """The one-line failure for an error of one of the layers (``ProtocolError``,
    ``FederationError``, ``NodeError``); re-raises anything else."""
    if isinstance(error, (HomeError, GenesisError)):
        return Failure(str(error), EXIT_UNUSABLE)
    if isinstance(error, PassphraseError):
        return Failure(str(error))
    if isinstance(error, KeyFileError):
        return Failure(str(error), EXIT_UNUSABLE)
    if isinstance(error, RuleViolation):
        return Failure(f"refused: {error} [{error.code}]")
    if isinstance(error, (FederationError, NodeError, ProtocolError)):
        return Failure(str(error))
    raise error


class DiscoGroup(click.Group):
    """A group that turns library errors into one line and an exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (FederationError, NodeError, ProtocolError) as e:
            raise translate(e) from None
        except BrokenPipeError:  # the reader went away (`disco log | head`): end quietly
            _quiet_stdout()
            raise click.exceptions.Exit(0) from None
        except OSError as e:
            raise Failure(f"{e.filename or ''}: {e.strerror}".strip(": ")) from None


_HOME_KEY = "disco.home"


def _home_after(ctx: click.Context, param: click.Parameter, value: Path | None) -> None:
    if value is not None:
        ctx.meta[_HOME_KEY] = value


def home_option() -> click.Option:
    """``--home DIR`` after the command name (``disco audit --home ./farm``); it
    overrides ``disco --home DIR`` and ``DISCO_HOME``. :mod:`node.cli` adds one to
    every command."""
    return click.Option(["--home"], type=click.Path(path_type=Path), metavar="DIR",
                        expose_value=False, callback=_home_after, is_eager=True,
                        help="The node's folder; the same as 'disco --home DIR' before "
                             "the command.")


def home_given(ctx: click.Context) -> bool:
    """True when a home was named: --home before or after the command, or DISCO_HOME."""
    return (ctx.meta.get(_HOME_KEY) is not None or bool(os.environ.get("DISCO_HOME"))
            or ctx.find_root().params.get("home") is not None)


def home_path(ctx: click.Context) -> Path:
    """The node's folder: --home after the command, else --home before it, else
    DISCO_HOME, else ~/.disco."""
    home = ctx.meta.get(_HOME_KEY) or ctx.find_root().params.get("home")
    return Path(home or os.environ.get("DISCO_HOME") or Path.home() / ".disco").expanduser()


def json_option(f: F) -> F:
    return click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")(f)


def emit(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=False, default=_jsonable))


def _jsonable(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.hex()
    raise TypeError(f"not JSON: {type(value).__name__}")


def now_us() -> int:
    return time.time_ns() // 1000


def passphrase_for(home: Home) -> bytes | None:
    """The key's passphrase: DISCO_PASSPHRASE, else a prompt on a terminal, else None."""
    if not home.key_is_encrypted():
        return None
    env = os.environ.get("DISCO_PASSPHRASE")
    if env:
        return env.encode()
    if sys.stdin.isatty():
        return str(click.prompt("Passphrase for the LAB key", hide_input=True)).encode()
    raise PassphraseError(f"{home.key_path}: the key is encrypted; set DISCO_PASSPHRASE")


def new_passphrase() -> bytes:
    """The passphrase for a new, encrypted key: DISCO_PASSPHRASE, else asked twice on
    a terminal. Raises :class:`Failure` (exit 2) with neither."""
    env = os.environ.get("DISCO_PASSPHRASE")
    if not env and not sys.stdin.isatty():
        raise Failure("--encrypt needs a passphrase: set DISCO_PASSPHRASE (no terminal "
                      "to ask on)", EXIT_UNUSABLE)
    return (env or click.prompt("New passphrase", hide_input=True,
                                confirmation_prompt=True)).encode()


def check_postgres_dsn(dsn: str) -> None:
    """Connect to ``dsn`` once (:func:`node.store.check_postgres`); a failure is one
    line naming the DSN (its password hidden) and the reason, exit 2."""
    from node.store import StoreError, check_postgres

    try:
        check_postgres(dsn)
    except StoreError as e:
        raise Failure(str(e), EXIT_UNUSABLE) from None


def load_signer(home: Home) -> Signer:
    home.check_key_file()  # before asking for a passphrase, as ssh does
    return home.signer(passphrase_for(home))


@contextmanager
def open_node(ctx: click.Context, *, writer: bool = False) -> Iterator[LabNode]:
    """The node at --home; with ``writer`` its key is loaded first."""
    home = Home.open(home_path(ctx))
    signer = load_signer(home) if writer else None
    node = LabNode.open(home, signer)
    try:
        yield node
    finally:
        node.close()


_CHECKS = {"init": "'disco init'", "verify": "'disco verify'", "rebuild": "'disco rebuild'",
           "audit": "'disco audit --home'", "catch-up": "the ledger's catch-up from nothing"}
"""How a warning names the check that :meth:`Home.record_check` noted."""


def check_warning(home: Home, now: datetime | None = None) -> str | None:
    """The warning that the store was never checked, not for too long, or failed its
    last check (:meth:`Home.last_check`); None when a recent check found it sound."""
    last = home.last_check()
    if last is None:
        return "this node's store has never been verified; run 'disco verify'"
    at = datetime.strptime(last["at"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    if not last["ok"]:
        by = _CHECKS.get(last["by"], repr(last["by"]))
        return (f"the store failed its last check ({by} on {at:%Y-%m-%d}: "
                f"{last['problems']} problem(s)); run 'disco verify' to see them")
    try:
        max_age = int(os.environ.get("DISCO_CHECK_MAX_AGE_DAYS") or CHECK_MAX_AGE_DAYS)
    except ValueError:
        max_age = CHECK_MAX_AGE_DAYS
    days = ((now or datetime.now(UTC)) - at).days
    if days > max_age:
        return (f"the store was last verified {days} days ago ({at:%Y-%m-%d}); "
                "run 'disco verify'")
    return None


def warn_unchecked(home: Home) -> dict[str, Any] | None:
    """Print :func:`check_warning` as one line on stderr, if there is one; return the
    last check for JSON (``"verified"``: ``{"at", "ok", "problems", "by"}`` or null)."""
    warning = check_warning(home)
    if warning is not None:
        click.echo(f"disco: warning: {warning}", err=True)
    return home.last_check()


PROGRESS_EVERY = 1000
"""Library loops report their progress every this many entries (cheap)."""


def shows_progress(as_json: bool = False) -> bool:
    """True when a command may draw a progress bar: stderr is a terminal and the
    output is not ``--json``."""
    return not as_json and sys.stderr.isatty()


Update = Callable[..., None]
"""``update(done)`` or ``update(done, total)``: a progress bar's new position."""


@contextmanager
def progress_bar(label: str, total: int | None, *, enabled: bool) -> Iterator[Update]:
    """A progress bar on stderr for the block, gone when it ends; yields
    ``update(done, total=None)`` (a new ``total`` when it changed), which a library
    loop may call from any thread. When not ``enabled`` (see :func:`shows_progress`)
    nothing is drawn and ``update`` does nothing."""
    if not enabled:
        yield lambda done, total=None: None
        return
    from rich.console import Console
    from rich.progress import Progress

    with Progress(console=Console(stderr=True), transient=True) as progress:
        task = progress.add_task(label, total=total or None)
        most = [total or 0]

        def update(done: int, total: int | None = None) -> None:
            if total is not None:
                most[0] = total
                progress.update(task, total=total or None)
            progress.update(task, completed=min(done, most[0]) if most[0] else done)

        yield update


def ago(then: float | None, now: float | None = None) -> str:
    """A time as a person reads it: "never", "just now", "40 s ago", "2 min ago",
    "3 h ago", "5 days ago" (``then`` and ``now`` in seconds since the epoch)."""
    if then is None:
        return "never"
    seconds = int((time.time() if now is None else now) - then)
    if seconds < 10:
        return "just now" if seconds > -10 else "in the future (check the clock)"
    if seconds < 60:
        return f"{seconds} s ago"
    minutes = seconds // 60
    if minutes < 120:
        return f"{minutes} min ago"
    hours = minutes // 60
    return f"{hours} h ago" if hours < 48 else f"{hours // 24} days ago"


_DECIMAL = re.compile(r"-?[0-9]+(\.[0-9]+)?")
"""A number as a person types it: digits, a point and digits; no exponent (``1e2``),
no comma (``12,50``), no ``NaN`` or ``Infinity``."""


def parse_hours(text: str, hint: str = "--hours") -> int:
    """``2.5`` or ``2:30`` -> 150 minutes. Raises click.BadParameter."""
    text = text.strip()
    try:
        if ":" in text:
            h, m = text.split(":")
            if not (h.isdigit() and m.isdigit() and len(m) == 2 and int(m) < 60):
                raise ValueError
            minutes = Decimal(int(h) * 60 + int(m))
        elif _DECIMAL.fullmatch(text):
            minutes = Decimal(text) * 60
        else:
            raise ValueError
    except (ValueError, InvalidOperation):
        raise _bad(f"{text!r}: want hours like 2.5 or 2:30", hint) from None
    if not minutes.is_finite() or minutes != minutes.to_integral_value():
        raise _bad(f"{text!r}: hours must come to whole minutes", hint)
    if minutes <= 0:
        raise _bad(f"{text!r}: hours must be more than zero", hint)
    if minutes > MAX_MINUTES:
        raise _bad(f"{text!r}: at most {MAX_MINUTES // 60} hours in one record", hint)
    return int(minutes)


def parse_amount(text: str, decimals: int, *, at_least: int = 1,
                 hint: str = "--amount") -> int:
    """``12.50`` with 2 decimals -> 1250, from ``at_least`` (in minor units) to the
    largest amount an entry holds. Raises click.BadParameter, in the unit's terms."""
    if not _DECIMAL.fullmatch(text.strip()):
        raise _bad(f"{text!r}: want an amount like 12.50", hint)
    scaled = Decimal(text.strip()).scaleb(decimals)
    if not scaled.is_finite() or scaled != scaled.to_integral_value():
        raise _bad(f"{text!r}: at most {decimals} decimals for this unit", hint)
    if scaled < at_least:
        raise _bad(f"{text!r}: the amount must be more than zero" if at_least
                   else f"{text!r}: the amount cannot be negative", hint)
    if scaled > MAX_AMOUNT:
        raise _bad(f"{text!r}: at most {amount_text(MAX_AMOUNT, decimals)}", hint)
    return int(scaled)


def _bad(message: str, hint: str) -> click.BadParameter:
    return click.BadParameter(message, param_hint=hint)


def parse_lab_id(text: str) -> bytes:
    try:
        lab = bytes.fromhex(text.strip())
    except ValueError:
        lab = b""
    if len(lab) != 32:
        raise click.BadParameter(f"{text!r}: want a LAB id of 64 hex digits")
    return lab


def resolve_lab(node: LabNode, text: str, param_hint: str) -> bytes:
    """A LAB of the roster (the ledger's: founders and admitted LABs, gone ones too)
    by its name (any case), its full id or a unique prefix of its id (4 hex digits
    or more). Raises click.BadParameter (exit 2)."""
    roster = node.ledger().roster
    wanted = text.strip()
    by_name = [lab for lab, name in roster.items() if name.casefold() == wanted.casefold()]
    if len(by_name) == 1:
        return by_name[0]
    hex_text = wanted.lower()
    is_hex = len(hex_text) >= 4 and all(c in "0123456789abcdef" for c in hex_text)
    by_id = [lab for lab in roster if is_hex and lab.hex().startswith(hex_text)]
    if len(by_id) == 1:
        return by_id[0]
    shown = list(roster.items())[:8]
    names = ", ".join(f"{name} ({lab.hex()[:8]})" for lab, name in shown)
    if len(roster) > len(shown):
        names += f", and {len(roster) - len(shown)} more ('disco status' lists them)"
    what = "several LABs" if len(by_id) > 1 or len(by_name) > 1 else "no LAB"
    raise click.BadParameter(f"{text!r} names {what} of the federation; give a name or "
                             f"more of the id: {names}", param_hint=param_hint)


def parse_key(text: str, param_hint: str = "--key") -> bytes:
    """An Ed25519 public key typed as 64 hex digits; a usage error (exit 2) otherwise."""
    try:
        key = bytes.fromhex(text.strip())
    except ValueError:
        key = b""
    if len(key) != 32:
        raise click.BadParameter(f"{text!r}: want a public key of 64 hex digits",
                                 param_hint=param_hint)
    return key


def parse_threshold(text: str, param_hint: str = "--threshold") -> tuple[int, int]:
    """A voting threshold typed as N/D (``2/3``: at least two thirds of the voters);
    a usage error (exit 2) unless 1 <= N <= D <= 1000
    (:func:`~federation.genesis.threshold_problem`)."""
    match = re.fullmatch(r"\s*([0-9]{1,6})\s*/\s*([0-9]{1,6})\s*", text)
    if match is None:
        raise click.BadParameter(f"{text!r}: want a fraction N/D, e.g. 2/3",
                                 param_hint=param_hint)
    value = (int(match[1]), int(match[2]))
    problem = threshold_problem(value)
    if problem is not None:
        raise click.BadParameter(f"{text!r}: {problem}", param_hint=param_hint)
    return value


_REF = re.compile(r"[0-9a-f]{4,64}|[0-9a-f]{1,64}:[0-9]+(:[0-9a-f]{0,64})?")


def resolve_ref(node: LabNode, text: str) -> Ref:
    """The entry a person named (:meth:`LabNode.resolve_ref`): a ref that cannot be one
    is a usage error (exit 2); one not held here, or ambiguous, a failure (exit 1)."""
    if not _REF.fullmatch(text.strip().lower()):
        raise click.BadParameter(f"{text!r}: want a ref AUTHOR:SEQ:HASH (hex prefixes "
                                 "will do, e.g. 3f2a:7) or 4 or more hex digits of an "
                                 "offer's hash", param_hint="REF")
    return node.resolve_ref(text)


def short_ref(author: bytes | str, seq: int, hash: bytes | str | None = None) -> str:
    """A ref as a person reads and types it: ``AUTHOR8:SEQ:HASH8`` (or ``AUTHOR8:SEQ``
    without a hash), the separator always ':'; ``disco`` takes it back as a prefix."""
    a = author.hex() if isinstance(author, bytes) else author
    if hash is None:
        return f"{a[:8]}:{seq}"
    h = hash.hex() if isinstance(hash, bytes) else hash
    return f"{a[:8]}:{seq}:{h[:8]}"


def examples(text: str) -> Callable[[F], F]:
    """Append an example block to a command's help (every command has one). The
    docstring is dedented first, as click would have it (the block's lines start
    at the margin, which would keep click from dedenting it)."""
    def deco(f: F) -> F:
        f.__doc__ = inspect.cleandoc(f.__doc__ or "") + "\n\n\b\nExample:\n" + text
        return f
    return deco


def run_main(group: click.Group, args: list[str] | None = None) -> None:
    """Run the CLI so that every error, usage errors included, is one line on stderr."""
    try:
        rv = group.main(args=args, prog_name="disco", standalone_mode=False)
    except NoArgsIsHelpError as e:  # `disco` or `disco member` alone: the help, not a mistake
        click.echo(e.ctx.get_help() if e.ctx else e.format_message())
        sys.exit(0)
    except click.UsageError as e:
        hint = f" (see 'disco {e.ctx.command_path.partition(' ')[2]} --help')".replace(
            "disco  --help", "disco --help") if e.ctx else ""
        click.echo(f"disco: {e.format_message()}{hint}", err=True)
        sys.exit(EXIT_UNUSABLE)
    except click.ClickException as e:  # ours (Failure) and click's own (no "Error:")
        click.echo(f"disco: {e.format_message()}", err=True)
        sys.exit(e.exit_code)
    except click.Abort:
        click.echo("disco: aborted", err=True)
        sys.exit(EXIT_FAILURE)
    except KeyboardInterrupt:
        sys.exit(130)
    except BrokenPipeError:
        _quiet_stdout()
        sys.exit(0)
    except Exception as e:  # a bug of ours: one line (DISCO_DEBUG=1 shows the traceback)
        if os.environ.get("DISCO_DEBUG"):
            raise
        click.echo(f"disco: internal error: {type(e).__name__}: {e} (run again with "
                   "DISCO_DEBUG=1 for the traceback, and report it)", err=True)
        sys.exit(EXIT_FAILURE)
    sys.exit(rv if isinstance(rv, int) else 0)


def _quiet_stdout() -> None:
    """After the reader went away (``disco log | head``) stdout is pointed at
    /dev/null, so that Python's flush at exit cannot fail again: the command ends
    quietly, exit 0, as ``cat`` does."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


def parse_day(text: str | None, option: str = "--date") -> str | None:
    """A day typed as YYYY-MM-DD (None stays None); a usage error (exit 2) otherwise."""
    if text is None:
        return None
    problem = day_problem(text)
    if problem is not None:
        raise click.BadParameter(f"{text!r}: {problem}, e.g. 2026-10-31", param_hint=option)
    return text
