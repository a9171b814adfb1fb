"""Domain events through the durable outbox: at least once, retried, idempotent, dead after N."""

from __future__ import annotations

from datetime import timedelta

import pytest

from core import Principal, Resource, clock
from core.tables import AuditLog, EventDelivery, EventOutbox
from tests.core.example_plugins.facts import EVENT, FactPublisher, FlakyHandler

RECORDER = Principal(id="staff:recorder", kind="staff", roles=frozenset({"national_admin"}))


async def make_due_now() -> None:
    """Skip the backoff wait: the test moves the clock of pending deliveries instead of sleeping."""
    await EventDelivery.update({EventDelivery.next_attempt_at: clock.now() - timedelta(seconds=1)}).where(
        EventDelivery.status == "pending"
    )


async def publish_fact(platform, payload: dict) -> str:
    """Store a fact (an audit row here) and announce it in the same transaction."""
    async with platform.db.transaction():
        await platform.audit.record(RECORDER, "example.fact.store", Resource(kind="fact"), purpose="core.identity")
        return await platform.events.publish(EVENT, payload, province="01")


async def delivery_status() -> list[tuple[str, str, int]]:
    rows = await EventDelivery.select(EventDelivery.plugin, EventDelivery.status, EventDelivery.attempts)
    return sorted((row["plugin"], row["status"], row["attempts"]) for row in rows)


async def test_failed_delivery_is_retried_with_the_same_event_id(start_platform):
    handler = FlakyHandler(failures=1)
    platform = await start_platform(("facts", FactPublisher()), ("tracing-handler", handler))
    payload = {"case": "F0-17", "positive": True, "contacts": ["a", "b"]}
    event_id = await publish_fact(platform, payload)
    assert await delivery_status() == [("tracing-handler", "pending", 0)]

    first = await platform.events.dispatch_due()
    assert (first.delivered, first.failed, first.dead) == (0, 1, 0)
    row = await EventDelivery.select().first()
    assert row["status"] == "pending"
    assert "tracing service unavailable" in row["last_error"]
    assert clock.as_utc(row["next_attempt_at"]) > clock.now()
    # Not due yet: the backoff holds the retry back.
    assert (await platform.events.dispatch_due()).failed == 0

    await make_due_now()
    second = await platform.events.dispatch_due()
    assert (second.delivered, second.failed, second.dead) == (1, 0, 0)
    assert await delivery_status() == [("tracing-handler", "delivered", 2)]
    assert [call[0] for call in handler.calls] == [event_id, event_id]
    # The payload reaches the handler as the JSON object that was published, on every database.
    assert handler.calls[-1][1] == payload
    assert isinstance(handler.calls[-1][1], dict)
    assert handler.handled == {event_id}
    # Delivered means done: nothing is due any more.
    await make_due_now()
    assert (await platform.events.dispatch_due()).delivered == 0


async def test_publish_rolled_back_with_its_transaction_leaves_nothing(start_platform):
    platform = await start_platform(("facts", FactPublisher()), ("tracing-handler", FlakyHandler(0)))
    with pytest.raises(RuntimeError, match="storing the fact failed"):
        async with platform.db.transaction():
            await platform.audit.record(RECORDER, "example.fact.store", Resource(kind="fact"), purpose="core.identity")
            await platform.events.publish(EVENT, {"case": "F0-1"})
            raise RuntimeError("storing the fact failed")
    assert await EventOutbox.count() == 0
    assert await EventDelivery.count() == 0
    assert await AuditLog.count() == 0


async def test_pending_deliveries_survive_a_restart(start_platform):
    first_run = FlakyHandler(failures=100)
    platform = await start_platform(("facts", FactPublisher()), ("tracing-handler", first_run))
    event_id = await publish_fact(platform, {"case": "F0-2"})
    assert (await platform.events.dispatch_due()).failed == 1
    url = platform.settings.database_url
    await platform.stop()  # the process dies with the delivery still pending

    second_run = FlakyHandler(failures=0)
    restarted = await start_platform(("facts", FactPublisher()), ("tracing-handler", second_run), url=url)
    await make_due_now()
    assert (await restarted.events.dispatch_due()).delivered == 1
    assert second_run.calls == [(event_id, {"case": "F0-2"})]
    assert await delivery_status() == [("tracing-handler", "delivered", 2)]


async def test_delivery_is_dead_after_max_attempts(start_platform):
    handler = FlakyHandler(failures=100)
    platform = await start_platform(("facts", FactPublisher()), ("tracing-handler", handler), event_max_attempts=3)
    await publish_fact(platform, {"case": "F0-3"})
    outcomes = []
    for _ in range(4):
        await make_due_now()
        stats = await platform.events.dispatch_due()
        outcomes.append((stats.failed, stats.dead))
    assert outcomes == [(1, 0), (1, 0), (0, 1), (0, 0)]
    assert await delivery_status() == [("tracing-handler", "dead", 3)]
    assert len(handler.calls) == 3


async def test_each_handler_gets_its_own_delivery(start_platform):
    steady, flaky = FlakyHandler(0), FlakyHandler(1)
    platform = await start_platform(("facts", FactPublisher()), ("steady", steady), ("flaky", flaky))
    await publish_fact(platform, {"n": 1})
    stats = await platform.events.dispatch_due()
    assert (stats.delivered, stats.failed) == (1, 1)
    await make_due_now()
    assert (await platform.events.dispatch_due()).delivered == 1
    # The handler that succeeded first is not called again when the other one retries.
    assert len(steady.calls) == 1
    assert len(flaky.calls) == 2


async def test_publishing_an_undeclared_event_is_refused(start_platform):
    platform = await start_platform()
    with pytest.raises(ValueError, match="no hook spec declares the event 'example_fact_recordd'"):
        await platform.events.publish("example_fact_recordd", {})
