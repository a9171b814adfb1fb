"""``phongdich new-plugin``: write a new, installable plugin package that works as generated.

The package has its pyproject (with the ``phongdich.plugins`` entry point),
thin hookimpls, a settings section, a Piccolo app with one migration, one
route that declares its action and filters its rows by the caller's scope
in SQL, and tests written with the plugin author's kit
(``core.pytest_plugin``). With ``--province`` it is a province plugin: it
declares ``PROVINCE`` and adds a question to the health declaration at that
province's venues only.

The templates are strings here, so that they ship inside the ``phongdich``
package whatever its package-data rules; ``$name``-style placeholders are
filled by ``string.Template``.
"""

from __future__ import annotations

import keyword
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from string import Template

from core.admin_units import read_units
from core.errors import InvalidInput
from core.plugins import NATIONAL_PLUGINS

NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_]{1,38}[a-z0-9]$")
# Names that would shadow the platform's own packages, routes or settings.
RESERVED = frozenset({*NATIONAL_PLUGINS, "core", "plugins", "provinces", "admin", "auth", "me", "api", "schema"})


@dataclass(frozen=True)
class Scaffold:
    """What was written: the project folder, its package and entry-point name, and the files."""

    root: Path
    name: str
    package: str
    distribution: str
    province: str | None
    files: tuple[Path, ...]


def new_plugin(name: str, *, province: str | None = None, output: Path | str = ".") -> Scaffold:
    """Write the package for plugin ``name`` into ``output/phongdich-<name>``; returns what was written.

    Raises ``InvalidInput`` naming the argument when the name, the province
    code or the folder will not do.
    """
    check_name(name)
    province_name = check_province(province) if province is not None else None
    distribution = "phongdich-" + name.replace("_", "-")
    package = f"phongdich_{name}"
    root = Path(output) / distribution
    if root.exists() and any(root.iterdir()):
        raise InvalidInput(f"output: {root} already exists and is not empty; choose another --output")

    now = datetime.now(UTC)
    other = "48" if province != "48" else "01"
    values = {
        "name": name,
        "name_upper": name.upper(),
        "province_assert": f'== "{province}"' if province else "is None",
        "package": package,
        "distribution": distribution,
        "home": province or "01",
        "other": other,
        "migration_id": now.strftime("%Y-%m-%dT%H:%M:%S:%f"),
        "piccolo_version": _piccolo_version(),
        "core_version": _core_version(),
        "what": "notices for the health staff of "
        + (f"{province_name} (province {province})" if province else "each province"),
    }
    # The province parts are templates too: fill them first, then the module around them.
    for key, part in (
        ("province_imports", PROVINCE_IMPORTS),
        ("province_declaration", PROVINCE_DECLARATION),
        ("province_hooks", PROVINCE_HOOKS),
    ):
        values[key] = Template(part).substitute(values) if province else ""
    files = {
        "pyproject.toml": PYPROJECT,
        "README.md": README,
        f"{package}/__init__.py": INIT,
        f"{package}/settings.py": SETTINGS,
        f"{package}/tables.py": TABLES,
        f"{package}/schemas.py": SCHEMAS,
        f"{package}/routes.py": ROUTES,
        f"{package}/piccolo_app.py": PICCOLO_APP,
        f"{package}/piccolo_migrations/__init__.py": "",
        f"{package}/piccolo_migrations/{name}_{now.strftime('%Y_%m_%dt%H_%M_%S_%f')}.py": MIGRATION,
        "tests/__init__.py": "",
        "tests/conftest.py": CONFTEST,
        f"tests/test_{name}.py": TESTS + (PROVINCE_TESTS if province else ""),
    }
    if province:
        files[f"{package}/declarations.py"] = DECLARATIONS
    written = []
    for relative, template in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(Template(template).substitute(values), encoding="utf-8")
        written.append(path)
    return Scaffold(
        root=root,
        name=name,
        package=package,
        distribution=distribution,
        province=province,
        files=tuple(written),
    )


def check_name(name: str) -> None:
    if not NAME_PATTERN.match(name) or "__" in name:
        raise InvalidInput(
            f"name: {name!r} will not do; use 3 to 40 lowercase letters, digits and single underscores, "
            "starting with a letter (e.g. hanoi_shippers)"
        )
    if name in RESERVED or keyword.iskeyword(name):
        raise InvalidInput(f"name: {name!r} is taken by the platform; choose another")


