"""The ``phongdich`` command line.

Plugins add commands through ``register_commands``. Settings come from the
environment and ``--config FILE`` (or ``PHONGDICH_CONFIG``); a wrong setting
stops with a message naming it, before any command runs.
"""

from __future__ import annotations

import asyncio
import getpass
import os
import secrets
import sys
from collections.abc import Awaitable, Callable, Coroutine
from functools import wraps
from typing import Any, TypeVar

import click
import msgspec

from core.cli_plugins import new_plugin, province_plugins
from core.errors import Conflict, InvalidInput
from core.plugins import PluginLoadError
from core.settings import Settings, SettingsError, load_settings

T = TypeVar("T")


class Context:
    """Builds the platform the first time a command needs it."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._platform: Any = None

    @property
    def platform(self) -> Any:
        if self._platform is None:
            from core.platform import Platform

            self._platform = Platform(self.settings)
        return self._platform

    def run(self, work: Callable[[Any], Awaitable[T]], *, migrated: bool = True) -> T:
        """Start the platform, run ``work(platform)``, stop it; friendly errors, exit 1."""

        async def runner() -> T:
            platform = self.platform
            await platform.db.start()
            try:
                if migrated:
                    await _require_migrated(platform)
                await platform.start()
                return await work(platform)
            finally:
                await platform.stop()

        try:
            return asyncio.run(runner())
        except (InvalidInput, Conflict) as exc:
            raise click.ClickException(str(exc)) from exc


def run_async(func: Callable[..., Coroutine[Any, Any, T]]) -> Callable[..., T]:
    """For plugin commands: ``@run_async`` runs the coroutine with the platform started."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> T:
        ctx = click.get_current_context().find_object(Context)
        assert ctx is not None
        return ctx.run(lambda platform: func(platform, *args, **kwargs))

    return wrapper


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--config", "config_path", type=click.Path(dir_okay=False), help="TOML settings file.")
@click.pass_context
def cli(ctx: click.Context, config_path: str | None) -> None:
    """phongdich: national epidemic response platform (check-in, testing, vaccination)."""
    if not isinstance(ctx.obj, Context):
        ctx.obj = Context(_settings_or_exit(config_path))


# -- serving ---------------------------------------------------------------------


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535))
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1, 256))
@click.pass_obj
def serve(obj: Context, host: str, port: int, workers: int) -> None:
    """Serve the API with granian. On the embedded SQLite default, the database is created and migrated first.

    granian was measured faster than uvicorn on an audited write (bench/servers.py).
    """
    from granian import Granian
    from granian.constants import Interfaces
    from granian.log import LogLevels

    platform = obj.platform
    if platform.db.kind == "sqlite":
        asyncio.run(_migrate(platform, quiet=True))
    else:
        asyncio.run(_check_migrated(platform))
    click.echo(f"phongdich on http://{host}:{port}  (database: {platform.db.kind}, workers: {workers})")
    click.echo(f"API docs: http://{host}:{port}/schema  health: /healthz  plugins: /-/plugins")
    Granian(
        "core.app:app_factory",
        factory=True,
        interface=Interfaces.ASGI,
        address=host,
        port=port,
        workers=workers,
        respawn_failed_workers=True,
        log_level=LogLevels.warning,
    ).serve()


@cli.command()
@click.pass_obj
def migrate(obj: Context) -> None:
    """Create or update every app's tables, in dependency order, and load provinces."""
    asyncio.run(_migrate(obj.platform, quiet=False))


async def _migrate(platform: Any, *, quiet: bool) -> None:
    from core.admin_units import ensure_units

    echo = (lambda _line: None) if quiet else (lambda line: click.echo(f"  {line}"))
    await platform.db.start()
    try:
        applied = await platform.db.migrate(echo)
        units = await ensure_units(platform.settings.admin_units_file)
    finally:
        await platform.db.stop()
    if not quiet:
        click.echo(
            f"Done: {applied} migration(s) applied on {platform.db.kind}"
            + (f", {units} administrative units loaded." if units else ".")
        )


