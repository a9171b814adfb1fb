"""The hooks the core offers to plugins.

Every spec here is typed and documented: when the core calls it, what each
argument is, what it may return and what ``None`` means. The hook reference
in ``docs/hooks.md`` is generated from these docstrings
(``phongdich docs hooks``); a test fails when the two disagree.

Call modes, chosen on purpose:

* ``firstresult``: one answer is wanted (``identify``, ``send_message``).
  The first non-None result stops the call.
* collect-all: every plugin contributes (routes, purposes, roles...). A
  contribution hookimpl that raises is logged with its plugin's name and
  skipped; the others still count.
* votes: decisions (``authorize``). Deny wins, no vote means deny, and a
  hookimpl that raises counts as a deny (fail closed).

pluggy is synchronous. Hooks marked *may be async* may return an awaitable;
the core awaits it.

Hooks called *for a province* (marked so below) run only the national
plugins and the plugins of that province; every other province's plugins are
left out.
"""

from __future__ import annotations

from collections.abc import Awaitable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.markers import hookspec

if TYPE_CHECKING:
    import click
    from litestar.connection import ASGIConnection
    from litestar.types import ControllerRouterHandler

    from core.access import Resource, Scope, Vote
    from core.consent import Purpose
    from core.jobs import Job
    from core.messages import Message, Receipt
    from core.platform import Platform
    from core.principal import Principal, Role
    from core.settings import PluginSettings, Settings
    from core.web.menu import MenuItem


# -- identity -----------------------------------------------------------------


@hookspec(firstresult=True)
def identify(
    connection: ASGIConnection[Any, Any, Any, Any], platform: Platform
) -> Principal | Awaitable[Principal | None] | None:
    """Turn an incoming request into the principal who sent it.

    Called by the core's guard once per request, before any route that is not
    public runs. May be async.

    :param connection: The request (headers, client address, cookies).
    :param platform: The running platform: database, settings, rate limits.
    :returns: A ``Principal`` when this provider recognises the credential,
        or ``None`` to let the next provider try. The first non-None answer
        wins. ``None`` from every provider means the request is anonymous:
        a route that needs identity answers 401. A provider that raises is
        treated as a failed authentication (fail closed).
    """


# -- consent ------------------------------------------------------------------


@hookspec
def register_purposes() -> list[Purpose] | None:
    """Declare the processing purposes a plugin uses personal data for.

    Called once at start-up. Each ``Purpose`` names its lawful basis:
    ``consent`` (the person may refuse or withdraw) or ``public_health``
    (a legal obligation while an epidemic is declared).

    :returns: A list of purposes, or ``None`` when the plugin declares none.
        Two plugins declaring the same purpose name stop start-up.
    """


# -- data access --------------------------------------------------------------


@hookspec
def authorize(principal: Principal, action: str, resource: Resource) -> Vote | Awaitable[Vote | None] | None:
    """Vote on whether ``principal`` may perform ``action`` on ``resource``.

    Called for a province (``resource.province``) by the core's guard for
    every protected route and by domain code for each record it touches.
    May be async.

    :param principal: Who asks.
    :param action: A dotted action name, e.g. ``checkin.venue.create``.
    :param resource: What the action touches: its kind, id, province, site,
        lab and subject.
    :returns: ``Vote.allow(reason)``, ``Vote.deny(reason)``, or ``None`` for
        no opinion. Any deny wins; without an allow the action is denied. A
        hookimpl that raises counts as a deny.
    """


@hookspec
def scope_filter(principal: Principal, action: str) -> Scope | None:
    """Say which records ``principal`` may list for ``action``.

    Called by list and search endpoints before they query, so that the
    filter is applied in SQL rather than row by row.

    :param principal: Who lists.
    :param action: The listing action, e.g. ``checkin.case.list``.
    :returns: A ``Scope`` (everything, or sets of provinces, sites, labs and
        subjects) that the scopes of all plugins are merged with (union), or
        ``None`` to grant nothing. No scope from any plugin shows no rows.
        A hookimpl that raises is logged and grants nothing.
    """


# -- messages -----------------------------------------------------------------


@hookspec(firstresult=True)
def send_message(message: Message, platform: Platform) -> Receipt | Awaitable[Receipt | None] | None:
    """Deliver an SMS, e-mail or in-app notice.

    Called whenever the platform or a plugin sends a message (one-time
    codes, results, exposure notices). May be async. The core's own
    implementation runs last and writes the message to the durable
    ``message_outbox`` table, so nothing is lost when no gateway is
    configured.

    :param message: Channel, recipient, and text in Vietnamese and English.
    :param platform: The running platform.
    :returns: A ``Receipt`` when this plugin took the message, or ``None``
        to let the next channel try.
    """