def check_province(code: str) -> str:
    """The province's name for an official two-digit code; ``InvalidInput`` for anything else."""
    if not re.fullmatch(r"[0-9]{2}", code):
        raise InvalidInput(f"province: {code!r} is not a two-digit province code such as 01 (Ha Noi)")
    for unit in read_units():
        if unit.code == code and unit.level == "province":
            return unit.name
    raise InvalidInput(f"province: no province has code {code} (see `phongdich units list`)")


def _piccolo_version() -> str:
    import piccolo

    return str(piccolo.__VERSION__)


def _core_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("phongdich")
    except PackageNotFoundError:
        return "0.1.0"


# -- templates ---------------------------------------------------------------------------------

PYPROJECT = """\
[build-system]
requires = ["setuptools>=70.1"]
build-backend = "setuptools.build_meta"

[project]
name = "$distribution"
version = "0.1.0"
description = "A phongdich plugin: $what."
requires-python = ">=3.11"
dependencies = ["phongdich>=$core_version"]

[project.optional-dependencies]
test = ["phongdich[test]"]

# phongdich discovers plugins through this group; it loads one only when PHONGDICH_PLUGINS names it.
[project.entry-points."phongdich.plugins"]
$name = "$package"

[tool.setuptools.packages.find]
include = ["$package*"]

[tool.pytest.ini_options]
testpaths = ["tests"]
asyncio_mode = "auto"
asyncio_default_fixture_loop_scope = "function"

[tool.ruff]
line-length = 120
target-version = "py311"
"""

README = """\
# $distribution

A phongdich plugin: $what.

    pip install -e '.[test]'                 # next to phongdich
    export PHONGDICH_PLUGINS=$name           # the national centre's allowlist
    phongdich migrate                        # creates the ${name}_notice table
    phongdich plugins                        # $name is listed, with its hooks and [plugin.$name]
    phongdich serve                          # GET /api/$name/notices
    pytest                                   # the tests, on SQLite
    PHONGDICH_TEST_DATABASE=postgresql://postgres@127.0.0.1:5432 pytest

Settings: `[plugin.$name]` in phongdich.toml, or `PHONGDICH_PLUGIN__${name_upper}__PAGE_SIZE=20`.

A new migration after changing `tables.py`:

    PICCOLO_CONF=core.piccolo_conf PHONGDICH_PLUGINS=$name piccolo migrations new $name --auto
"""

INIT = '''\
"""$name: $what.

This module only wires the plugin into phongdich with hookimpls; the work is
done in the modules named for it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from core import PluginSettings, Role, hookimpl
from core.principal import EPIDEMIOLOGIST, NATIONAL_ADMIN, PROVINCE_ADMIN

if TYPE_CHECKING:
    from core.settings import Settings
$province_imports
$province_declaration
NAME = "$name"
LIST_NOTICES = "$name.notice.list"


@hookimpl
def register_settings() -> PluginSettings:
    from $package.settings import Settings

    return PluginSettings(name=NAME, struct=Settings)


@hookimpl
def register_piccolo_apps() -> list[str]:
    return ["$package.piccolo_app"]


@hookimpl
def register_roles() -> list[Role]:
    # Roles of the same name merge their grants; their scope (province, national) narrows them.
    return [
        Role(name=EPIDEMIOLOGIST, scope="province", grants=frozenset({LIST_NOTICES})),
        Role(name=PROVINCE_ADMIN, scope="province", grants=frozenset({LIST_NOTICES})),
        Role(name=NATIONAL_ADMIN, scope="national", grants=frozenset({"$name.*"})),
    ]


@hookimpl
def register_routes(settings: Settings) -> list[Any]:
    from $package.routes import ROUTES

    return list(ROUTES)
$province_hooks'''

PROVINCE_IMPORTS = """\
    from plugins.checkin.declarations import Question
    from plugins.checkin.venues import VenueFacts
"""

PROVINCE_DECLARATION = """\
# A province plugin: hooks called for another province leave it out, and its province admin
# switches it on and off (PUT /api/admin/province-plugins/$name, `phongdich province-plugins`).
PROVINCE = "$home"
"""

PROVINCE_HOOKS = """\


@hookimpl
def checkin_declaration_questions(venue: VenueFacts) -> list[Question]:
    # Called for the venue's province only: venues elsewhere never show this question.
    from $package.declarations import questions

    return questions()
"""

