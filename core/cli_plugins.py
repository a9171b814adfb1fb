"""Commands for plugins: ``phongdich new-plugin`` and ``phongdich province-plugins``.

``province-plugins`` acts as a named staff member (``--as USERNAME``), who
must be a province admin of the plugin's province or a national admin, the
same rule as ``/api/admin/province-plugins``. A switch is stored in the
database and audited under that staff member's name; every running worker
picks it up within ``plugin_state_ttl_seconds``, without a restart.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click
import msgspec

from core.access import Resource
from core.errors import InvalidInput
from core.principal import NATIONAL_ADMIN, Principal

if TYPE_CHECKING:
    from core.cli import Context
    from core.platform import Platform

MANAGE = "core.province_plugins.manage"


class ProvincePluginRow(msgspec.Struct, frozen=True):
    name: str
    province: str
    enabled: bool
    version: str


# -- new-plugin ----------------------------------------------------------------------------------


@click.command("new-plugin")
@click.argument("name")
@click.option("--province", metavar="CODE", help="Make it a province plugin of this two-digit province code.")
@click.option(
    "--output",
    default=".",
    show_default=True,
    type=click.Path(file_okay=False),
    help="Folder in which the project folder phongdich-NAME is created.",
)
def new_plugin(name: str, province: str | None, output: str) -> None:
    """Write an installable plugin package: entry point, hookimpls, a table and migration, a route, tests."""
    from core.scaffold import new_plugin as write

    try:
        scaffold = write(name, province=province, output=Path(output))
    except InvalidInput as exc:
        raise click.ClickException(str(exc)) from exc
    kind = f"province plugin of {province}" if province else "plugin"
    click.echo(f"Wrote {scaffold.root} ({kind} {name!r}, package {scaffold.package}, {len(scaffold.files)} files).")
    click.echo("Next:")
    click.echo(f"  pip install -e '{scaffold.root}[test]'")
    click.echo(f"  export PHONGDICH_PLUGINS={name}")
    click.echo("  phongdich migrate && phongdich serve")
    click.echo(f"  cd {scaffold.root} && pytest")


# -- province-plugins ----------------------------------------------------------------------------

acting_as = click.option(
    "--as",
    "username",
    required=True,
    metavar="USERNAME",
    help="The staff account acting: a province admin of the plugin's province, or a national admin.",
)


@click.group("province-plugins")
def province_plugins() -> None:
    """Province plugins: list those of a province, switch them on or off there (audited, no restart)."""


@province_plugins.command("list")
@acting_as
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_obj
def list_province_plugins(obj: Context, username: str, as_json: bool) -> None:
    """The province plugins the staff member may switch: their province's, or all for a national admin."""

    async def work(platform: Platform) -> list[ProvincePluginRow]:
        principal = await staff_principal(username)
        province = None if NATIONAL_ADMIN in principal.roles else principal.province
        await _require(platform, principal, Resource(kind="province_plugin", province=province))
        return [
            ProvincePluginRow(
                name=name,
                province=platform.plugins[name].province or "",
                enabled=name not in platform.hooks.disabled,
                version=platform.plugins[name].version,
            )
            for name in platform.hooks.province_plugins(province)
        ]

    rows = obj.run(work)
    if as_json:
        click.echo(msgspec.json.encode(rows).decode())
        return
    for row in rows:
        click.echo(f"{row.name} {row.version}  province {row.province}  {'on' if row.enabled else 'off'}")
    click.echo(f"{len(rows)} province plugin(s).")


@province_plugins.command("enable")
@click.argument("name")
@acting_as
@click.pass_obj
def enable(obj: Context, name: str, username: str) -> None:
    """Switch a province plugin on in its province."""
    _switch(obj, name, username, enabled=True)


@province_plugins.command("disable")
@click.argument("name")
@acting_as
@click.pass_obj
def disable(obj: Context, name: str, username: str) -> None:
    """Switch a province plugin off in its province; its data stays, and switching it on resumes it."""
    _switch(obj, name, username, enabled=False)


def _switch(obj: Context, name: str, username: str, *, enabled: bool) -> None:
    async def work(platform: Platform) -> str:
        info = platform.plugins.get(name)
        if info is None or info.province is None:
            known = ", ".join(platform.hooks.province_plugins()) or "none is loaded"
            raise InvalidInput(f"NAME: {name!r} is not a loaded province plugin (province plugins: {known})")
        principal = await staff_principal(username)
        await _require(platform, principal, Resource(kind="province_plugin", id=name, province=info.province))
        await platform.set_province_plugin(name, enabled=enabled, by=principal)
        return str(info.province)

    province = obj.run(work)
    ttl = obj.settings.plugin_state_ttl_seconds
    click.echo(
        f"{name} is now {'on' if enabled else 'off'} in province {province}; running workers follow within {ttl:g} s."
    )


async def staff_principal(username: str) -> Principal:
    """The principal a staff account signs in as, without a password: the CLI runs on the server."""
    from core.tables import StaffAccount

    row = await StaffAccount.select().where(StaffAccount.username == username).first()
    if row is None:
        raise InvalidInput(f"--as: no staff account {username!r}")
    if not row["active"]:
        raise InvalidInput(f"--as: the staff account {username!r} is deactivated")
    roles = row["roles"]
    if isinstance(roles, str | bytes):
        roles = msgspec.json.decode(roles)
    return Principal(
        id=f"staff:{row['id']}",
        kind="staff",
        roles=frozenset(roles),
        province=row["province"],
        site=row["site"],
        lab=row["lab"],
    )


async def _require(platform: Platform, principal: Principal, resource: Resource) -> None:
    decision = await platform.access.decide(principal, MANAGE, resource)
    if not decision.allowed:
        where = f" in province {resource.province}" if resource.province else ""
        raise InvalidInput(
            f"--as: this staff account may not manage province plugins{where}: {'; '.join(decision.reasons)}"
        )