async def _check_migrated(platform: Any) -> None:
    await platform.db.start()
    try:
        await _require_migrated(platform)
    finally:
        await platform.db.stop()


async def _require_migrated(platform: Any) -> None:
    pending = await platform.db.pending_migrations()
    if pending:
        apps = ", ".join(f"{app} ({len(ids)})" for app, ids in pending.items())
        raise click.ClickException(f"the database needs migrations: {apps}. Run `phongdich migrate` first.")


# -- inspection ------------------------------------------------------------------


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_obj
def plugins(obj: Context, as_json: bool) -> None:
    """List loaded plugins: kind, version, province, settings section and hooks."""
    from core.web.health import plugin_views

    views = plugin_views(obj.platform)
    if as_json:
        click.echo(msgspec.json.encode(views).decode())
        return
    for view in views:
        where = f" province {view.province}" if view.province else ""
        section = f" [{view.settings_section}]" if view.settings_section else ""
        click.echo(f"{view.name} {view.version} ({view.kind}{where}){section}")
        click.echo(f"    hooks: {', '.join(view.hooks) or '-'}")


@cli.group()
def config() -> None:
    """Inspect settings."""


@config.command("show")
@click.pass_obj
def config_show(obj: Context) -> None:
    """Print the effective settings, secrets redacted."""
    click.echo(msgspec.json.format(msgspec.json.encode(obj.settings.redacted())).decode())


# -- accounts and keys -------------------------------------------------------------


@cli.group()
def users() -> None:
    """Staff accounts."""


@users.command("create")
@click.option("--username", required=True)
@click.option("--display-name", required=True)
@click.option("--role", "roles", multiple=True, required=True, help="Repeat for several roles.")
@click.option("--province", help="Two-digit province code, for scoped roles.")
@click.option("--site", help="Site id, for site-scoped roles.")
@click.option("--lab", help="Lab id, for lab technicians.")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input instead of prompting.")
@click.pass_obj
def users_create(
    obj: Context,
    username: str,
    display_name: str,
    roles: tuple[str, ...],
    province: str | None,
    site: str | None,
    lab: str | None,
    password_stdin: bool,
) -> None:
    """Create a staff account (the password is hashed with argon2)."""
    password = sys.stdin.readline().rstrip("\n") if password_stdin else getpass.getpass("Password: ")
    account_id = obj.run(
        lambda p: p.identity.create_staff(
            username=username,
            password=password,
            display_name=display_name,
            roles=list(roles),
            province=province,
            site=site,
            lab=lab,
        )
    )
    click.echo(f"Created {username} ({', '.join(roles)}), id {account_id}.")


@users.command("revoke-tokens")
@click.argument("username")
@click.pass_obj
def users_revoke(obj: Context, username: str) -> None:
    """Sign a staff member out everywhere."""
    from core.tables import StaffAccount

    async def work(platform: Any) -> int:
        row = await StaffAccount.select(StaffAccount.id).where(StaffAccount.username == username).first()
        if row is None:
            raise InvalidInput(f"username: no staff account {username!r}")
        return await platform.identity.revoke_account_tokens(row["id"])

    click.echo(f"Revoked {obj.run(work)} token(s) of {username}.")


@cli.group()
def keys() -> None:
    """API keys for devices (venue scanners) and services (lab systems)."""


@keys.command("create")
@click.option("--name", required=True)
@click.option("--role", "roles", multiple=True, default=("device",), show_default=True)
@click.option("--kind", type=click.Choice(["device", "service"]), default="device", show_default=True)
@click.option("--province")
@click.option("--site")
@click.option("--lab")
@click.pass_obj
def keys_create(
    obj: Context,
    name: str,
    roles: tuple[str, ...],
    kind: str,
    province: str | None,
    site: str | None,
    lab: str | None,
) -> None:
    """Issue a key. It is shown once; only its hash is stored."""
    issued = obj.run(
        lambda p: p.identity.create_api_key(
            name=name, roles=list(roles), kind=kind, created_by="cli", province=province, site=site, lab=lab
        )
    )
    click.echo(f"Key id {issued.id}\n{issued.key}\nStore it now: it cannot be shown again.")


