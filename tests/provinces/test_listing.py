"""``/-/plugins`` and ``phongdich plugins`` show each province plugin's version, province, hooks and settings."""

from __future__ import annotations

import json
from importlib.metadata import version

from click.testing import CliRunner

from core.cli import Context, cli
from core.testing import TestDatabases
from tests.provinces.conftest import HANOI, PROVINCE_PLUGINS

VERSION = version("phongdich")
HANOI_HOOKS = [
    "checkin_declaration_questions",
    "register_piccolo_apps",
    "register_roles",
    "register_routes",
    "register_settings",
    "send_message",
    "vaccination_priority_groups",
]
HCMC_HOOKS = [
    "checkin_declaration_questions",
    "checkin_risk_weight",
    "checkin_venue_types",
    "register_piccolo_apps",
    "register_roles",
    "register_routes",
    "register_settings",
    "vaccination_priority_groups",
]


async def test_the_plugin_list_shows_each_province_plugin_and_whether_it_is_on(phongdich_app):
    admin = await phongdich_app.actor("province_admin", province=HANOI)
    switched = await phongdich_app.client.put(
        "/api/admin/province-plugins/hanoi", json={"enabled": False}, headers=admin.headers
    )
    assert switched.status_code == 200
    views = {view["name"]: view for view in (await phongdich_app.client.get("/-/plugins")).json()}
    assert views["hanoi"] == {
        "name": "hanoi",
        "kind": "province",
        "version": VERSION,
        "province": "01",
        "enabled": False,
        "hooks": HANOI_HOOKS,
        "settings_section": "plugin.hanoi",
    }
    assert views["hcmc"] == {
        "name": "hcmc",
        "kind": "province",
        "version": VERSION,
        "province": "79",
        "enabled": True,
        "hooks": HCMC_HOOKS,
        "settings_section": "plugin.hcmc",
    }
    assert views["checkin"]["province"] is None


def test_phongdich_plugins_lists_them_too(databases: TestDatabases, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no ./phongdich.toml
    settings = databases.settings(f"sqlite:///{tmp_path / 'unused.sqlite3'}", plugins=PROVINCE_PLUGINS)
    text = CliRunner().invoke(cli, ["plugins"], obj=Context(settings))
    assert text.exit_code == 0, text.output
    lines = text.output.splitlines()
    at = lines.index(f"hanoi {VERSION} (province province 01) [plugin.hanoi]")
    assert lines[at + 1] == f"    hooks: {', '.join(HANOI_HOOKS)}"
    assert f"hcmc {VERSION} (province province 79) [plugin.hcmc]" in lines

    listed = CliRunner().invoke(cli, ["plugins", "--json"], obj=Context(settings))
    views = {view["name"]: view for view in json.loads(listed.output)}
    assert (views["hcmc"]["province"], views["hcmc"]["settings_section"], views["hcmc"]["hooks"]) == (
        "79",
        "plugin.hcmc",
        HCMC_HOOKS,
    )