# -- contributions (called once at start-up unless said otherwise) ----------


@hookspec
def register_routes(settings: Settings) -> list[ControllerRouterHandler] | None:
    """Contribute API route handlers, mounted under ``/api/<plugin name>``.

    Called once while the app is built. Handlers declare in ``opt`` the
    ``action`` they perform and the ``purpose`` they serve (or
    ``public=True``); the core's guard enforces identity, consent and access
    from that.

    :param settings: The platform settings.
    :returns: Litestar controllers, routers or handlers, or ``None``.
    """


@hookspec
def register_pages(settings: Settings) -> list[ControllerRouterHandler] | None:
    """Contribute HTML page handlers, mounted under ``/<plugin name>``.

    Called once while the app is built, like ``register_routes``.

    :param settings: The platform settings.
    :returns: Litestar controllers, routers or handlers, or ``None``.
    """


@hookspec
def register_piccolo_apps() -> list[str] | None:
    """Name the Piccolo apps (tables and migrations) a plugin owns.

    Called once at start-up and by ``phongdich migrate``. Each app declares
    ``migration_dependencies`` (at least ``core.piccolo_app``), and
    migrations run in dependency order.

    :returns: Dotted module paths of ``piccolo_app`` modules, e.g.
        ``["plugins.checkin.piccolo_app"]``, or ``None``.
    """


@hookspec
def register_roles() -> list[Role] | None:
    """Contribute roles, or grant actions to existing roles.

    Called once at start-up. Roles with the same name are merged: their
    grants add up, and their scopes must agree (start-up stops otherwise).

    :returns: A list of ``Role``, or ``None``.
    """


@hookspec
def register_settings() -> PluginSettings | None:
    """Declare the plugin's settings section and the Struct that validates it.

    Called once while settings are loaded. The section is read from
    ``[plugin.<name>]`` in the TOML file and from
    ``PHONGDICH_PLUGIN__<NAME>__<FIELD>`` variables. A wrong value stops
    start-up with a message naming ``plugin.<name>.<field>``.

    :returns: ``PluginSettings(name, struct)``, or ``None`` when the plugin
        has no settings.
    """


@hookspec
def register_commands(cli: click.Group) -> None:
    """Add commands to the ``phongdich`` command line.

    Called once when the CLI starts, with the root click group.

    :param cli: The root ``click.Group``; add commands or sub-groups to it.
    :returns: Nothing.
    """


@hookspec
def register_template_dirs() -> list[Path] | None:
    """Contribute folders of Jinja templates used by the plugin's pages.

    Called once while the app is built.

    :returns: A list of folders, or ``None``.
    """


@hookspec
def register_jobs() -> list[Job] | None:
    """Contribute scheduled jobs (purges, reminders, retries).

    Called once at start-up. Each running worker schedules the jobs, and a
    lease in the database makes sure one worker runs each due job.

    :returns: A list of ``Job`` (name, interval, async function taking the
        platform), or ``None``.
    """


@hookspec
def register_menu_items(principal: Principal) -> list[MenuItem] | None:
    """Contribute entries to the navigation menu shown to ``principal``.

    Called when a page or ``GET /api/me/menu`` builds the menu.

    :param principal: Who will see the menu.
    :returns: A list of ``MenuItem``, or ``None`` to show nothing.
    """


@hookspec
def load_demo_data(platform: Platform) -> Awaitable[None] | None:
    """Load realistic demonstration data for ``phongdich demo``.

    Called by ``phongdich demo`` after the core's own demo data (provinces,
    staff of every role) exists. May be async. Must be idempotent: running
    the demo twice leaves one copy.

    :param platform: The running platform.
    :returns: Nothing, or an awaitable.
    """


# -- lifecycle ----------------------------------------------------------------


@hookspec
def startup(platform: Platform) -> Awaitable[None] | None:
    """Run when a worker starts, after the database is reachable.

    May be async. A startup hookimpl that raises is logged and skipped.

    :param platform: The running platform.
    :returns: Nothing, or an awaitable.
    """


@hookspec
def shutdown(platform: Platform) -> Awaitable[None] | None:
    """Run when a worker stops, before the database pool closes.

    May be async.

    :param platform: The running platform.
    :returns: Nothing, or an awaitable.
    """
