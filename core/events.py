"""Domain events through a durable outbox: at least once, with retries and backoff.

A plugin announces a fact with ``await platform.events.publish("testing_result_released",
payload, province=...)`` inside the transaction that stores the fact. The
event and one delivery row per handler (each plugin implementing the hook
named after the event) are written in that same transaction, so either both
the fact and its announcement exist, or neither does.

``dispatch_due`` hands due deliveries to their handlers, each claimed with a
lease so that several workers never run the same delivery at once. A handler
that raises is retried with exponential backoff; after
``event_max_attempts`` the delivery is marked dead and shows in
``phongdich events list``. Handlers receive ``event_id`` and must be
idempotent: a delivery may repeat after a crash.
"""

from __future__ import annotations

import asyncio
import inspect
import random
import uuid
from collections.abc import Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import msgspec
import structlog

from core import clock
from core.tables import EventDelivery, EventOutbox

if TYPE_CHECKING:
    from core.platform import Platform

log = structlog.get_logger("core.events")

CLAIM_SECONDS = 60
MAX_BACKOFF_SECONDS = 3600
PUBLISH_CHUNK = 100  # rows per multi-row insert in publish_many on SQLite (9 columns: 900 parameters)
_OUTBOX_ROWS = (
    "INSERT INTO event_outbox (id, event, payload, province, created_at) "
    "SELECT unnest({}::uuid[]), {}, unnest({}::text[])::json, unnest({}::varchar[]), {}"
)
_DELIVERY_ROWS = (
    "INSERT INTO event_delivery (id, event, plugin, status, attempts, next_attempt_at, claimed_until, "
    "delivered_at, last_error) SELECT unnest({}::uuid[]), unnest({}::uuid[]), unnest({}::varchar[]), "
    "'pending', 0, {}, NULL, NULL, ''"
)


class DispatchStats(msgspec.Struct, kw_only=True):
    delivered: int = 0
    failed: int = 0
    dead: int = 0


