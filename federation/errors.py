"""Domain errors of the federation layer."""

from __future__ import annotations


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
