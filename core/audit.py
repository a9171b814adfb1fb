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
import structlog

from core import clock
from core.tables import AuditHead, AuditLog

if TYPE_CHECKING:
    from core.access import Resource
    from core.batching import GroupCommit
    from core.principal import Principal
    from core.storage import Database

GENESIS = "0" * 64
# Any constant works; it names the audit chain's lock on PostgreSQL.
PG_LOCK_KEY = 0x70686F6E67


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
        items = [resources] if not isinstance(resources, Sequence) else list(resources)
        if not items:
            return
        request_id = structlog.contextvars.get_contextvars().get("request_id")
        entries = [
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
        if self._group_commit is None or self._db.in_transaction():
            await self._append(entries)
        else:
            await self._group_commit.submit(lambda: self._append(entries))

    async def _append(self, entries: list[dict[str, Any]]) -> None:
        async with self._db.transaction():
            prev = await self._lock_and_head()
            rows = []
            for entry in entries:
                fields = {"at": clock.now(), **entry}
                digest = chain_hash(prev, fields)
                rows.append(AuditLog(**fields, prev_hash=prev, hash=digest))
                prev = digest
            inserted = await AuditLog.insert(*rows).returning(AuditLog.id)
            await AuditHead.insert(
                AuditHead(id=1, last_id=max(row["id"] for row in inserted), last_hash=prev)
            ).on_conflict(target=AuditHead.id, action="DO UPDATE", values=[AuditHead.last_id, AuditHead.last_hash])

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
        if self._db.kind == "postgres":
            await self._db.execute("SELECT pg_advisory_xact_lock({})", PG_LOCK_KEY)
        last = await AuditLog.select(AuditLog.hash).order_by(AuditLog.id, ascending=False).first()
        return last["hash"] if last else GENESIS


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


def chain_hash(prev_hash: str, fields: dict[str, Any]) -> str:
    canonical = {key: fields[key] for key in _HASHED_FIELDS}
    at = clock.as_utc(canonical["at"])
    canonical["at"] = at.isoformat(timespec="microseconds")
    body = json.dumps(canonical, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(f"{prev_hash}\n{body}".encode()).hexdigest()
