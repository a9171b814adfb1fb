"""The audit trail: an append-only, hash-chained log of every access to personal data.

Each row's ``hash`` is SHA-256 over the previous row's hash and the row's own
fields, so altering or removing any row breaks the chain from there on;
``phongdich audit verify`` walks the chain and names the first broken link.
The database also refuses UPDATE and DELETE on the table (triggers), so the
chain is the second line of defence, not the only one.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

import msgspec

from core import clock
from core.observability import log_context
from core.tables import AuditHead, AuditLog

if TYPE_CHECKING:
    from core.access import Resource
    from core.batching import GroupCommit
    from core.principal import Principal
    from core.storage import Database

GENESIS = "0" * 64
AUDIT_ORDER = 1000


class AuditRecord(msgspec.Struct, frozen=True, kw_only=True):
    """One entry as shown to a citizen or an auditor (no hashes)."""

    id: int
    at: datetime
    actor_id: str
    actor_kind: str
    action: str
    resource_kind: str
    resource_id: str | None
    purpose: str
    province: str | None


class VerifyResult(msgspec.Struct, frozen=True, kw_only=True):
    ok: bool
    checked: int
    first_broken_id: int | None = None
    reason: str = ""


class AuditTrail:
    def __init__(self, db: Database, group_commit: GroupCommit | None = None) -> None:
        self._db = db
        self._group_commit = group_commit

    @property
    def group_commit(self) -> GroupCommit | None:
        """The group commit that records made outside a transaction go through (None: each commits alone)."""
        return self._group_commit

    async def close(self) -> None:
        """Commit the records still queued."""
        if self._group_commit is not None:
            await self._group_commit.close()

    async def record(
        self,
        principal: Principal,
        action: str,
        resources: Resource | Sequence[Resource],
        *,
        purpose: str,
        detail: str = "",
    ) -> None:
        """Append one row per resource (so every subject sees the access), in one locked step.

        Inside a transaction the rows join it (they commit or roll back with the
        fact they record); otherwise they go through group commit, and this
        returns once they are committed.
        """
        entries = audit_entries(principal, action, resources, purpose=purpose, detail=detail)
        if not entries:
            return
        if self._group_commit is None or self._db.in_transaction():
            await self.append(entries)
        else:
            # Last in its batch: the chain's lock is the last one a batch takes (see GroupCommit.submit_to).
            await self._group_commit.submit_to(self._append_batch, entries, order=AUDIT_ORDER)

    async def _append_batch(self, items: list[list[dict[str, Any]]]) -> list[None]:
        """Group commit's batch writer: every record of the batch in one chain append."""
        await self.append([entry for entries in items for entry in entries])
        return [None] * len(items)

    async def append(self, entries: list[dict[str, Any]]) -> None:
        """Chain ``entries`` (dicts of the audited fields but ``at``) onto the log, under the chain's lock.

        Call it inside a transaction to write audit rows together with the fact
        they record; ``record`` builds the entries for one access.
        """
        if not entries:
            return
        async with self._db.transaction():
            prev = await self._lock_and_head()
            at = clock.now()
            rows = []
            for entry in entries:
                fields = {"at": at, **entry}
                digest = chain_hash(prev, fields)
                rows.append({**fields, "prev_hash": prev, "hash": digest})
                prev = digest
            if self._db.kind == "postgres":
                # The rows and the head in one statement (one round trip while the chain is locked).
                await self._db.fetch(_PG_APPEND, *([row[c] for row in rows] for c in _COLUMNS), prev)
            else:
                inserted = await AuditLog.insert(*(AuditLog(**row) for row in rows)).returning(AuditLog.id)
                await self._db.fetch(_HEAD_UPSERT, max(row["id"] for row in inserted), prev)

    async def for_subject(
        self, subject_id: str, *, limit: int = 100, before_id: int | None = None
    ) -> list[AuditRecord]:
        query = AuditLog.select(
            AuditLog.id,
            AuditLog.at,
            AuditLog.actor_id,
            AuditLog.actor_kind,
            AuditLog.action,
            AuditLog.resource_kind,
            AuditLog.resource_id,
            AuditLog.purpose,
            AuditLog.province,
        ).where(AuditLog.subject_id == subject_id)
        if before_id is not None:
            query = query.where(AuditLog.id < before_id)
        rows = await query.order_by(AuditLog.id, ascending=False).limit(limit)
        return [AuditRecord(**{**row, "at": clock.as_utc(row["at"])}) for row in rows]

    async def verify(self, progress: Callable[[int], None] = lambda _n: None, batch: int = 5000) -> VerifyResult:
        """Walk the whole chain in id order; report the first row whose link is broken."""
        prev = GENESIS
        checked = 0
        last_id = 0
        while True:
            rows = await AuditLog.select().where(AuditLog.id > last_id).order_by(AuditLog.id).limit(batch)
            if not rows:
                return await self._check_head(last_id, prev, checked)
            for row in rows:
                if row["prev_hash"] != prev:
                    return VerifyResult(
                        ok=False,
                        checked=checked,
                        first_broken_id=row["id"],
                        reason="prev_hash does not match the previous row: a row before it was removed or altered",
                    )
                fields = {key: row[key] for key in _HASHED_FIELDS}
                if chain_hash(prev, fields) != row["hash"]:
                    return VerifyResult(
                        ok=False,
                        checked=checked,
                        first_broken_id=row["id"],
                        reason="the row's content does not match its hash: it was altered",
                    )
                prev = row["hash"]
                last_id = row["id"]
                checked += 1
            progress(checked)

    async def _check_head(self, last_id: int, last_hash: str, checked: int) -> VerifyResult:
        """The chain must end where ``audit_head`` says it does: otherwise its newest rows were removed."""
        head = await AuditHead.select().where(AuditHead.id == 1).first()
        if head is None:
            if checked == 0:
                return VerifyResult(ok=True, checked=0)
            return VerifyResult(
                ok=False, checked=checked, first_broken_id=None, reason="audit_head is missing: it was removed"
            )
        if head["last_id"] != last_id or head["last_hash"] != last_hash:
            return VerifyResult(
                ok=False,
                checked=checked,
                first_broken_id=last_id + 1,
                reason=f"the chain ends at row {last_id} but was last written at row {head['last_id']}: "
                "the newest rows were removed",
            )
        return VerifyResult(ok=True, checked=checked)

    async def _lock_and_head(self) -> str:
        """Lock the chain for this transaction and return its newest hash.

        The newest hash is ``audit_head``'s, the last one *written*: had the
        newest rows been deleted, the next row still links to the missing one
        and ``verify`` names the gap. PostgreSQL: the lock is that row's
        (``FOR UPDATE``), so one round trip locks and reads; a writer that
        waited for it reads the row as the one before it left it (READ
        COMMITTED re-reads a locked row). SQLite: the write transaction is
        the lock.
        """
        if self._db.kind == "postgres":
            head = await self._db.fetch(_PG_LOCK_HEAD)
            if not head:
                # The chain's first write: make the head row (from the log, should it have rows), then lock it.
                await self._db.fetch(_PG_SEED_HEAD, GENESIS)
                head = await self._db.fetch(_PG_LOCK_HEAD)
            return str(head[0]["last_hash"])
        head = await self._db.fetch("SELECT last_hash FROM audit_head WHERE id = 1")
        if head:
            return str(head[0]["last_hash"])
        last = await self._db.fetch("SELECT hash FROM audit_log ORDER BY id DESC LIMIT 1")
        return str(last[0]["hash"]) if last else GENESIS


