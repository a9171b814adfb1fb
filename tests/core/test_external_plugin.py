"""Issue #2: a plugin written outside the repo works like one of ours.

The test writes a small province plugin for Da Nang (48) into a temporary
folder, installs it with pip into a folder of its own, and names it in the
settings. It must be discovered through the ``phongdich.plugins`` entry
point (and not loaded while it is not named), migrate its table, serve its
route, and see only its own province's hook calls. The real ``phongdich``
command line must migrate and list it too.
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from importlib.metadata import entry_points
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from core import Resource
from core.plugins import ENTRY_POINT_GROUP
from core.principal import Principal
from core.testing import http_client, staff_headers

PLUGIN = "danang_checkpoints"
PACKAGE = "phongdich_danang_checkpoints"
VERSION = "0.3.0"
ACTION = "danang_checkpoints.crossings.read"
TABLE = "danang_checkpoint_crossing"

SOURCES = {
    "pyproject.toml": f"""
        [build-system]
        requires = ["setuptools>=70.1"]
        build-backend = "setuptools.build_meta"

        [project]
        name = "phongdich-danang-checkpoints"
        version = "{VERSION}"
        description = "Da Nang's road checkpoints: travellers stopped at the city's entry points."
        requires-python = ">=3.11"
        dependencies = ["phongdich"]

        [project.entry-points."phongdich.plugins"]
        {PLUGIN} = "{PACKAGE}"

        [tool.setuptools.packages.find]
        include = ["{PACKAGE}*"]
    """,
    f"{PACKAGE}/__init__.py": f'''
        """Da Nang's road checkpoints, as a province plugin."""

        from core import MenuItem, Role, hookimpl

        PROVINCE = "48"
        ACTION = "{ACTION}"
        # Every hook call this plugin receives, as (hook, province it was made for).
        CALLS = []


        @hookimpl
        def register_piccolo_apps():
            return ["{PACKAGE}.piccolo_app"]


        @hookimpl
        def register_routes(settings):
            from {PACKAGE}.routes import ROUTES

            return ROUTES


        @hookimpl
        def register_roles():
            return [Role(name="epidemiologist", scope="province", grants=frozenset({{ACTION}}))]


        @hookimpl
        def authorize(principal, action, resource):
            CALLS.append(("authorize", resource.province))
            return None


        @hookimpl
        def register_menu_items(principal):
            CALLS.append(("register_menu_items", principal.province))
            return [MenuItem(label_vi="Chốt kiểm soát", label_en="Checkpoints", href="/api/{PLUGIN}/crossings")]
    ''',
    f"{PACKAGE}/tables.py": f"""
        from piccolo.columns import Integer, Serial, Varchar
        from piccolo.table import Table


        class CheckpointCrossing(Table, tablename="{TABLE}"):
            id = Serial(primary_key=True)
            checkpoint = Varchar(length=64, index=True)
            travellers = Integer(default=0)
    """,
    f"{PACKAGE}/piccolo_app.py": f"""
        import os

        from piccolo.conf.apps import AppConfig

        from {PACKAGE}.tables import CheckpointCrossing

        APP_CONFIG = AppConfig(
            app_name="{PLUGIN}",
            migrations_folder_path=os.path.join(os.path.dirname(__file__), "piccolo_migrations"),
            table_classes=[CheckpointCrossing],
            migration_dependencies=["core.piccolo_app"],
            commands=[],
        )
    """,
    f"{PACKAGE}/piccolo_migrations/__init__.py": "",
    # Written by hand, the way `piccolo migrations new --auto` writes them.
    f"{PACKAGE}/piccolo_migrations/{PLUGIN}_2026_12_01t00_00_00_000000.py": f"""
        from piccolo.apps.migrations.auto.migration_manager import MigrationManager
        from piccolo.columns.column_types import Integer, Serial, Varchar
        from piccolo.columns.indexes import IndexMethod

        ID = "2026-12-01T00:00:00:000000"
        VERSION = "1.38.0"
        DESCRIPTION = "checkpoint crossings"

        COMMON = {{
            "null": False,
            "unique": False,
            "index_method": IndexMethod.btree,
            "choices": None,
            "db_column_name": None,
            "secret": False,
        }}


        async def forwards():
            manager = MigrationManager(migration_id=ID, app_name="{PLUGIN}", description=DESCRIPTION)
            manager.add_table(class_name="CheckpointCrossing", tablename="{TABLE}", schema=None, columns=None)
            for name, column_class, params in (
                ("id", Serial, {{"primary_key": True, "index": False}}),
                ("checkpoint", Varchar, {{"length": 64, "default": "", "primary_key": False, "index": True}}),
                ("travellers", Integer, {{"default": 0, "primary_key": False, "index": False}}),
            ):
                manager.add_column(
                    table_class_name="CheckpointCrossing",
                    tablename="{TABLE}",
                    column_name=name,
                    db_column_name=name,
                    column_class_name=column_class.__name__,
                    column_class=column_class,
                    params={{**COMMON, **params}},
                    schema=None,
                )
            return manager
    """,
    f"{PACKAGE}/routes.py": f"""
        import msgspec
        from litestar import get
        from litestar.params import FromPath

        from core import Resource
        from core.web.guard import PlatformDep, PrincipalDep
        from {PACKAGE} import ACTION, PROVINCE
        from {PACKAGE}.tables import CheckpointCrossing


        class CheckpointTotal(msgspec.Struct):
            checkpoint: str
            travellers: int
            records: int


        @get("/crossings/{{checkpoint:str}}", opt={{"action": ACTION}}, tags=["{PLUGIN}"])
        async def crossings(
            checkpoint: FromPath[str], principal: PrincipalDep, platform: PlatformDep
        ) -> CheckpointTotal:
            # The record belongs to Da Nang: this check runs the province's authorize hooks.
            record = Resource(kind="checkpoint", id=checkpoint, province=PROVINCE)
            await platform.access.check(principal, ACTION, record)
            rows = await CheckpointCrossing.select(CheckpointCrossing.travellers).where(
                CheckpointCrossing.checkpoint == checkpoint
            )
            total = sum(row["travellers"] for row in rows)
            return CheckpointTotal(checkpoint=checkpoint, travellers=total, records=len(rows))


        ROUTES = [crossings]
    """,
}


@pytest.fixture(scope="module")
def installed_plugin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The plugin, pip-installed into its own folder and put on ``sys.path`` for this module."""
    root = tmp_path_factory.mktemp("external-plugin")
    source, site = root / "source", root / "site"
    for relative, text in SOURCES.items():
        path = source / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip())
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "--disable-pip-version-check",
            "--target",
            str(site),
            str(source),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    sys.path.insert(0, str(site))
    # Finders cache what they saw of sys.path; entry points must see the new folder.
    importlib.invalidate_caches()
    yield site
    # Piccolo also puts the migrations folder on sys.path: take out everything under root.
    sys.path[:] = [entry for entry in sys.path if not entry.startswith(str(root))]
    _forget_plugin_modules(root)
    importlib.invalidate_caches()


def _forget_plugin_modules(root: Path | None = None) -> None:
    for name, module in list(sys.modules.items()):
        origin = getattr(module, "__file__", None) or ""
        if name == PACKAGE or name.startswith(f"{PACKAGE}.") or (root is not None and origin.startswith(str(root))):
            del sys.modules[name]


def _plugin_module() -> ModuleType:
    return sys.modules[PACKAGE]


async def test_installed_but_not_named_is_not_loaded(installed_plugin: Path, make_platform: Any) -> None:
    assert PLUGIN in {ep.name for ep in entry_points(group=ENTRY_POINT_GROUP)}
    _forget_plugin_modules()
    platform = await make_platform()
    assert PLUGIN not in platform.plugins
    assert PACKAGE not in sys.modules, "an allowlisted-only plugin was imported without being named"


async def test_named_plugin_migrates_its_table_and_serves_its_route(installed_plugin: Path, make_platform: Any) -> None:
    platform = await make_platform(plugins=[PLUGIN])
    info = platform.plugins[PLUGIN]
    assert (info.kind, info.province, info.version) == ("province", "48", VERSION)
    assert _plugin_module().__file__.startswith(str(installed_plugin))
    assert {"register_piccolo_apps", "register_routes", "register_roles", "authorize"} <= set(info.hooks)

    counted = await platform.db.execute(f"SELECT COUNT(*) AS n FROM {TABLE}")
    assert [dict(row) for row in counted] == [{"n": 0}]
    applied = await platform.db.execute("SELECT name FROM migration WHERE app_name = {}", PLUGIN)
    assert [row["name"] for row in applied] == ["2026-12-01T00:00:00:000000"]
    crossing = sys.modules[f"{PACKAGE}.tables"].CheckpointCrossing
    await crossing.insert(
        crossing(checkpoint="hai-van", travellers=120),
        crossing(checkpoint="hai-van", travellers=80),
        crossing(checkpoint="hoa-vang", travellers=7),
    )

    danang = await staff_headers(platform, ["epidemiologist"], province="48")
    hanoi = await staff_headers(platform, ["epidemiologist"], province="01")
    async with http_client(platform) as client:
        answer = await client.get(f"/api/{PLUGIN}/crossings/hai-van", headers=danang)
        assert answer.status_code == 200, answer.text
        assert answer.json() == {"checkpoint": "hai-van", "travellers": 200, "records": 2}
        # Hanoi's epidemiologist holds the same grant, but Da Nang's records are not Hanoi's.
        refused = await client.get(f"/api/{PLUGIN}/crossings/hai-van", headers=hanoi)
        assert refused.status_code == 403, refused.text
        assert "cannot act in province 48" in refused.json()["detail"]
        schema = (await client.get("/schema/openapi.json")).json()
        assert f"/api/{PLUGIN}/crossings/{{checkpoint}}" in schema["paths"]


async def test_named_plugin_sees_only_its_own_provinces_hook_calls(installed_plugin: Path, make_platform: Any) -> None:
    platform = await make_platform(plugins=[PLUGIN])
    calls: list[tuple[str, str | None]] = _plugin_module().CALLS
    calls.clear()
    hanoi_staff = Principal(id="staff:hanoi", kind="staff", roles=frozenset({"epidemiologist"}), province="01")
    danang_staff = Principal(id="staff:danang", kind="staff", roles=frozenset({"epidemiologist"}), province="48")

    await platform.access.decide(hanoi_staff, ACTION, Resource(kind="checkpoint", province="01"))
    await platform.access.decide(hanoi_staff, ACTION, Resource(kind="checkpoint"))
    assert calls == [], "a Da Nang plugin was asked about Hanoi (or about no province)"
    await platform.access.decide(danang_staff, ACTION, Resource(kind="checkpoint", province="48"))
    assert calls == [("authorize", "48")]

    calls.clear()
    async with http_client(platform) as client:
        hanoi_menu = await client.get(
            "/api/me/menu", headers=await staff_headers(platform, ["epidemiologist"], province="01")
        )
        danang_menu = await client.get(
            "/api/me/menu", headers=await staff_headers(platform, ["epidemiologist"], province="48")
        )
    assert hanoi_menu.status_code == danang_menu.status_code == 200
    assert "Checkpoints" not in {item["label_en"] for item in hanoi_menu.json()}
    assert "Checkpoints" in {item["label_en"] for item in danang_menu.json()}
    assert [call for call in calls if call[0] == "register_menu_items"] == [("register_menu_items", "48")]
    assert all(province == "48" for _hook, province in calls), calls


def test_cli_migrates_and_lists_the_plugin(installed_plugin: Path, tmp_path: Path) -> None:
    # The user's environment, minus settings meant for the test suite (PHONGDICH_TEST_DATABASE).
    env = {key: value for key, value in os.environ.items() if not key.startswith("PHONGDICH_")}
    env.update(
        PYTHONPATH=str(installed_plugin),
        PHONGDICH_PLUGINS=PLUGIN,
        PHONGDICH_DATABASE_URL=f"sqlite:///{tmp_path / 'cli.sqlite3'}",
        PHONGDICH_LOG_FORMAT="json",
        PHONGDICH_LOG_LEVEL="warning",
    )

    def phongdich(*args: str) -> str:
        done = subprocess.run(
            [*_cli(), *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300, check=False
        )
        assert done.returncode == 0, f"phongdich {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"
        return done.stdout

    migrated = phongdich("migrate")
    assert f"{PLUGIN}: applied 1 migration(s): 2026-12-01T00:00:00:000000" in migrated, migrated
    assert f"{PLUGIN}: up to date" in phongdich("migrate")

    listed = phongdich("plugins")
    assert f"{PLUGIN} {VERSION} (province province 48)" in listed, listed
    views = {view["name"]: view for view in json.loads(phongdich("plugins", "--json"))}
    assert (views[PLUGIN]["kind"], views[PLUGIN]["province"]) == ("province", "48")
    assert "register_piccolo_apps" in views[PLUGIN]["hooks"]


def _cli() -> list[str]:
    """The installed ``phongdich`` console script, as a user would run it."""
    script = Path(sys.executable).with_name("phongdich")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "from core.cli import main; main()"]
