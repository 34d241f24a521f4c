"""Domain errors of the federation layer."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Violation:
    """One finding of a check (store verification, audit): where (author hex and seq;
    empty and 0 when not tied to an entry), a stable code, and a message."""

    author: str
    seq: int
    code: str
    message: str

    def as_json(self) -> dict[str, Any]:
        return {"author": self.author, "seq": self.seq, "code": self.code,
                "message": self.message}


class FederationError(Exception):
    """Base of the federation layer's errors; ``str()`` is one line for a person."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class GenesisError(FederationError):
    """A genesis document or file is damaged or breaks the genesis rules."""


class RuleViolation(FederationError):
    """An entry breaks a ledger or schema rule. ``code`` is stable, for reports."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class PendingReference(FederationError):
    """An entry references an entry not (yet) held: it is pending, not invalid."""

    def __init__(self, missing: object, message: str) -> None:
        super().__init__(message)
        self.missing = missing


class InvariantError(FederationError):
    """The zero-sum invariant does not hold: a bug, never an input problem."""


class SnapshotError(FederationError):
    """A saved ledger snapshot is damaged, or of another ledger version or federation
    (the caller rebuilds the ledger from the feeds instead)."""


class BundleError(FederationError):
    """The file is not a usable bundle (not one, truncated, damaged framing)."""
