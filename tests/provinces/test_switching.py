"""Province admins switch their province's plugins on and off at run time: through the API and the CLI,
seen by every worker, audited; off leaves the data and the rest of the platform as they were, on resumes."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from click.testing import CliRunner

from core import Message
from core.cli import Context, cli
from core.platform import Platform
from core.tables import AuditLog, MessageOutbox, ProvincePluginState, StaffAccount
from core.testing import TEST_PASSWORD, TestDatabases, started_platform
from plugins.checkin.declarations import NATIONAL_VERSION
from provinces.hanoi.tables import SmsQueue
from tests.provinces.conftest import HANOI, HCMC, PROVINCE_PLUGINS, Steps


def hanoi_sms(recipient: str) -> Message:
    return Message(
        channel="sms", recipient=recipient, kind="testing.result", body_vi="Am tinh", body_en="Negative", province=HANOI
    )


async def question_ids(steps: Steps, venue: dict[str, Any]) -> list[str]:
    return [q["id"] for q in (await steps.questionnaire(venue))["questions"]]


async def test_hanoi_switched_off_and_on_through_the_api_reaches_every_worker(phongdich_app, phongdich_app_factory):
    steps = Steps(phongdich_app)
    # A second worker of the same deployment: another process on the same database.
    worker = await phongdich_app_factory(worker_of=phongdich_app)
    worker_steps = Steps(worker)
    hanoi_venue = await steps.venue(HANOI, district="007", ward="00226", name="Phở Thìn")
    saigon_venue = await steps.venue(HCMC, district="760", ward="26734", name="Cà phê Tân Định")
    on_form = await steps.questionnaire(hanoi_venue)
    assert "hn.workplace" in [q["id"] for q in on_form["questions"]]
    await phongdich_app.platform.messages.send(hanoi_sms("+84912000001"))
    assert await SmsQueue.count() == 1

    hanoi_admin = await phongdich_app.actor("province_admin", province=HANOI)
    saigon_admin = await phongdich_app.actor("province_admin", province=HCMC)
    national = await phongdich_app.actor("national_admin")
    listed = await steps.client.get("/api/admin/province-plugins", headers=hanoi_admin.headers)
    assert listed.json() == [{"name": "hanoi", "province": HANOI, "enabled": True}]
    everything = await steps.client.get("/api/admin/province-plugins", headers=national.headers)
    assert [p["name"] for p in everything.json()] == ["hanoi", "hcmc"]
    refused = await steps.client.put(
        "/api/admin/province-plugins/hanoi", json={"enabled": False}, headers=saigon_admin.headers
    )
    assert refused.status_code == 403

    off = await steps.client.put(
        "/api/admin/province-plugins/hanoi", json={"enabled": False}, headers=hanoi_admin.headers
    )
    assert off.status_code == 200, off.text
    assert off.json() == {"name": "hanoi", "province": HANOI, "enabled": False}

    # This worker: Hà Nội's questions, gateway and API are gone; the city's plugin and the national ones go on.
    off_form = await steps.questionnaire(hanoi_venue)
    assert off_form["version"] == NATIONAL_VERSION
    assert "hcm.f0_at_home" in await question_ids(steps, saigon_venue)
    citizen = await phongdich_app.actor("citizen")
    stale = await steps.check_in(citizen, hanoi_venue, version=on_form["version"], answers={"hn.lockdown_area": False})
    assert stale.status_code == 409, stale.text  # a form fetched before the switch is out of date
    assert (await steps.check_in(citizen, hanoi_venue)).status_code == 201
    receipt = await phongdich_app.platform.messages.send(hanoi_sms("+84912000002"))
    assert receipt.channel == "outbox"
    switched_off = await steps.client.get("/api/hanoi/sms/summary", headers=hanoi_admin.headers)
    assert switched_off.status_code == 404
    assert "switched off" in switched_off.json()["detail"]
    # Its data stays where it was.
    assert await SmsQueue.count() == 1

    # The other worker still runs Hà Nội's plugin until it re-reads the switches (every plugin_state_ttl_seconds).
    assert "hanoi" not in worker.platform.hooks.disabled
    await worker.platform.refresh_plugin_state(force=True)
    assert worker.platform.hooks.disabled == frozenset({"hanoi"})
    assert (await worker_steps.questionnaire(hanoi_venue))["version"] == NATIONAL_VERSION

    on = await steps.client.put(
        "/api/admin/province-plugins/hanoi", json={"enabled": True}, headers=hanoi_admin.headers
    )
    assert on.status_code == 200
    # It resumes as it was: the same questions (the same form version), its gateway, its API and its data.
    assert (await steps.questionnaire(hanoi_venue))["version"] == on_form["version"]
    assert (await phongdich_app.platform.messages.send(hanoi_sms("+84912000003"))).channel == "hanoi-sms"
    summary = await steps.client.get("/api/hanoi/sms/summary", headers=hanoi_admin.headers)
    assert summary.json() == [{"kind": "testing.result", "status": "queued", "messages": 2, "segments": 2}]
    await worker.platform.refresh_plugin_state(force=True)
    assert worker.platform.hooks.disabled == frozenset()
    assert (await worker_steps.questionnaire(hanoi_venue))["version"] == on_form["version"]

    trail = await AuditLog.select(AuditLog.actor_id, AuditLog.action, AuditLog.resource_id, AuditLog.province).where(
        AuditLog.resource_kind == "province_plugin"
    )
    assert trail == [
        {"actor_id": hanoi_admin.principal.id, "action": action, "resource_id": "hanoi", "province": HANOI}
        for action in ("core.province_plugins.disable", "core.province_plugins.enable")
    ]
    assert [row["recipient"] for row in await MessageOutbox.select(MessageOutbox.recipient)] == ["+84912000002"]


def test_the_cli_lists_and_switches_as_a_named_admin(databases: TestDatabases):
    with asyncio.Runner() as loop:
        worker: Platform = loop.run(started_platform(databases, plugins=PROVINCE_PLUGINS))
        try:
            ids = loop.run(make_staff(worker))
            switches = CliSwitches(worker, loop)

            listed = switches.invoke("province-plugins", "list", "--as", "hanoi_admin")
            assert listed.output.splitlines() == ["hanoi 0.1.0  province 01  on", "1 province plugin(s)."]
            every = json.loads(switches.invoke("province-plugins", "list", "--as", "moh_admin", "--json").output)
            assert [(p["name"], p["province"], p["enabled"]) for p in every] == [
                ("hanoi", "01", True),
                ("hcmc", "79", True),
            ]

            for args, why in (
                (("hanoi", "--as", "saigon_admin"), "province_admin of province 79 cannot act in province 01"),
                (("hanoi", "--as", "hanoi_epi"), "may not manage province plugins in province 01"),
                (("hanoi", "--as", "nobody"), "--as: no staff account 'nobody'"),
                (("hanoi", "--as", "retired_admin"), "--as: the staff account 'retired_admin' is deactivated"),
                (("checkin", "--as", "hanoi_admin"), "'checkin' is not a loaded province plugin"),
            ):
                refused = switches.invoke("province-plugins", "disable", *args, expect=1)
                assert why in refused.output, refused.output
            assert switches.invoke("province-plugins", "list", "--as", "hanoi_epi", expect=1).output.startswith(
                "Error: --as: this staff account may not manage province plugins"
            )
            assert loop.run(ProvincePluginState.count().run()) == 0

            done = switches.invoke("province-plugins", "disable", "hanoi", "--as", "hanoi_admin")
            assert done.output.startswith("hanoi is now off in province 01"), done.output
            # The running worker follows once it re-reads the switches, without a restart.
            assert "hanoi" not in worker.hooks.disabled
            loop.run(worker.refresh_plugin_state(force=True))
            assert worker.hooks.disabled == frozenset({"hanoi"})
            assert "off" in switches.invoke("province-plugins", "list", "--as", "hanoi_admin").output

            switches.invoke("province-plugins", "enable", "hanoi", "--as", "moh_admin")
            loop.run(worker.refresh_plugin_state(force=True))
            assert worker.hooks.disabled == frozenset()

            trail = loop.run(
                AuditLog.select(AuditLog.actor_id, AuditLog.action)
                .where(AuditLog.resource_kind == "province_plugin")
                .run()
            )
            assert trail == [
                {"actor_id": f"staff:{ids['hanoi_admin']}", "action": "core.province_plugins.disable"},
                {"actor_id": f"staff:{ids['moh_admin']}", "action": "core.province_plugins.enable"},
            ]
        finally:
            worker.db.activate()
            loop.run(worker.stop())
            loop.run(databases.drop(worker.settings.database_url))


class CliSwitches:
    """Runs ``phongdich`` commands (a process of their own, in effect) against the worker's database."""

    def __init__(self, worker: Platform, loop: asyncio.Runner) -> None:
        self.worker = worker
        self.loop = loop

    def invoke(self, *args: str, expect: int = 0) -> Any:
        result = CliRunner().invoke(cli, list(args), obj=Context(self.worker.settings))
        # The command's platform took over Piccolo's tables for its run: hand them back to the worker.
        self.worker.db.activate()
        assert result.exit_code == expect, (args, result.output, result.exception)
        return result


async def make_staff(platform: Platform) -> dict[str, str]:
    accounts = {
        "hanoi_admin": (["province_admin"], HANOI),
        "saigon_admin": (["province_admin"], HCMC),
        "hanoi_epi": (["epidemiologist"], HANOI),
        "moh_admin": (["national_admin"], None),
        "retired_admin": (["province_admin"], HANOI),
    }
    ids = {
        username: await platform.identity.create_staff(
            username=username, password=TEST_PASSWORD, display_name=username, roles=roles, province=province
        )
        for username, (roles, province) in accounts.items()
    }
    await StaffAccount.update({StaffAccount.active: False}).where(StaffAccount.username == "retired_admin")
    return ids


@pytest.fixture(autouse=True)
def no_phongdich_toml(tmp_path, monkeypatch):
    """The CLI reads ./phongdich.toml when present: run it where there is none."""
    monkeypatch.chdir(tmp_path)
