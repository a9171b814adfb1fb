"""Plugin loading, province scoping and the containment of misbehaving plugins."""

from __future__ import annotations

from pathlib import Path

import pytest
from structlog.testing import capture_logs

from core import Message, Principal, Resource
from core.platform import Platform
from core.plugins import NATIONAL_PLUGINS, Hooks, PluginLoadError, load_plugins
from core.tables import MessageOutbox
from core.testing import TEST_PASSWORD, http_client, staff_headers
from tests.core.example_plugins import faulty
from tests.core.example_plugins.provinces import LOCAL_ACTION, PROVINCE_HREFS, hanoi, saigon
from tests.core.example_plugins.research import CASE_LIST, Research

STAFF_01 = Principal(id="staff:a", kind="staff", roles=frozenset({"epidemiologist"}), province="01")
STAFF_79 = Principal(id="staff:b", kind="staff", roles=frozenset({"epidemiologist"}), province="79")
NATIONAL = Principal(id="staff:c", kind="staff", roles=frozenset({"national_admin"}))


def install_distribution(root: Path, name: str, version: str, entry_points: dict[str, str]) -> None:
    """Write a ``*.dist-info`` that importlib.metadata sees once ``root`` is on sys.path."""
    info = root / f"{name}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    lines = "\n".join(f"{key} = {value}" for key, value in entry_points.items())
    (info / "entry_points.txt").write_text(f"[phongdich.plugins]\n{lines}\n")


# -- loading -----------------------------------------------------------------------


def test_national_plugins_always_load_once():
    _pm, infos = load_plugins()
    for name in NATIONAL_PLUGINS:
        assert infos[name].kind == "national"
    # Naming a national plugin in the allowlist neither fails nor loads it twice.
    pm, infos = load_plugins(["checkin"])
    assert [p for p in pm.get_plugins() if pm.get_name(p) == "checkin"] == [pm.get_plugin("checkin")]
    assert infos["checkin"].kind == "national"


def test_misspelt_hook_stops_startup_naming_the_plugin(databases):
    with pytest.raises(PluginLoadError, match=r"plugin 'typo-plugin'.*misspelt") as caught:
        load_plugins(extra=[("typo-plugin", faulty.MisspeltHook())])
    assert "register_menu_item" in str(caught.value)
    # The platform refuses to build, too.
    settings = databases.settings("sqlite:///never-created.sqlite3")
    with pytest.raises(PluginLoadError, match="typo-plugin"):
        Platform(settings, extra_plugins=[("typo-plugin", faulty.MisspeltHook())])


def test_hookimpl_with_unknown_argument_stops_startup():
    with pytest.raises(PluginLoadError, match=r"plugin 'wrong-args'.*invalid hook") as caught:
        load_plugins(extra=[("wrong-args", faulty.ExtraArgument())])
    assert "request" in str(caught.value)


def test_named_but_not_installed_plugin_is_a_clear_error():
    with pytest.raises(PluginLoadError) as caught:
        load_plugins(["quang_ninh_not_installed"])
    message = str(caught.value)
    assert "'quang_ninh_not_installed'" in message
    assert "PHONGDICH_PLUGINS" in message
    assert "phongdich.plugins" in message