@keys.command("revoke")
@click.argument("key_id")
@click.pass_obj
def keys_revoke(obj: Context, key_id: str) -> None:
    """Revoke a key at once."""
    done = obj.run(lambda p: p.identity.revoke_api_key(key_id))
    click.echo("Revoked." if done else "No active key with that id.")


# -- audit, messages, events, jobs ---------------------------------------------------


@cli.group()
def audit() -> None:
    """The audit trail."""


@audit.command("verify")
@click.pass_obj
def audit_verify(obj: Context) -> None:
    """Check the hash chain; report the first broken link. Exits 1 if broken."""

    def progress(n: int) -> None:
        click.echo(f"  checked {n} rows...", err=True)

    result = obj.run(lambda p: p.audit.verify(progress))
    if result.ok:
        click.echo(f"Audit chain intact: {result.checked} rows checked.")
        return
    click.echo(
        f"Audit chain BROKEN at row {result.first_broken_id} ({result.reason}); "
        f"{result.checked} rows before it are intact.",
        err=True,
    )
    sys.exit(1)


@cli.group()
def messages() -> None:
    """The outbox of messages (SMS, e-mail, app) written by the default channel."""


@messages.command("list")
@click.option("--recipient")
@click.option("--kind")
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, 10_000))
@click.pass_obj
def messages_list(obj: Context, recipient: str | None, kind: str | None, limit: int) -> None:
    """Show the newest messages."""
    from core.tables import MessageOutbox

    async def work(_platform: Any) -> list[dict[str, Any]]:
        query = MessageOutbox.select().order_by(MessageOutbox.created_at, ascending=False).limit(limit)
        if recipient:
            query = query.where(MessageOutbox.recipient == recipient)
        if kind:
            query = query.where(MessageOutbox.kind == kind)
        return await query

    rows = obj.run(work)
    for row in rows:
        click.echo(f"{row['created_at']:%Y-%m-%d %H:%M:%S} {row['channel']} {row['recipient']} [{row['kind']}]")
        click.echo(f"    {row['body_vi']}\n    {row['body_en']}")
    click.echo(f"{len(rows)} message(s).")


@cli.group()
def events() -> None:
    """Domain events in the durable outbox."""


@events.command("dispatch")
@click.pass_obj
def events_dispatch(obj: Context) -> None:
    """Deliver every due event now (workers also do this in the background)."""
    stats = obj.run(lambda p: p.events.dispatch_due(limit=10_000))
    click.echo(f"Delivered {stats.delivered}, failed (will retry) {stats.failed}, dead {stats.dead}.")


@events.command("list")
@click.option("--status", type=click.Choice(["pending", "delivered", "dead"]))
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 10_000))
@click.pass_obj
def events_list(obj: Context, status: str | None, limit: int) -> None:
    """Show deliveries, newest first."""
    from core.tables import EventDelivery

    async def work(_platform: Any) -> list[dict[str, Any]]:
        query = (
            EventDelivery.select(*EventDelivery.all_columns(), EventDelivery.event.event.as_alias("event_name"))
            .order_by(EventDelivery.next_attempt_at, ascending=False)
            .limit(limit)
        )
        if status:
            query = query.where(EventDelivery.status == status)
        return await query

    rows = obj.run(work)
    for row in rows:
        click.echo(
            f"{row['event_name']} -> {row['plugin']}: {row['status']}, {row['attempts']} attempt(s)"
            + (f", last error: {row['last_error']}" if row["last_error"] else "")
        )
    click.echo(f"{len(rows)} deliveries.")


@cli.group()
def jobs() -> None:
    """Scheduled jobs."""