DECLARATIONS = '''\
"""The question this province adds to the national health declaration at its venues."""

from __future__ import annotations

from plugins.checkin.declarations import Question

RETURNED = "$name.returned_from_outbreak"


def questions() -> list[Question]:
    # Ids must be new: prefix them with the plugin's name.
    return [
        Question(
            id=RETURNED,
            kind="yes_no",
            text_vi="Trong 14 ngày qua, bạn có trở về từ tỉnh, thành phố đang có dịch không?",
            text_en="In the past 14 days, have you come back from a province with an outbreak?",
            risk=RETURNED,
        )
    ]
'''

SETTINGS = '''\
"""The settings section ``[plugin.$name]`` (or ``PHONGDICH_PLUGIN__<NAME>__<FIELD>`` variables)."""

from __future__ import annotations

from typing import Annotated

import msgspec


class Settings(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    # A wrong value stops phongdich at start-up with a message naming plugin.$name.page_size.
    page_size: Annotated[int, msgspec.Meta(ge=1, le=500)] = 50
'''

TABLES = '''\
"""The plugin's tables (a plugin never alters another plugin's tables)."""

from __future__ import annotations

from piccolo.columns import UUID, Timestamptz, Varchar
from piccolo.table import Table


class Notice(Table, tablename="${name}_notice"):
    """A notice to the health staff of one province."""

    id = UUID(primary_key=True)
    province = Varchar(length=2, index=True)
    title = Varchar(length=200)
    created_at = Timestamptz()


TABLES = (Notice,)
'''

SCHEMAS = '''\
"""Response bodies of the plugin's API."""

from __future__ import annotations

from datetime import datetime

import msgspec


class NoticeView(msgspec.Struct, frozen=True):
    id: str
    province: str
    title: str
    created_at: datetime
'''

ROUTES = '''\
"""The plugin's API, mounted under ``/api/$name``."""

from __future__ import annotations

from core.web.guard import PlatformDep, PrincipalDep
from litestar import get

from $package import LIST_NOTICES, NAME
from $package.schemas import NoticeView
from $package.tables import Notice


@get("/notices", opt={"action": LIST_NOTICES}, tags=[NAME], summary="Notices I may read, newest first")
async def list_notices(principal: PrincipalDep, platform: PlatformDep) -> list[NoticeView]:
    # The guard has checked the action; the rows are narrowed to the caller's provinces in SQL.
    scope = await platform.access.scope(principal, LIST_NOTICES)
    page_size = platform.plugin_config(NAME).page_size
    query = Notice.select().order_by(Notice.created_at, ascending=False).limit(page_size)
    clause = scope.where(province=Notice.province)
    if clause is not None:
        query = query.where(clause)
    return [
        NoticeView(id=str(row["id"]), province=row["province"], title=row["title"], created_at=row["created_at"])
        for row in await query
    ]


ROUTES = [list_notices]
'''

PICCOLO_APP = '''\
"""The plugin's Piccolo app: its tables and migrations, built on phongdich's core app."""

import os

from piccolo.conf.apps import AppConfig

from $package.tables import TABLES

APP_CONFIG = AppConfig(
    app_name="$name",
    migrations_folder_path=os.path.join(os.path.dirname(__file__), "piccolo_migrations"),
    table_classes=list(TABLES),
    migration_dependencies=["core.piccolo_app"],
    commands=[],
)
'''

MIGRATION = '''\
"""Create the ${name}_notice table (as `piccolo migrations new $name --auto` would)."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.columns.column_types import UUID, Timestamptz, Varchar
from piccolo.columns.defaults.timestamptz import TimestamptzNow
from piccolo.columns.defaults.uuid import UUID4
from piccolo.columns.indexes import IndexMethod

ID = "$migration_id"
VERSION = "$piccolo_version"
DESCRIPTION = "notices"

COMMON = {
    "null": False,
    "unique": False,
    "index_method": IndexMethod.btree,
    "choices": None,
    "db_column_name": None,
    "secret": False,
}
COLUMNS = (
    ("id", UUID, {"default": UUID4(), "primary_key": True, "index": False}),
    ("province", Varchar, {"length": 2, "default": "", "primary_key": False, "index": True}),
    ("title", Varchar, {"length": 200, "default": "", "primary_key": False, "index": False}),
    ("created_at", Timestamptz, {"default": TimestamptzNow(), "primary_key": False, "index": False}),
)


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="$name", description=DESCRIPTION)
    manager.add_table(class_name="Notice", tablename="${name}_notice", schema=None, columns=None)
    for name, column_class, params in COLUMNS:
        manager.add_column(
            table_class_name="Notice",
            tablename="${name}_notice",
            column_name=name,
            db_column_name=name,
            column_class_name=column_class.__name__,
            column_class=column_class,
            params={**COMMON, **params},
            schema=None,
        )
    return manager
'''

