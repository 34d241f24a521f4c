"""Offline audit commands: ``export``, ``audit``, ``prove``, ``checkpoint``."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import Any, BinaryIO, cast

import click

from federation.audit import AuditReport, audit_bundle
from federation.errors import BundleError
from node.audit_workers import SignatureWorkers
from node.bundle import export_bundle
from node.checkpoints import CheckpointBook, leaf_hashes
from node.cli.common import (
    EXIT_UNUSABLE,
    PROGRESS_EVERY,
    Failure,
    Update,
    emit,
    examples,
    home_given,
    home_path,
    json_option,
    now_us,
    open_node,
    parse_lab_id,
    progress_bar,
    resolve_lab,
    resolve_ref,
    short_ref,
    shows_progress,
)
from node.home import Home
from protocol import merkle
from protocol.errors import ProtocolError
from protocol.proofs import (
    encode_consistency,
    encode_inclusion,
    origin_ids,
    verify_consistency_file,
    verify_inclusion_file,
)


@click.command()
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Bundle file.")
@click.option("--author", "authors", multiple=True, metavar="LAB",
              help="Only these feeds, by name or id prefix (repeat); default every feed.")
@click.option("--redact", "member", metavar="HANDLE",
              help="Drop the bodies of this member's entries (personal data).")
@json_option
@click.pass_context
@examples("  disco export --out cj-2026-11.bundle --redact ana")
def export(ctx: click.Context, out: Path, authors: tuple[str, ...], member: str | None,
           as_json: bool) -> None:
    """Write an offline bundle: genesis, feeds, checkpoints, fork proofs.

    A progress bar shows on a terminal (not with --json)."""
    with open_node(ctx, writer=True) as node:
        labs = [resolve_lab(node, a, "--author") for a in authors] or None
        try:
            f = out.open("xb")
        except FileExistsError:
            raise Failure(f"{out} exists; not overwriting it", EXIT_UNUSABLE) from None
        bar = shows_progress(as_json)
        total = sum(node.store.head(a)[0] for a in labs or node.feeds()) if bar else None
        with f, progress_bar("exporting", total, enabled=bar) as update:
            sink = cast(BinaryIO, _Counted(f, update)) if bar else f
            count = export_bundle(node, sink, now_us(), authors=labs, redact_member=member)
    if as_json:
        emit({"entries": count, "file": str(out)})
    else:
        click.echo(f"{count} entries written to {out}")


class _Counted:
    """A bundle file that counts the records written to it (one write each) for a
    progress bar."""

    def __init__(self, f: BinaryIO, update: Update) -> None:
        self.f, self.update, self.records = f, update, 0

    def write(self, data: bytes) -> int:
        self.records += 1
        if self.records % PROGRESS_EVERY == 0:
            self.update(self.records)
        return self.f.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.f, name)


REDACTED_DIGEST = ("{n} redacted entries count for nothing here (their bodies were "
                   "removed before export), so this state digest differs from the one the "
                   "nodes show; balances and transfers are the same unless a redacted "
                   "entry carried them")


def _print_report(report: AuditReport, as_json: bool) -> None:
    if as_json:
        doc = report.as_json()
        if report.redacted:
            doc["digest_note"] = REDACTED_DIGEST.format(n=report.redacted)
        emit(doc)
        return
    click.echo(f"federation {report.federation} ({report.federation_id.hex()})")
    click.echo(f"{report.entries} entries in {len(report.feeds)} feeds, "
               f"{report.checkpoints} checkpoints, {report.forks} fork proofs, "
               f"{report.redacted} redacted")
    click.echo(f"state digest {report.state_digest.hex()}")
    if report.redacted:
        click.echo("note: " + REDACTED_DIGEST.format(n=report.redacted))
    if report.ok:
        click.echo("audit passed: every signature, link, checkpoint and ledger rule holds")
        return
    click.echo(f"audit FAILED: {len(report.violations)} violations")
    for v in report.violations:
        where = short_ref(v.author, v.seq) if v.author else "bundle"
        click.echo(f"  {where:<22} {v.code:<22} {v.message}")


def _audit_file(f: BinaryIO, size: int, as_json: bool) -> AuditReport:
    """Audit the bundle in ``f`` with its signatures checked on every core (the
    workers start before the progress bar's thread); a bar on a terminal, not with
    ``--json``, for a bundle of 1 MiB or more."""
    with SignatureWorkers.for_bundle(f) as workers:
        bar = shows_progress(as_json) and size >= 1 << 20
        if not bar:
            return audit_bundle(f, check_signatures=workers)
        with progress_bar("auditing", size, enabled=True) as update:
            return audit_bundle(f, check_signatures=workers,
                                progress=lambda _: update(f.tell()))


@click.command()
@click.argument("file", required=False, type=click.Path(path_type=Path))
@click.option("--proof", "proof", type=click.Path(path_type=Path),
              help="Check an inclusion proof file instead (with --key).")
@click.option("--key", metavar="LAB_ID", help="The LAB whose key signed the proof.")
@click.option("--consistency", nargs=2, type=click.Path(path_type=Path),
              metavar="OLD NEW", help="Check that checkpoint NEW extends OLD.")
@json_option
@click.pass_context
@examples("  disco audit cj-2026-11.bundle\n"
          "  disco audit --home ./farm\n"
          "  disco audit --proof entry.proof --key 3f2a...\n"
          "  disco audit --consistency old.checkpoint new.consistency")
def audit(ctx: click.Context, file: Path | None, proof: Path | None, key: str | None,
          consistency: tuple[Path, Path] | None, as_json: bool) -> None:
    """Verify offline, trusting no one: a bundle, a node's store, or a proof.

    Exit 0 when everything holds, 1 on any violation, 2 for an unusable file.
    """
    try:
        if proof is not None:
            _audit_proof(proof, key, as_json)
            return
        if consistency is not None:
            _audit_consistency(consistency, key, as_json)
            return
        if file is not None:
            with _open(file) as f:
                report = _audit_file(f, file.stat().st_size, as_json)
        else:
            report = _audit_home(ctx, as_json)
            Home.open(home_path(ctx)).record_check(ok=report.ok,
                                                   problems=len(report.violations),
                                                   by="audit")
    except BundleError as e:
        raise Failure(str(e), EXIT_UNUSABLE) from None
    _print_report(report, as_json)
    if not report.ok:
        ctx.exit(1)


def _open(path: Path) -> BinaryIO:
    try:
        return path.open("rb")
    except OSError as e:
        raise Failure(f"{path}: {e.strerror}", EXIT_UNUSABLE) from None


def _audit_home(ctx: click.Context, as_json: bool) -> AuditReport:
    if not home_given(ctx):
        raise click.UsageError("give a bundle FILE or --home DIR")
    with tempfile.TemporaryFile() as f:
        with open_node(ctx) as node:
            export_bundle(node, f, now_us())
        size = f.tell()
        f.seek(0)
        return _audit_file(f, size, as_json)


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as e:
        raise Failure(f"{path}: {e.strerror}", EXIT_UNUSABLE) from None


def _audit_proof(path: Path, key: str | None, as_json: bool) -> None:
    if not key:
        raise click.UsageError("--proof needs --key LAB_ID")
    lab = parse_lab_id(key)
    try:
        result = verify_inclusion_file(_read(path), lab)
    except ProtocolError as e:
        _fail_proof(str(e), as_json)
        return
    doc: dict[str, Any] = {"ok": True, "ref": str(result.entry.ref),
                           "kind": result.entry.kind, "tree_size": result.checkpoint.size}
    if as_json:
        emit(doc)
    else:
        click.echo(f"proof holds: {result.entry.kind} {result.entry.ref} is entry "
                   f"{result.entry.seq} of a tree of {result.checkpoint.size} signed by the LAB")


def _fail_proof(message: str, as_json: bool) -> None:
    if as_json:
        emit({"ok": False, "error": message})
        sys.exit(1)
    raise Failure(f"proof FAILED: {message}")


def _audit_consistency(paths: tuple[Path, Path], key: str | None, as_json: bool) -> None:
    old, new = (_read(p) for p in paths)
    try:
        fid, lab = origin_ids(old)
        if key and parse_lab_id(key) != lab:
            raise Failure("the checkpoint is not of the LAB given with --key")
        a, b = verify_consistency_file(old, new, lab, fid)
    except ProtocolError as e:
        _fail_proof(str(e), as_json)
        return
    if as_json:
        emit({"ok": True, "old_size": a.size, "new_size": b.size})
    else:
        click.echo(f"consistent: the tree of {b.size} extends the tree of {a.size}")


@click.command()
@click.argument("ref", required=False)
@click.option("--from", "old", type=click.Path(path_type=Path),
              help="Instead: a consistency proof from this older checkpoint of our feed.")
@click.option("--out", type=click.Path(path_type=Path), required=True)
@json_option
@click.pass_context
@examples("  disco prove 3f2a:12 --out entry.proof\n"
          "  disco prove --from old.checkpoint --out new.consistency")
def prove(ctx: click.Context, ref: str | None, old: Path | None, out: Path,
          as_json: bool) -> None:
    """Write a proof a third party checks offline with 'disco audit --proof'."""
    with open_node(ctx, writer=True) as node:
        genesis = node.require_genesis()
        book = CheckpointBook(node.store, genesis.federation_id, node.keys_of)
        own_cp, own_note = book.sign_own(node.signer, node.lab_id)  # type: ignore[arg-type]
        if old is not None:
            try:
                fid, lab = origin_ids(_read(old))
            except ProtocolError as e:
                raise Failure(str(e), EXIT_UNUSABLE) from None
            if lab != node.lab_id:
                raise Failure("--from must be a checkpoint of this LAB's own feed")
            from protocol.checkpoint import verify_checkpoint

            old_cp = verify_checkpoint(_read(old), lab, fid)
            leaves = leaf_hashes(node.store, lab, own_cp.size)
            proof = (merkle.consistency_proof(leaves, old_cp.size)
                     if 0 < old_cp.size < own_cp.size else [])
            data = encode_consistency(old_cp.size, proof, own_note)
            doc: dict[str, Any] = {"file": str(out), "old_size": old_cp.size,
                                   "new_size": own_cp.size}
        else:
            if not ref:
                raise click.UsageError("give a REF or --from OLD")
            target = resolve_ref(node, ref)
            if target.author == node.lab_id:
                cp, note = own_cp, own_note
            else:
                held = book.latest(target.author)
                if held is None:
                    raise Failure("no signed checkpoint of that feed is held here")
                cp, note = held
            if target.seq > cp.size:
                raise Failure(f"the latest checkpoint covers {cp.size} entries; "
                              "sync to get a newer one")
            entry = node.store.get(target.author, target.seq)
            assert entry is not None
            leaves = leaf_hashes(node.store, target.author, cp.size)
            data = encode_inclusion(entry, merkle.inclusion_proof(leaves, target.seq - 1), note)
            doc = {"file": str(out), "ref": str(entry.ref), "kind": entry.kind,
                   "tree_size": cp.size}
    _write_new(out, data)
    if as_json:
        emit(doc)
    else:
        click.echo(f"proof written to {out}")


@click.command()
@click.option("--out", type=click.Path(path_type=Path), help="Write the note to FILE.")
@json_option
@click.pass_context
@examples("  disco checkpoint --out farm-2026-11.checkpoint")
def checkpoint(ctx: click.Context, out: Path | None, as_json: bool) -> None:
    """Sign and print a checkpoint of this LAB's feed (C2SP signed note).

    With --json: the feed's size and root hash, the note itself and the file."""
    with open_node(ctx, writer=True) as node:
        book = CheckpointBook(node.store, node.require_genesis().federation_id,
                              node.keys_of)
        if not node.signs_checkpoints():
            raise Failure("refused: this LAB's feed is frozen by a fork, or its key is not "
                          "the one in force; it signs no checkpoint until that is mended "
                          "('disco status', 'disco proposals')")
        cp, note = book.sign_own(node.signer, node.lab_id)  # type: ignore[arg-type]
        lab_id = node.lab_id
    if out is not None:
        _write_new(out, note)
    if as_json:
        emit({"lab_id": lab_id.hex(), "size": cp.size, "root": cp.root.hex(),
              "note": note.decode(), "file": str(out) if out else None})
    elif out is None:
        click.echo(note.decode(), nl=False)
    else:
        click.echo(f"checkpoint written to {out}")


def _write_new(out: Path, data: bytes) -> None:
    """Write a new file; refuse to overwrite one (exit 2)."""
    try:
        with out.open("xb") as f:
            f.write(data)
    except FileExistsError:
        raise Failure(f"{out} exists; not overwriting it", EXIT_UNUSABLE) from None