class Events:
    def __init__(self, platform: Platform) -> None:
        self._platform = platform
        self._wake = asyncio.Event()

    async def publish(
        self, event: str, payload: msgspec.Struct | dict[str, Any], *, province: str | None = None
    ) -> str:
        """Store ``event`` and its deliveries; call inside the transaction that stores the fact."""
        hook = getattr(self._platform.hooks.pm.hook, event, None)
        if hook is None or hook.spec is None:
            raise ValueError(f"no hook spec declares the event {event!r}")
        handlers = sorted({impl.plugin_name for impl in self._platform.hooks.caller(event, province).get_hookimpls()})
        event_id = uuid.uuid4()
        now = clock.now()
        body = msgspec.to_builtins(payload)
        async with self._platform.db.transaction():
            await EventOutbox.insert(
                EventOutbox(id=event_id, event=event, payload=body, province=province, created_at=now)
            )
            if handlers:
                await EventDelivery.insert(
                    *[
                        EventDelivery(id=uuid.uuid4(), event=event_id, plugin=name, next_attempt_at=now)
                        for name in handlers
                    ]
                )
        self._wake.set()
        return str(event_id)

    async def publish_many(
        self, event: str, items: Sequence[tuple[msgspec.Struct | dict[str, Any], str | None]]
    ) -> list[str]:
        """``publish`` for many facts of one kind, each ``(payload, province)``; returns their ids in order.

        The same rows as one ``publish`` per item, written with one statement per
        table on PostgreSQL (a few multi-row inserts on SQLite), so announcing a
        thousand positives costs two statements, not two thousand.
        """
        hook = getattr(self._platform.hooks.pm.hook, event, None)
        if hook is None or hook.spec is None:
            raise ValueError(f"no hook spec declares the event {event!r}")
        if not items:
            return []
        handlers: dict[str | None, list[str]] = {}
        now = clock.now()
        events: list[tuple[uuid.UUID, Any, str | None]] = []
        deliveries: list[tuple[uuid.UUID, uuid.UUID, str]] = []
        for payload, province in items:
            if province not in handlers:
                implementations = self._platform.hooks.caller(event, province).get_hookimpls()
                handlers[province] = sorted({impl.plugin_name for impl in implementations})
            event_id = uuid.uuid4()
            events.append((event_id, msgspec.to_builtins(payload), province))
            deliveries.extend((uuid.uuid4(), event_id, name) for name in handlers[province])
        db = self._platform.db
        async with db.transaction():
            if db.kind == "postgres":
                # One statement per table: the rows as arrays (the payloads as JSON text).
                await db.fetch(
                    _OUTBOX_ROWS,
                    [row[0] for row in events],
                    event,
                    [msgspec.json.encode(row[1]).decode() for row in events],
                    [row[2] for row in events],
                    now,
                )
                if deliveries:
                    await db.fetch(_DELIVERY_ROWS, *map(list, zip(*deliveries, strict=True)), now)
            else:
                # Chunks keep each statement within SQLite's bound-parameter limit.
                outbox = [
                    EventOutbox(id=event_id, event=event, payload=body, province=province, created_at=now)
                    for event_id, body, province in events
                ]
                for start in range(0, len(outbox), PUBLISH_CHUNK):
                    await EventOutbox.insert(*outbox[start : start + PUBLISH_CHUNK])
                rows = [
                    EventDelivery(id=delivery_id, event=event_id, plugin=name, next_attempt_at=now)
                    for delivery_id, event_id, name in deliveries
                ]
                for start in range(0, len(rows), PUBLISH_CHUNK):
                    await EventDelivery.insert(*rows[start : start + PUBLISH_CHUNK])
        self._wake.set()
        return [str(row[0]) for row in events]

    async def dispatch_due(self, limit: int = 100) -> DispatchStats:
        """Deliver what is due now; returns counts. Safe to run from several workers."""
        stats = DispatchStats()
        now = clock.now()
        due = await (
            EventDelivery.select(
                EventDelivery.id,
                EventDelivery.plugin,
                EventDelivery.attempts,
                EventDelivery.event.id.as_alias("event_id"),
                EventDelivery.event.event.as_alias("event_name"),
                EventDelivery.event.payload.as_alias("payload"),
                EventDelivery.event.province.as_alias("province"),
            )
            .where(
                (EventDelivery.status == "pending")
                & (EventDelivery.next_attempt_at <= now)
                & ((EventDelivery.claimed_until.is_null()) | (EventDelivery.claimed_until < now))
            )
            .order_by(EventDelivery.next_attempt_at)
            .limit(limit)
        )
        for row in due:
            if not await self._claim(row["id"], now):
                continue
            outcome = await self._deliver(row)
            setattr(stats, outcome, getattr(stats, outcome) + 1)
        return stats

    async def run_forever(self, stop: asyncio.Event, poll_seconds: float = 1.0) -> None:
        """The background dispatcher each worker runs while it serves."""
        while not stop.is_set():
            try:
                stats = await self.dispatch_due()
                busy = stats.delivered + stats.failed + stats.dead > 0
            except Exception:
                log.exception("events.dispatch_failed")
                busy = False
            if busy:
                continue
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=poll_seconds)
            except TimeoutError:
                pass

    async def _claim(self, delivery_id: Any, now: Any) -> bool:
        claimed = await (
            EventDelivery.update({EventDelivery.claimed_until: now + timedelta(seconds=CLAIM_SECONDS)})
            .where(
                (EventDelivery.id == delivery_id)
                & (EventDelivery.status == "pending")
                & ((EventDelivery.claimed_until.is_null()) | (EventDelivery.claimed_until < now))
            )
            .returning(EventDelivery.id)
        )
        return bool(claimed)

    async def _deliver(self, row: dict[str, Any]) -> str:
        attempts = row["attempts"] + 1
        try:
            await self._call_handler(row)
        except Exception as exc:
            max_attempts = self._platform.settings.event_max_attempts
            dead = attempts >= max_attempts
            log.warning(
                "events.handler_failed",
                event_name=row["event_name"],
                plugin=row["plugin"],
                attempt=attempts,
                dead=dead,
                error=f"{type(exc).__name__}: {exc}",
            )
            await EventDelivery.update(
                {
                    EventDelivery.attempts: attempts,
                    EventDelivery.status: "dead" if dead else "pending",
                    EventDelivery.next_attempt_at: clock.now() + backoff(attempts),
                    EventDelivery.claimed_until: None,
                    EventDelivery.last_error: f"{type(exc).__name__}: {exc}"[:2000],
                }
            ).where(EventDelivery.id == row["id"])
            return "dead" if dead else "failed"
        await EventDelivery.update(
            {
                EventDelivery.attempts: attempts,
                EventDelivery.status: "delivered",
                EventDelivery.delivered_at: clock.now(),
                EventDelivery.claimed_until: None,
                EventDelivery.last_error: "",
            }
        ).where(EventDelivery.id == row["id"])
        return "delivered"

    async def _call_handler(self, row: dict[str, Any]) -> None:
        hook = getattr(self._platform.hooks.pm.hook, row["event_name"])
        for impl in hook.get_hookimpls():
            if impl.plugin_name == row["plugin"]:
                payload = row["payload"]
                # Piccolo hands JSON columns back as text on both SQLite and PostgreSQL.
                if isinstance(payload, str | bytes):
                    payload = msgspec.json.decode(payload)
                kwargs = {"event_id": str(row["event_id"]), "payload": payload, "platform": self._platform}
                result = impl.function(*[kwargs[name] for name in impl.argnames])
                if inspect.isawaitable(result):
                    await result
                return
        raise LookupError(f"plugin {row['plugin']!r} is not loaded or no longer handles {row['event_name']}")


def backoff(attempts: int) -> timedelta:
    """2, 4, 8... seconds with jitter, capped at an hour."""
    base = min(2**attempts, MAX_BACKOFF_SECONDS)
    return timedelta(seconds=base * random.uniform(0.8, 1.2))