_HASHED_FIELDS = (
    "at",
    "actor_id",
    "actor_kind",
    "action",
    "subject_id",
    "resource_kind",
    "resource_id",
    "purpose",
    "province",
    "request_id",
    "detail",
)


def audit_entries(
    principal: Principal,
    action: str,
    resources: Resource | Sequence[Resource],
    *,
    purpose: str,
    detail: str = "",
    request_id: str | None = None,
) -> list[dict[str, Any]]:
    """The rows (but ``at`` and the hashes) recording one access: one per resource, for ``AuditTrail.append``.

    ``request_id`` defaults to the current request's.
    """
    items = [resources] if not isinstance(resources, Sequence) else list(resources)
    if request_id is None:
        request_id = log_context().get("request_id")
    return [
        {
            "actor_id": principal.id,
            "actor_kind": principal.kind,
            "action": action,
            "subject_id": resource.subject_id,
            "resource_kind": resource.kind,
            "resource_id": resource.id,
            "purpose": purpose,
            "province": resource.province,
            "request_id": request_id,
            "detail": detail,
        }
        for resource in items
    ]


_COLUMNS = (*_HASHED_FIELDS, "prev_hash", "hash")
_TYPES = {"at": "timestamptz"}
# Rows go in in the order given (WITH ORDINALITY ... ORDER BY), so ids grow along the chain.
# Column names are ours; values are parameters.
# The head moves to the newest inserted row, in the same statement.
_PG_APPEND = (
    f"WITH new AS (INSERT INTO audit_log ({', '.join(_COLUMNS)}) "  # noqa: S608
    f"SELECT {', '.join(_COLUMNS)} FROM unnest("
    + ", ".join(f"{{}}::{_TYPES.get(column, 'text')}[]" for column in _COLUMNS)
    + f") WITH ORDINALITY AS u({', '.join(_COLUMNS)}, n) ORDER BY n RETURNING id) "  # noqa: S608
    "UPDATE audit_head SET last_id = (SELECT max(id) FROM new), last_hash = {} WHERE id = 1"
)
_PG_LOCK_HEAD = "SELECT last_hash FROM audit_head WHERE id = 1 FOR UPDATE"
# Concurrent first writers: one inserts, the others wait for it and insert nothing.
_PG_SEED_HEAD = (
    "INSERT INTO audit_head (id, last_id, last_hash) "
    "SELECT 1, COALESCE(max(id), 0), COALESCE((SELECT hash FROM audit_log ORDER BY id DESC LIMIT 1), {}) "
    "FROM audit_log ON CONFLICT (id) DO NOTHING"
)
_HEAD_UPSERT = (
    "INSERT INTO audit_head (id, last_id, last_hash) VALUES (1, {}, {}) "
    "ON CONFLICT (id) DO UPDATE SET last_id = excluded.last_id, last_hash = excluded.last_hash"
)


def chain_hash(prev_hash: str, fields: dict[str, Any]) -> str:
    canonical = {key: fields[key] for key in _HASHED_FIELDS}
    at = clock.as_utc(canonical["at"])
    canonical["at"] = at.isoformat(timespec="microseconds")
    body = json.dumps(canonical, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(f"{prev_hash}\n{body}".encode()).hexdigest()
