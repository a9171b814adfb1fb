"""Retention purge (daily partitions dropped on PostgreSQL), figures, and the CLI commands."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta, timezone

from click.testing import CliRunner

from core import clock
from core.cli import Context, cli
from core.platform import Platform
from core.testing import citizen_headers, http_client, staff_headers
from plugins.checkin.retention import day_partitions, ensure_partitions
from tests.plugins.checkin.conftest import BASE_URL, Kit

VIETNAM = timezone(timedelta(hours=7))


async def test_purge_removes_only_what_is_past_retention(kit, monkeypatch):
    venue = await kit.venue(await kit.operator())
    old_citizen, _ = await kit.citizen()
    real_now = clock.now()
    past = real_now - timedelta(days=30)
    monkeypatch.setattr(clock, "now", lambda: past)
    await ensure_partitions(kit.platform)  # what the hourly job did back then
    for minutes in (0, 120):
        response = await kit.check_in(
            old_citizen, kit.code_of(venue), minutes_ago=minutes, since=past, key=f"old-{minutes}"
        )
        assert response.status_code == 201, response.text
    monkeypatch.setattr(clock, "now", lambda: real_now)
    recent, _ = await kit.citizen()
    assert (await kit.check_in(recent, kit.code_of(venue), key="new")).status_code == 201
    assert await kit.visit_count() == 3

    result = await kit.platform.scheduler.run_now("checkin.retention.purge")
    assert result.startswith("purged 2 visits, 2 declarations, 2 keys")
    assert await kit.visit_count() == 1
    assert await kit.declaration_count() == 1
    mine = (await kit.client.get("/api/checkin/me/visits", headers=recent)).json()
    assert len(mine) == 1
    if kit.platform.db.kind == "postgres":
        assert "partitions dropped" in result and not result.endswith("0 partitions dropped, 0 created")
        remaining = [day for _name, day in await day_partitions(kit.platform, "checkin_visit")]
        assert min(remaining) >= (real_now - timedelta(days=21)).date()
    again = await kit.platform.scheduler.run_now("checkin.retention.purge")
    assert again.startswith("purged 0 visits, 0 declarations, 0 keys")


async def test_partitions_exist_ahead_on_postgres(kit):
    if kit.platform.db.kind != "postgres":
        assert await ensure_partitions(kit.platform) == 0
        return
    days = {day for _name, day in await day_partitions(kit.platform, "checkin_visit")}
    today = clock.now().date()
    assert {today + timedelta(days=n) for n in range(8)} <= days
    assert await ensure_partitions(kit.platform) == 0  # idempotent


async def test_figures_per_hour_per_day_and_capacity(kit):
    hanoi_op = await kit.operator(site="hn")
    hanoi = await kit.venue(hanoi_op, capacity=40, default_stay_minutes=60, opening_hours_per_day=12)
    danang = await kit.venue(await kit.operator(province="48", site="dn"), province="48", ward="20194")
    anchor = datetime.now(UTC).replace(microsecond=0)
    arrivals = []
    for minutes, venue in ((5, hanoi), (15, hanoi), (200, hanoi), (10, danang)):
        citizen, _ = await kit.citizen()
        response = await kit.check_in(citizen, kit.code_of(venue), minutes_ago=minutes, since=anchor, stay=60)
        assert response.status_code == 201
        if venue is hanoi:
            arrivals.append(anchor - timedelta(minutes=minutes))
    # The day of the check-in 15 minutes ago; right after local midnight the 200-minute one is the day before.
    day = arrivals[1].astimezone(VIETNAM).date()
    expected: dict[int, int] = {}
    for arrived in arrivals:
        local = arrived.astimezone(VIETNAM)
        if local.date() == day:
            expected[local.hour] = expected.get(local.hour, 0) + 1

    hourly = await kit.client.get(f"/api/checkin/stats/venues/{hanoi['id']}/hourly?day={day}", headers=hanoi_op)
    assert hourly.status_code == 200, hourly.text
    assert len(hourly.json()) == 24
    got = {
        datetime.fromisoformat(h["hour"]).astimezone(VIETNAM).hour: h["checkins"]
        for h in hourly.json()
        if h["checkins"]
    }
    assert got == expected

    admin = await kit.admin()
    daily = (await kit.client.get("/api/checkin/stats/provinces/daily?days=2", headers=admin)).json()
    totals = {}
    for row in daily:
        totals[row["province"]] = totals.get(row["province"], 0) + row["checkins"]
    assert totals == {"01": 3, "48": 1}
    hanoi_epi = (
        await kit.client.get("/api/checkin/stats/provinces/daily?days=2", headers=await kit.epidemiologist())
    ).json()
    assert {row["province"] for row in hanoi_epi} == {"01"}
    operator_view = (await kit.client.get("/api/checkin/stats/provinces/daily?days=2", headers=hanoi_op)).json()
    assert sum(row["checkins"] for row in operator_view) == 3

    capacity = await kit.client.get(f"/api/checkin/stats/capacity?day={day}", headers=hanoi_op)
    rows = capacity.json()
    assert [r["venue_id"] for r in rows] == [hanoi["id"]]
    row = rows[0]
    assert row["suggested_visitors"] == 40 * 12  # capacity x 12 h / 1 h stays
    assert row["checkins"] == sum(expected.values())
    # The visits of 5 and 15 minutes ago overlap; the one 200 minutes ago had ended.
    assert row["peak_present"] == 2
    assert row["coverage"] == round(row["checkins"] / 480, 4)
    stranger = await kit.operator(site="elsewhere")
    assert (
        await kit.client.get(f"/api/checkin/stats/venues/{hanoi['id']}/hourly?day={day}", headers=stranger)
    ).status_code == 403
    citizen, _ = await kit.citizen()
    assert (await kit.client.get("/api/checkin/stats/provinces/daily", headers=citizen)).status_code == 403
    bad = await kit.client.get("/api/checkin/stats/provinces/daily?days=1000", headers=admin)
    assert bad.status_code == 400


def test_cli_purge_and_stats(databases):
    url = asyncio.run(databases.fresh_url())
    settings = databases.settings(url, base_url=BASE_URL)

    async def seed() -> None:
        platform = Platform(settings)
        await platform.start()
        try:
            async with http_client(platform) as client:
                kit = Kit(platform, client)
                operator = await staff_headers(platform, ["venue_operator"], province="01", site="s")
                venue = await kit.venue(operator)
                citizen, _ = await citizen_headers(platform, "0912000111")
                assert (await kit.check_in(citizen, kit.code_of(venue))).status_code == 201
        finally:
            await platform.stop()

    try:
        asyncio.run(seed())
        context = Context(settings)
        context.platform.hooks.collect_sync("register_commands", cli=cli)
        runner = CliRunner()
        stats = runner.invoke(cli, ["checkin", "stats", "--days", "1"], obj=context)
        assert stats.exit_code == 0, stats.output
        assert "01  1 check-ins at 1 venues" in stats.output
        bad = runner.invoke(cli, ["checkin", "stats", "--province", "Hanoi"], obj=Context(settings))
        assert bad.exit_code == 2
        purged = runner.invoke(cli, ["checkin", "purge"], obj=Context(settings))
        assert purged.exit_code == 0, purged.output
        assert ": 0 visits, 0 declarations" in purged.output
    finally:
        asyncio.run(databases.drop(url))