def test_entry_point_import_failure_names_the_plugin(tmp_path, monkeypatch):
    install_distribution(
        tmp_path, "phongdich_gateway", "1.0.0", {"sms_gateway": "tests.core.example_plugins.broken_import"}
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(PluginLoadError) as caught:
        load_plugins(["sms_gateway"])
    message = str(caught.value)
    assert "'sms_gateway'" in message
    assert "failed to import" in message
    assert "phongdich_sms_gateway_that_is_not_installed" in message


def test_installed_plugin_loads_only_when_named(tmp_path, monkeypatch):
    install_distribution(
        tmp_path, "phongdich_extension", "0.3.1", {"extension": "tests.core.example_plugins.installed_extension"}
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    pm, infos = load_plugins()
    assert "extension" not in infos
    assert pm.get_plugin("extension") is None

    pm, infos = load_plugins(["extension"])
    assert infos["extension"].kind == "extension"
    assert infos["extension"].version == "0.3.1"
    assert infos["extension"].hooks == ("register_menu_items",)


# -- province scoping ----------------------------------------------------------------


def scoped_hooks(*extra: tuple[str, object]) -> Hooks:
    pm, infos = load_plugins(extra=extra)
    return Hooks(pm, infos)


async def menu_hrefs(hooks: Hooks, province: str | None, principal: Principal) -> list[str]:
    groups = await hooks.collect("register_menu_items", province=province, principal=principal)
    return sorted(item.href for group in groups for item in group if item.href in PROVINCE_HREFS)


async def test_province_calls_never_run_another_provinces_plugin():
    hn, sg = hanoi(), saigon()
    hooks = scoped_hooks(("hanoi", hn), ("saigon", sg))
    assert hooks.province_plugins() == ["hanoi", "saigon"]
    assert hooks.province_plugins("01") == ["hanoi"]

    assert await menu_hrefs(hooks, "01", STAFF_01) == ["/hanoi"]
    votes = await hooks.vote(
        "authorize", province="01", principal=STAFF_01, action=LOCAL_ACTION, resource=Resource(kind="x", province="01")
    )
    assert [v.reason for v in votes] == ["hanoi allows its local action"]
    assert sg.calls == []
    assert [call for call, _ in hn.calls] == ["register_menu_items", "authorize"]

    hn.calls.clear()
    assert await menu_hrefs(hooks, "79", STAFF_79) == ["/saigon"]
    votes = await hooks.vote(
        "authorize", province="79", principal=STAFF_79, action=LOCAL_ACTION, resource=Resource(kind="x", province="79")
    )
    assert [v.reason for v in votes] == ["saigon allows its local action"]
    assert hn.calls == []

    # A call for no province (a national action) runs no province plugin at all.
    hn.calls.clear()
    sg.calls.clear()
    assert await menu_hrefs(hooks, None, NATIONAL) == []
    votes = await hooks.vote(
        "authorize", province=None, principal=NATIONAL, action=LOCAL_ACTION, resource=Resource(kind="x")
    )
    assert votes == []
    assert hn.calls == sg.calls == []


async def test_disabled_province_plugin_is_left_out_until_reenabled():
    hooks = scoped_hooks(("hanoi", hanoi()), ("saigon", saigon()))
    hooks.set_disabled(["hanoi", "not-a-province-plugin"])
    assert hooks.disabled == frozenset({"hanoi"})
    assert await menu_hrefs(hooks, "01", STAFF_01) == []
    assert await menu_hrefs(hooks, "79", STAFF_79) == ["/saigon"]
    hooks.set_disabled([])
    assert await menu_hrefs(hooks, "01", STAFF_01) == ["/hanoi"]


def test_province_callers_are_cached_per_province():
    hooks = scoped_hooks(("hanoi", hanoi()), ("saigon", saigon()))
    calls = []
    original = hooks.pm.subset_hook_caller

    def counting(*args, **kwargs):
        calls.append(args)
        return original(*args, **kwargs)

    hooks.pm.subset_hook_caller = counting  # type: ignore[method-assign]
    first = hooks.caller("authorize", "01")
    assert hooks.caller("authorize", "01") is first
    assert hooks.caller("authorize", "79") is not first
    assert len(calls) == 2
    hooks.set_disabled(["saigon"])
    hooks.set_disabled(["saigon"])  # no change: the cache stays
    assert hooks.caller("authorize", "01") is not first  # the switch invalidated the cache
    assert hooks.caller("authorize", "01") is hooks.caller("authorize", "01")
    assert len(calls) == 3
    # The hookimpl lists that calls run are cached the same way, and follow the switch.
    impls = hooks.impls("authorize", "79")
    assert hooks.impls("authorize", "79") is impls
    assert "saigon" not in [impl.plugin_name for impl in impls]
    hooks.set_disabled([])
    assert "saigon" in [impl.plugin_name for impl in hooks.impls("authorize", "79")]


async def test_messages_go_through_their_provinces_gateway(start_platform):
    hn, sg = hanoi(), saigon()
    platform = await start_platform(("hanoi", hn), ("saigon", sg))

    def message(province: str | None) -> Message:
        return Message(
            channel="sms", recipient="+84912345678", kind="test", body_vi="x", body_en="x", province=province
        )

    assert (await platform.messages.send(message("01"))).channel == "hanoi-sms"
    assert (await platform.messages.send(message("79"))).channel == "saigon-sms"
    assert [c for c in hn.calls if c[0] == "send_message"] == [("send_message", "01")]
    assert [c for c in sg.calls if c[0] == "send_message"] == [("send_message", "79")]
    # Nationally (and in a province without a gateway) the durable outbox takes it.
    assert (await platform.messages.send(message(None))).channel == "outbox"
    assert (await platform.messages.send(message("48"))).channel == "outbox"
    assert await MessageOutbox.count() == 2


async def test_menu_endpoint_is_scoped_to_the_principals_province(start_platform):
    platform = await start_platform(("hanoi", hanoi()), ("saigon", saigon()))
    async with http_client(platform) as client:
        for province, href in (("01", "/hanoi"), ("79", "/saigon")):
            headers = await staff_headers(platform, ["epidemiologist"], province=province)
            response = await client.get("/api/me/menu", headers=headers)
            assert response.status_code == 200, response.text
            assert [item["href"] for item in response.json() if item["href"] in PROVINCE_HREFS] == [href]


# -- misbehaving plugins -------------------------------------------------------------


def failures(logs: list[dict], hook: str) -> list[str]:
    return [entry["plugin"] for entry in logs if entry["event"] == "hook.failed" and entry["hook"] == hook]


async def test_raising_contribution_is_logged_and_skipped(start_platform):
    platform = await start_platform(("broken-menu", faulty.RaisingMenu()), ("hanoi", hanoi()))
    headers = await staff_headers(platform, ["epidemiologist"], province="01")
    async with http_client(platform) as client:
        with capture_logs() as logs:
            response = await client.get("/api/me/menu", headers=headers)
    assert response.status_code == 200, response.text
    assert [item["href"] for item in response.json() if item["href"] in PROVINCE_HREFS] == ["/hanoi"]
    assert failures(logs, "register_menu_items") == ["broken-menu"]
    failed = next(entry for entry in logs if entry["event"] == "hook.failed")
    assert "menu backend is down" in failed["error"]


async def test_raising_scope_filter_grants_nothing_but_others_count(start_platform):
    platform = await start_platform(("research", Research()), ("broken-scope", faulty.RaisingScope()))
    with capture_logs() as logs:
        scope = await platform.access.scope(STAFF_01, CASE_LIST)
    assert scope.provinces == frozenset({"01"})
    assert not scope.everything
    assert failures(logs, "scope_filter") == ["broken-scope"]


async def test_raising_startup_is_logged_and_the_platform_starts(start_platform):
    with capture_logs() as logs:
        platform = await start_platform(("broken-startup", faulty.RaisingStartup()))
    assert failures(logs, "startup") == ["broken-startup"]
    await platform.db.ping()


async def test_raising_authorize_denies_even_when_another_plugin_allows(start_platform):
    platform = await start_platform(
        ("allower", faulty.Allower("example.thing.do")), ("broken-policy", faulty.RaisingVoter())
    )
    with capture_logs() as logs:
        decision = await platform.access.decide(NATIONAL, "example.thing.do", Resource(kind="thing"))
    assert not decision.allowed
    assert any("broken-policy" in reason and "fail closed" in reason for reason in decision.reasons)
    assert failures(logs, "authorize") == ["broken-policy"]
    # Without the failing plugin, the same action is allowed: the failure is what denied it.
    hooks = scoped_hooks(("allower", faulty.Allower("example.thing.do")))
    votes = await hooks.vote("authorize", principal=NATIONAL, action="example.thing.do", resource=Resource(kind="t"))
    assert [v.decision for v in votes] == ["allow"]


async def test_raising_identify_gives_401_not_500(start_platform):
    platform = await start_platform(("broken-identity", faulty.RaisingIdentity()))
    headers = await staff_headers(platform, ["national_admin"])
    async with http_client(platform) as client:
        with capture_logs() as logs:
            response = await client.get("/api/me", headers=headers)
            anonymous = await client.get("/api/me")
    assert response.status_code == 401, response.text
    assert anonymous.status_code == 401
    assert "Traceback" not in response.text
    assert "identity provider unreachable" not in response.text
    assert "broken-identity" in failures(logs, "identify")
    # A broken identity provider must not take down health checks or password sign-in.
    await platform.identity.create_staff(
        username="still.works", password=TEST_PASSWORD, display_name="x", roles=["national_admin"]
    )
    async with http_client(platform) as client:
        assert (await client.get("/healthz")).status_code == 200
        login = await client.post("/api/auth/login", json={"username": "still.works", "password": TEST_PASSWORD})
        assert login.status_code == 201, login.text
