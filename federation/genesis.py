"""The genesis document: a federation's name, units, rules and founding LABs.

The document is a canonical msgpack map; ``federation_id`` is the SHA-256 of its
bytes. People see it as JSON (ids in hex): :func:`encode_genesis_json` writes that
text and :func:`decode_genesis_json` turns it back into exactly the same map, checking
the ``federation_id`` written beside it, so a damaged or edited file is refused rather
than silently founding another federation. (Reading and writing the file is the
node's: ``node.home``.)

Document (format 1)::

    {"version": 1, "name": str, "created_us": int,
     "units": {CODE: decimals}, "rules": {"credit_limit": {CODE: minor units},
                                         ["threshold": [N, D]], ["expiry_days": int]},
     "labs": [{"id": bin 32, "name": str}, ...]}

The governance rules (DESIGN.md, "The federation over time") are written only when
they differ from the defaults, so a federation founded before they existed keeps its
id: ``threshold`` (a proposal passes with at least N/D of the voting LABs, default
2/3) and ``expiry_days`` (a proposal not passed within this many days of its
timestamp lapses, default 30).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from federation.errors import GenesisError
from protocol import canonical
from protocol.entry import sha256
from protocol.errors import ProtocolError

GENESIS_VERSION = 1
UNIT_CODE = re.compile(r"^[A-Z][A-Z0-9]{1,11}$")
MAX_DECIMALS = 8
MAX_NAME = 120
DEFAULT_THRESHOLD = (2, 3)
DEFAULT_EXPIRY_DAYS = 30
MAX_EXPIRY_DAYS = 3650


def threshold_problem(value: object) -> str | None:
    """What is wrong with ``value`` as a voting threshold [N, D] (1 <= N <= D <=
    1000), or None."""
    if (not isinstance(value, (list, tuple)) or len(value) != 2
            or not all(type(v) is int for v in value)):
        return "want a fraction N/D of whole numbers"
    n, d = value
    return None if 1 <= n <= d <= 1000 else "want 1 <= N <= D <= 1000"


@dataclass(frozen=True)
class Lab:
    """A roster member: its LAB id (first public key) and its name."""

    id: bytes
    name: str


@dataclass(frozen=True)
class Genesis:
    """A checked genesis document. Build with :func:`create_genesis` or a loader."""

    name: str
    created_us: int
    units: Mapping[str, int]
    credit_limits: Mapping[str, int]
    labs: tuple[Lab, ...]
    threshold: tuple[int, int] = DEFAULT_THRESHOLD
    expiry_days: int = DEFAULT_EXPIRY_DAYS

    def rules(self) -> dict[str, Any]:
        """The rules map: credit limits, and the governance rules that differ from the
        defaults."""
        rules: dict[str, Any] = {"credit_limit": dict(self.credit_limits)}
        if self.threshold != DEFAULT_THRESHOLD:
            rules["threshold"] = list(self.threshold)
        if self.expiry_days != DEFAULT_EXPIRY_DAYS:
            rules["expiry_days"] = self.expiry_days
        return rules

    def document(self) -> dict[str, Any]:
        """The canonical map that is hashed into the federation id."""
        return {
            "version": GENESIS_VERSION,
            "name": self.name,
            "created_us": self.created_us,
            "units": dict(self.units),
            "rules": self.rules(),
            "labs": [{"id": lab.id, "name": lab.name} for lab in self.labs],
        }

    def encode(self) -> bytes:
        return canonical.encode(self.document())

    @cached_property
    def federation_id(self) -> bytes:
        """SHA-256 of the canonical document (computed once)."""
        return sha256(self.encode())

    @cached_property
    def roster(self) -> dict[bytes, str]:
        """LAB id -> name, for every founding LAB (the roster in force, with the LABs
        admitted later, is the ledger's: :meth:`~federation.ledger.Ledger.lab_name`)."""
        return {lab.id: lab.name for lab in self.labs}

    def to_json(self) -> dict[str, Any]:
        """The rendering for people (and the file format), with the federation id."""
        return {
            "federation_id": self.federation_id.hex(),
            "version": GENESIS_VERSION,
            "name": self.name,
            "created_us": self.created_us,
            "units": dict(self.units),
            "rules": self.rules(),
            "labs": [{"id": lab.id.hex(), "name": lab.name} for lab in self.labs],
        }


def _check(genesis: Genesis) -> Genesis:
    if not genesis.name.strip() or len(genesis.name) > MAX_NAME:
        raise GenesisError(f"federation name must be 1 to {MAX_NAME} characters")
    if not genesis.units:
        raise GenesisError("a federation needs at least one unit (e.g. --unit JXC:2)")
    for code, decimals in genesis.units.items():
        if not UNIT_CODE.match(code):
            raise GenesisError(f"unit code {code!r}: want 2 to 12 capital letters or digits")
        if type(decimals) is not int or not 0 <= decimals <= MAX_DECIMALS:
            raise GenesisError(f"unit {code}: decimals must be 0 to {MAX_DECIMALS}")
    for code, limit in genesis.credit_limits.items():
        if code not in genesis.units:
            raise GenesisError(f"credit limit names unit {code}, which is not a unit")
        if type(limit) is not int or limit < 0:
            raise GenesisError(f"credit limit for {code} must be a whole amount >= 0")
    if len(genesis.labs) < 1:
        raise GenesisError("a federation needs at least one founding LAB")
    seen: set[bytes] = set()
    for lab in genesis.labs:
        if len(lab.id) != 32:
            raise GenesisError(f"LAB id {lab.id.hex()!r}: want 64 hex digits")
        if lab.id in seen:
            raise GenesisError(f"LAB {lab.id.hex()} is named twice")
        if not lab.name.strip() or len(lab.name) > MAX_NAME:
            raise GenesisError(f"LAB {lab.id.hex()[:8]}: name must be 1 to {MAX_NAME} characters")
        seen.add(lab.id)
    problem = threshold_problem(genesis.threshold)
    if problem:
        raise GenesisError(f"threshold: {problem}")
    if type(genesis.expiry_days) is not int or not 1 <= genesis.expiry_days <= MAX_EXPIRY_DAYS:
        raise GenesisError(f"expiry_days must be 1 to {MAX_EXPIRY_DAYS}")
    return genesis


def create_genesis(
    name: str,
    *,
    labs: Iterable[Lab],
    units: Mapping[str, int],
    credit_limits: Mapping[str, int],
    now_us: int,
    threshold: tuple[int, int] = DEFAULT_THRESHOLD,
    expiry_days: int = DEFAULT_EXPIRY_DAYS,
) -> Genesis:
    """A new, checked genesis. Raises :class:`GenesisError` naming what is wrong."""
    return _check(Genesis(name, now_us, dict(units), dict(credit_limits), tuple(labs),
                          tuple(threshold), expiry_days))  # type: ignore[arg-type]


def _from_document(doc: Any, hex_ids: bool) -> Genesis:
    try:
        if doc.get("version") != GENESIS_VERSION:
            raise GenesisError(f"genesis version {doc.get('version')!r}, want {GENESIS_VERSION}")
        labs = tuple(
            Lab(bytes.fromhex(lab["id"]) if hex_ids else lab["id"], lab["name"])
            for lab in doc["labs"]
        )
        rules = doc["rules"]
        unknown = sorted(set(rules) - {"credit_limit", "threshold", "expiry_days"})
        if unknown:
            raise GenesisError(f"genesis: unknown rule {unknown[0]!r}")
        threshold = rules.get("threshold", list(DEFAULT_THRESHOLD))
        problem = threshold_problem(threshold)
        if problem:
            raise GenesisError(f"genesis: threshold: {problem}")
        genesis = Genesis(
            doc["name"], doc["created_us"], dict(doc["units"]),
            dict(rules["credit_limit"]), labs, (threshold[0], threshold[1]),
            rules.get("expiry_days", DEFAULT_EXPIRY_DAYS),
        )
        if not isinstance(genesis.name, str) or type(genesis.created_us) is not int:
            raise GenesisError("genesis: name must be text and created_us an integer")
        if not all(isinstance(lab.id, bytes) and isinstance(lab.name, str) for lab in labs):
            raise GenesisError("genesis: each LAB needs an id and a text name")
        return _check(genesis)
    except GenesisError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise GenesisError(f"genesis document is missing or misshaping a field ({e})") from None


def decode_genesis(data: bytes) -> Genesis:
    """Decode the canonical msgpack document. Raises :class:`GenesisError`."""
    try:
        doc = canonical.decode(data, what="genesis")
    except ProtocolError as e:
        raise GenesisError(str(e)) from None
    if not isinstance(doc, dict):
        raise GenesisError("genesis: want a map")
    return _from_document(doc, hex_ids=False)


def genesis_from_json(data: Mapping[str, Any]) -> Genesis:
    """Parse the JSON rendering; check its ``federation_id`` when present.

    Raises :class:`GenesisError` when a field is missing or wrong, or when the
    document does not hash to the stated federation id (a damaged or edited file).
    """
    genesis = _from_document(data, hex_ids=True)
    stated = data.get("federation_id")
    if stated is not None and stated != genesis.federation_id.hex():
        raise GenesisError(
            "genesis file does not match its federation_id: it was damaged or edited"
        )
    return genesis


def decode_genesis_json(text: str | bytes) -> Genesis:
    """Parse a genesis file's text (the JSON rendering, :func:`encode_genesis_json`).

    Raises :class:`GenesisError` with one clear line: not UTF-8, not JSON (naming the
    line), not a JSON object, a missing or wrong field, or a ``federation_id`` the
    document does not hash to.
    """
    try:
        data = json.loads(text)
    except UnicodeDecodeError:
        raise GenesisError("not a genesis file (not UTF-8 text)") from None
    except json.JSONDecodeError as e:
        raise GenesisError(f"not a genesis file (invalid JSON at line {e.lineno})") from None
    if not isinstance(data, dict):
        raise GenesisError("not a genesis file (want a JSON object)")
    return genesis_from_json(data)


def encode_genesis_json(genesis: Genesis) -> str:
    """The text of a genesis file: :meth:`Genesis.to_json`, indented, one final newline."""
    return json.dumps(genesis.to_json(), indent=2) + "\n"