CONFTEST = '''\
"""phongdich's testing kit: fixtures ``phongdich_app``, ``phongdich_client``, ``phongdich_databases``..."""

import pytest

pytest_plugins = ["core.pytest_plugin"]


@pytest.fixture
def phongdich_plugins():
    """The plugins the test app loads besides the national ones."""
    return ["$name"]
'''

TESTS = '''\
"""Tests of $name with phongdich's testing kit: a fresh database and a started app per test.

SQLite by default; PostgreSQL with PHONGDICH_TEST_DATABASE=postgresql://postgres@127.0.0.1:5432.
"""

import uuid
from datetime import UTC, datetime, timedelta

from $package import NAME
from $package.tables import Notice

HOME = "$home"
OTHER = "$other"


async def add_notice(province, title, minutes_ago=0):
    created = datetime.now(UTC) - timedelta(minutes=minutes_ago)
    await Notice.insert(Notice(id=uuid.uuid4(), province=province, title=title, created_at=created))


async def test_the_plugin_is_loaded_with_its_settings_section(phongdich_app):
    info = phongdich_app.platform.plugins[NAME]
    assert info.province $province_assert
    assert {"register_routes", "register_piccolo_apps", "register_settings"} <= set(info.hooks)
    assert phongdich_app.platform.plugin_config(NAME).page_size == 50


async def test_officers_read_the_notices_of_their_own_province(phongdich_app):
    await add_notice(HOME, "Older notice", minutes_ago=5)
    await add_notice(HOME, "Newer notice")
    await add_notice(OTHER, "Another province's notice")
    officer = await phongdich_app.actor("epidemiologist", province=HOME)

    answer = await phongdich_app.client.get(f"/api/{NAME}/notices", headers=officer.headers)

    assert answer.status_code == 200, answer.text
    assert [notice["title"] for notice in answer.json()] == ["Newer notice", "Older notice"]
    admin = await phongdich_app.actor("national_admin")
    everything = await phongdich_app.client.get(f"/api/{NAME}/notices", headers=admin.headers)
    assert len(everything.json()) == 3


async def test_page_size_comes_from_the_settings(phongdich_app_factory, phongdich_plugins):
    app = await phongdich_app_factory(plugins=phongdich_plugins, plugin={NAME: {"page_size": 1}})
    await add_notice(HOME, "One")
    await add_notice(HOME, "Two")
    admin = await app.actor("national_admin")
    answer = await app.client.get(f"/api/{NAME}/notices", headers=admin.headers)
    assert len(answer.json()) == 1


async def test_strangers_and_citizens_may_not_read_notices(phongdich_app):
    assert (await phongdich_app.client.get(f"/api/{NAME}/notices")).status_code == 401
    citizen = await phongdich_app.actor("citizen")
    answer = await phongdich_app.client.get(f"/api/{NAME}/notices", headers=citizen.headers)
    assert answer.status_code == 403
'''

PROVINCE_TESTS = """

async def test_the_question_is_asked_at_this_provinces_venues_only(phongdich_app):
    from plugins.checkin.declarations import questionnaire_for
    from plugins.checkin.venues import VenueFacts

    from $package.declarations import RETURNED

    def venue(province):
        return VenueFacts(
            id=str(uuid.uuid4()),
            name="Chợ phường",
            province=province,
            district="001",
            ward="00001",
            venue_type="market",
            capacity=200,
            site="market-1",
            default_stay_minutes=30,
        )

    here = await questionnaire_for(phongdich_app.platform, venue(HOME))
    elsewhere = await questionnaire_for(phongdich_app.platform, venue(OTHER))
    assert RETURNED in [question.id for question in here.questions]
    assert RETURNED not in [question.id for question in elsewhere.questions]
"""