@jobs.command("list")
@click.pass_obj
def jobs_list(obj: Context) -> None:
    for job in obj.platform.scheduler.jobs.values():
        click.echo(f"{job.name} every {job.interval_seconds}s")


@jobs.command("run")
@click.argument("name")
@click.pass_obj
def jobs_run(obj: Context, name: str) -> None:
    """Run one job now, whatever its schedule."""
    if name not in obj.platform.scheduler.jobs:
        raise click.ClickException(f"no job named {name!r}; see `phongdich jobs list`")
    click.echo(obj.run(lambda p: _run_job(p, name)))


async def _run_job(platform: Any, name: str) -> str:
    from core.jobs import JobLease

    await JobLease.insert(JobLease(name=name, leased_until=_now(), holder="cli")).on_conflict(action="DO NOTHING")
    return await platform.scheduler.run_now(name)


def _now() -> Any:
    from core import clock

    return clock.now()


@cli.group()
def units() -> None:
    """Administrative units (provinces)."""


@units.command("load")
@click.argument("path", required=False, type=click.Path(exists=True, dir_okay=False))
@click.pass_obj
def units_load(obj: Context, path: str | None) -> None:
    """Insert or update units from a JSON file (default: the packaged list)."""
    from core.admin_units import load_units

    count = obj.run(lambda _p: load_units(path or obj.settings.admin_units_file))
    click.echo(f"Loaded {count} administrative units.")


@units.command("list")
@click.pass_obj
def units_list(obj: Context) -> None:
    from core.tables import AdminUnit

    rows = obj.run(lambda _p: AdminUnit.select().order_by(AdminUnit.code))
    for row in rows:
        click.echo(f"{row['code']}  {row['name']}  ({row['name_en']})")


# -- demo and docs -------------------------------------------------------------------


@cli.command()
@click.pass_obj
def demo(obj: Context) -> None:
    """Load demo data: provinces, staff of every role, and each plugin's own demo data."""
    from core.demo import load_demo

    password = secrets.token_urlsafe(12)
    if obj.platform.db.kind == "sqlite":
        asyncio.run(_migrate(obj.platform, quiet=True))
    summary = obj.run(lambda p: load_demo(p, password, progress=lambda line: click.echo(f"  {line}")))
    click.echo(summary)


@cli.group()
def docs() -> None:
    """Generated documentation."""


@docs.command("hooks")
@click.option("--output", default="docs/hooks.md", show_default=True, type=click.Path(dir_okay=False))
@click.option("--check", is_flag=True, help="Exit 1 if the file is out of date instead of writing it.")
@click.pass_obj
def docs_hooks(obj: Context, output: str, check: bool) -> None:
    """Write the hook reference from the hook specs' signatures and docstrings."""
    from core.hookdocs import render_reference

    text = render_reference(obj.platform.hooks.pm)
    if check:
        current = open(output, encoding="utf-8").read() if os.path.exists(output) else ""
        if current != text:
            raise click.ClickException(f"{output} is out of date: run `phongdich docs hooks`")
        click.echo(f"{output} is up to date.")
        return
    with open(output, "w", encoding="utf-8") as handle:
        handle.write(text)
    click.echo(f"Wrote {output}.")


cli.add_command(new_plugin)
cli.add_command(province_plugins)


# -- entry point --------------------------------------------------------------------


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    settings = _settings_or_exit(_config_from_argv(argv))
    context = Context(settings)
    try:
        context.platform.hooks.collect_sync("register_commands", cli=cli)
    except PluginLoadError as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(2)
    cli.main(args=argv, obj=context, prog_name="phongdich")


def _config_from_argv(argv: list[str]) -> str | None:
    for index, arg in enumerate(argv):
        if arg == "--config" and index + 1 < len(argv):
            return argv[index + 1]
        if arg.startswith("--config="):
            return arg.split("=", 1)[1]
    return None


def _settings_or_exit(config_path: str | None) -> Settings:
    try:
        return load_settings(toml_path=config_path)
    except SettingsError as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(2)
