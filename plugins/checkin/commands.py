"""``phongdich checkin ...``: the retention purge and the figures, from the command line."""

from __future__ import annotations

from datetime import date
from typing import TYPE_CHECKING

import click

from core.cli import Context

if TYPE_CHECKING:
    from core.platform import Platform


@click.group()
def checkin() -> None:
    """Check-ins: retention and figures."""


@checkin.command("purge")
@click.pass_obj
def purge_command(obj: Context) -> None:
    """Delete check-ins and declarations older than the retention period (counts are logged)."""
    from plugins.checkin.retention import ensure_partitions, purge

    async def work(platform: Platform) -> str:
        await ensure_partitions(platform)
        result = await purge(platform)
        return (
            f"Purged before {result.cutoff:%Y-%m-%d %H:%M} UTC: {result.visits} visits, "
            f"{result.declarations} declarations, {result.idempotency_keys} idempotency keys; "
            f"{result.partitions_dropped} daily partitions dropped."
        )

    click.echo(obj.run(work))


@checkin.command("stats")
@click.option("--days", default=7, show_default=True, type=click.IntRange(1, 90), help="Local days back from today.")
@click.option("--province", help="Two-digit province code; all provinces when left out.")
@click.option("--venue", "venue_id", help="A venue id: print its check-ins per hour of --day instead.")
@click.option("--day", type=click.DateTime(formats=["%Y-%m-%d"]), help="The day for --venue (default today).")
@click.pass_obj
def stats_command(obj: Context, days: int, province: str | None, venue_id: str | None, day: object) -> None:
    """Check-ins per province per day, or per hour at one venue."""
    import uuid

    from core import Principal
    from plugins.checkin import stats

    # The operator at the console sees national figures; they are counts, not personal data.
    console = Principal(id="cli:operator", kind="service", roles=frozenset({"national_admin"}))
    if province is not None and not (len(province) == 2 and province.isdigit()):
        raise click.BadParameter("use a two-digit code such as 01", param_hint="--province")

    if venue_id is not None:
        try:
            venue = uuid.UUID(venue_id)
        except ValueError:
            raise click.BadParameter("not a venue id", param_hint="--venue") from None
        chosen = day.date() if day is not None else date.today()  # type: ignore[attr-defined]
        hourly = obj.run(lambda platform: stats.venue_hourly(platform, console, venue, chosen))
        for hour in hourly:
            click.echo(f"{hour.hour:%Y-%m-%d %H:%M}Z  {hour.checkins}")
        click.echo(f"{sum(r.checkins for r in hourly)} check-ins on {chosen}.")
        return
    daily = obj.run(lambda platform: stats.province_daily(platform, console, days=days, province=province))
    for row in daily:
        click.echo(f"{row.day}  {row.province}  {row.checkins} check-ins at {row.venues} venues")
    click.echo(f"{sum(r.checkins for r in daily)} check-ins in {days} day(s).")
