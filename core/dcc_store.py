"""Issued EU DCCs kept in a plugin's table: the revocation list they publish, and the verifier.

The vaccination and testing plugins each keep the certificates they issued
in a table of their own, with at least ``identifier`` (the UVCI),
``content`` (the ``HC1:`` text) and ``revoked_at``. What they publish about
revoked certificates, and how a certificate handed to their verifier is
checked, is the same for both and lives here; each plugin keeps its own
response shapes and wording.

Verification reads the trust list and the revocation state and nothing
else: it writes no row, no audit record and no log line about the holder.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import msgspec

from core import clock, dcc

if TYPE_CHECKING:
    from piccolo.table import Table

    from core.storage import Database

NO_TRUST_LIST = "This service has no trust list yet."
VALID = "Valid: signed by a trusted key, unaltered, not expired and not revoked."
REVOCATION_HASH_TYPES = ("UCI", "COUNTRYCODEUCI", "SIGNATURE")
_ENTRY_KINDS = {"v": "vaccination", "t": "test", "r": "recovery"}
View = TypeVar("View", bound=msgspec.Struct)


@dataclass(frozen=True)
class Verdict:
    """What the verifier found: valid or not and why, and for a valid one what a checker may see."""

    valid: bool
    reason: str
    revoked: bool = False
    name: str | None = None
    birth_date: str | None = None
    summary: str | None = None
    entry: Mapping[str, Any] = field(default_factory=dict)

    def as_view(self, view: type[View]) -> View:
        """The plugin's response Struct, filled with those of these fields that it has."""
        return view(**{name: getattr(self, name) for name in view.__struct_fields__})


async def revocation_hashes(table: type[Table], *conditions: Any) -> dict[str, list[str]]:
    """The DCC revocation scheme's three hashes of every revoked certificate in ``table``, sorted.

    ``conditions`` narrow the rows further (Piccolo where clauses, e.g. one
    format, or not yet expired). A stored text that no longer decodes is
    left out.
    """
    columns = table._meta
    rows = await table.select(columns.get_column_by_name("content")).where(
        columns.get_column_by_name("revoked_at").is_not_null(), *conditions
    )
    hashes: dict[str, set[str]] = {kind: set() for kind in REVOCATION_HASH_TYPES}
    for row in rows:
        try:
            values = dcc.revocation_hashes(dcc.decode(row["content"]))
        except dcc.InvalidCertificate:
            continue
        for kind, value in values.items():
            hashes[kind].add(value)
    return {kind: sorted(values) for kind, values in hashes.items()}


async def verify(
    db: Database,
    table: type[Table],
    keys: dcc.KeyStore,
    text: str,
    *,
    kind: str,
    revoked_reason: str,
    summary: Callable[[dict[str, Any]], str],
    accept: Callable[[dict[str, Any]], None] | None = None,
) -> Verdict:
    """Check an ``HC1:`` certificate against the trust list of ``keys`` and the revocations in ``table``.

    The certificate must hold exactly one entry of ``kind`` (``v``, ``t`` or
    ``r``); ``accept`` may refuse it further by raising
    ``dcc.InvalidCertificate``. A revoked certificate is invalid with
    ``revoked_reason``. A valid one is described by ``summary(entry)``.
    Stores nothing.
    """
    try:
        trust = keys.trust_list()
    except dcc.KeysMissing:
        return Verdict(valid=False, reason=NO_TRUST_LIST)
    try:
        certificate = dcc.verify(text, trust, now=clock.now()).hcert
        entry = _only_entry(certificate, kind)
        if accept is not None:
            accept(entry)
    except dcc.InvalidCertificate as exc:
        return Verdict(valid=False, reason=str(exc))
    if await is_revoked(db, table, str(entry.get("ci", ""))):
        return Verdict(valid=False, revoked=True, reason=revoked_reason)
    nam = certificate.get("nam")
    name: dict[str, Any] = nam if isinstance(nam, dict) else {}
    shown = " ".join(str(part) for part in (name.get("fn"), name.get("gn")) if part)
    return Verdict(
        valid=True,
        reason=VALID,
        name=shown or None,
        birth_date=str(certificate.get("dob", "")) or None,
        summary=summary(entry),
        entry=entry,
    )


async def is_revoked(db: Database, table: type[Table], identifier: str) -> bool:
    """Whether ``table`` holds a revoked certificate with this identifier (one indexed lookup)."""
    rows = await db.fetch(
        f"SELECT 1 FROM {table._meta.tablename} WHERE identifier = {{}} AND revoked_at IS NOT NULL LIMIT 1",  # noqa: S608 (the name is ours)
        identifier,
    )
    return bool(rows)


def _only_entry(certificate: dict[str, Any], kind: str) -> dict[str, Any]:
    entries = certificate.get(kind)
    if not (isinstance(entries, list) and len(entries) == 1 and isinstance(entries[0], dict)):
        raise dcc.InvalidCertificate("payload", f"not a {_ENTRY_KINDS.get(kind, kind)} certificate")
    return entries[0]
