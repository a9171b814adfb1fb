"""``phongdich new-plugin`` and the plugin author's kit (``core.pytest_plugin``).

The last test does what a plugin author does, from a fresh virtual
environment outside the repository: install phongdich, scaffold a province
plugin, pip-install it, name it in the settings, ``phongdich migrate``,
``phongdich serve`` (its route answers), and run the generated tests.
"""

from __future__ import annotations

import ast
import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
import tomllib
import uuid
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest
from click.testing import CliRunner

import core
from core import pytest_plugin as kit
from core.cli import Context, cli
from core.errors import InvalidInput
from core.scaffold import new_plugin
from core.testing import TEST_PASSWORD, TEST_SECRET, TestDatabases

# The kit's fixtures, as `pytest_plugins = ["core.pytest_plugin"]` gives them to plugin authors.
phongdich_app = kit.phongdich_app
phongdich_app_factory = kit.phongdich_app_factory
phongdich_plugins = kit.phongdich_plugins
phongdich_settings = kit.phongdich_settings

REPO = Path(core.__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def phongdich_databases(databases: TestDatabases) -> TestDatabases:
    return databases


# -- the scaffold ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "province", "why"),
    [
        ("Hanoi", None, "name: 'Hanoi' will not do"),
        ("ab", None, "name: 'ab' will not do"),
        ("hanoi__markets", None, "will not do"),
        ("hanoi-markets", None, "will not do"),
        ("markets_", None, "will not do"),
        ("checkin", None, "name: 'checkin' is taken"),
        ("core", None, "is taken"),
        ("class", None, "is taken"),
        ("markets", "1", "province: '1' is not a two-digit province code"),
        ("markets", "ab", "is not a two-digit province code"),
        ("markets", "99", "province: no province has code 99"),
    ],
)
def test_bad_names_and_provinces_are_refused_naming_them(tmp_path: Path, name: str, province: str | None, why: str):
    with pytest.raises(InvalidInput, match=why.replace("(", r"\(")):
        new_plugin(name, province=province, output=tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_an_existing_project_is_never_overwritten(tmp_path: Path):
    first = new_plugin("markets", output=tmp_path)
    mine = first.root / "phongdich_markets" / "routes.py"
    mine.write_text("# my own work\n")
    with pytest.raises(InvalidInput, match=r"output: .* already exists"):
        new_plugin("markets", province="01", output=tmp_path)
    assert mine.read_text() == "# my own work\n"


def test_the_command_writes_the_package_and_says_what_next(tmp_path: Path, databases: TestDatabases):
    settings = databases.settings(f"sqlite:///{tmp_path / 'unused.sqlite3'}")
    done = CliRunner().invoke(
        cli, ["new-plugin", "hanoi_markets", "--province", "01", "--output", str(tmp_path)], obj=Context(settings)
    )
    assert done.exit_code == 0, done.output
    assert f"Wrote {tmp_path / 'phongdich-hanoi-markets'} (province plugin of 01" in done.output
    assert "export PHONGDICH_PLUGINS=hanoi_markets" in done.output
    refused = CliRunner().invoke(cli, ["new-plugin", "hanoi_markets", "--province", "99"], obj=Context(settings))
    assert refused.exit_code == 1
    assert "Error: province: no province has code 99" in refused.output


@pytest.mark.parametrize("province", [None, "79"])
def test_the_generated_package_is_complete(tmp_path: Path, province: str | None):
    made = new_plugin("city_notices", province=province, output=tmp_path)
    root = made.root
    project = tomllib.loads((root / "pyproject.toml").read_text())
    assert project["project"]["name"] == "phongdich-city-notices"
    assert project["project"]["entry-points"]["phongdich.plugins"] == {"city_notices": "phongdich_city_notices"}
    assert project["project"]["dependencies"] == [f"phongdich>={_phongdich_version()}"]

    package = root / "phongdich_city_notices"
    migrations = sorted(p.name for p in (package / "piccolo_migrations").glob("city_notices_*.py"))
    assert len(migrations) == 1
    for path in made.files:
        if path.suffix == ".py":
            ast.parse(path.read_text(), filename=str(path))  # every module is valid Python
    init = (package / "__init__.py").read_text()
    assert ('PROVINCE = "79"' in init) is (province is not None)
    assert ("checkin_declaration_questions" in init) is (province is not None)
    assert (package / "declarations.py").exists() is (province is not None)
    assert 'pytest_plugins = ["core.pytest_plugin"]' in (root / "tests" / "conftest.py").read_text()

    ruff = Path(sys.executable).with_name("ruff")
    if not ruff.exists():
        pytest.skip("ruff is not installed here (it comes with phongdich[dev])")
    for check in (["check", "--select", "E,F,W,I,B,UP,RUF", "."], ["format", "--check", "."]):
        linted = subprocess.run([str(ruff), *check], cwd=root, capture_output=True, text=True, timeout=120)
        assert linted.returncode == 0, linted.stdout + linted.stderr


# -- the kit ---------------------------------------------------------------------------------------


async def test_the_kit_gives_a_working_principal_of_every_role(phongdich_app):
    actors = await phongdich_app.actors(province="48")
    assert (
        set(actors)
        == set(phongdich_app.roles)
        >= {
            "national_admin",
            "province_admin",
            "epidemiologist",
            "venue_operator",
            "sample_collector",
            "lab_technician",
            "vaccinator",
            "citizen",
            "device",
        }
    )
    registry = phongdich_app.platform.roles
    for role, actor in actors.items():
        me = await phongdich_app.client.get("/api/me", headers=actor.headers)
        # Signed in as that role: the platform knows them, and lets them read /api/me if the role grants it.
        assert me.status_code == (200 if registry.grants(registry.get(role), "core.me.read") else 403), (role, me.text)
        assert role in actor.principal.roles
        scope = registry.get(role).scope
        assert actor.principal.province == ("48" if scope in ("province", "site", "lab") else None), role
    assert actors["lab_technician"].principal.lab == "lab-48-1"
    assert actors["citizen"].subject_id and actors["citizen"].phone.startswith("+84")
    # The same principal on every call, a new one on request.
    assert (await phongdich_app.actor("epidemiologist", province="48")) is actors["epidemiologist"]
    assert (await phongdich_app.citizen()).subject_id != actors["citizen"].subject_id
    with pytest.raises(LookupError, match="unknown role 'nurse'"):
        await phongdich_app.actor("nurse")


async def test_the_kit_builds_apps_with_the_plugins_and_settings_asked_for(phongdich_app_factory):
    plain = await phongdich_app_factory()
    hanoi = await phongdich_app_factory(plugins=["hanoi"], plugin={"hanoi": {"sms_brandname": "HN"}})
    assert "hanoi" not in plain.platform.plugins
    assert hanoi.platform.plugin_config("hanoi").sms_brandname == "HN"
    assert plain.platform.settings.database_url != hanoi.platform.settings.database_url
    worker = await phongdich_app_factory(worker_of=hanoi)
    assert worker.platform is not hanoi.platform
    assert worker.platform.settings.database_url == hanoi.platform.settings.database_url
    assert (await worker.client.get("/api/hanoi/sms/summary")).status_code == 401


# -- from a fresh virtual environment ------------------------------------------------------------------


def test_a_scaffolded_plugin_installs_migrates_serves_and_passes_its_tests(
    tmp_path_factory: pytest.TempPathFactory, empty_database: str
):
    if not (REPO / "pyproject.toml").exists():
        pytest.skip("phongdich is installed without its source tree; this test builds it from source")
    root = tmp_path_factory.mktemp("author")
    python = fresh_environment(root)
    work = root / "work"
    work.mkdir()
    env = {key: value for key, value in os.environ.items() if not key.startswith("PHONGDICH_")}
    env.update(
        PHONGDICH_DATABASE_URL=empty_database,
        PHONGDICH_SECRET_KEY=TEST_SECRET,
        PHONGDICH_LOG_FORMAT="json",
        PHONGDICH_LOG_LEVEL="warning",
    )
    env.pop("PYTHONPATH", None)

    def run(*args: str, cwd: Path = work, stdin: str | None = None, extra: dict[str, str] | None = None) -> str:
        done = subprocess.run(
            list(args),
            cwd=cwd,
            env={**env, **(extra or {})},
            input=stdin,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        assert done.returncode == 0, f"{' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"
        return done.stdout

    bin_dir = python.parent
    phongdich = str(bin_dir / "phongdich")
    pip = [str(python), "-m", "pip", "install", "--quiet", "--no-build-isolation", "--no-index"]
    pip.append("--disable-pip-version-check")
    run(*pip, str(copy_of_source(root)))
    run(phongdich, "new-plugin", "hanoi_markets", "--province", "01", "--output", str(work))
    run(phongdich, "new-plugin", "city_notices", "--output", str(work))
    for project in ("phongdich-hanoi-markets", "phongdich-city-notices"):
        run(*pip, str(work / project))
    where = run(str(python), "-c", "import core, phongdich_hanoi_markets as p; print(core.__file__); print(p.__file__)")
    assert all(line.startswith(str(root / "venv")) for line in where.split()), where

    enabled = {"PHONGDICH_PLUGINS": "hanoi_markets"}
    migrated = run(phongdich, "migrate", extra=enabled)
    assert "hanoi_markets: applied 1 migration(s)" in migrated, migrated
    listed = run(phongdich, "plugins", extra=enabled)
    assert "hanoi_markets 0.1.0 (province province 01) [plugin.hanoi_markets]" in listed, listed
    assert "city_notices" not in listed  # installed, not named: not loaded
    run(
        phongdich,
        *("users", "create", "--username", "epi01", "--display-name", "Epi", "--role", "epidemiologist"),
        *("--province", "01", "--password-stdin"),
        stdin=TEST_PASSWORD + "\n",
        extra=enabled,
    )

    port = free_port()
    log = root / "serve.log"
    with log.open("w") as output:
        server = subprocess.Popen(
            [phongdich, "serve", "--port", str(port)],
            cwd=work,
            env={**env, **enabled},
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        base = f"http://127.0.0.1:{port}"
        wait_until_healthy(base, server, log)
        with httpx.Client(base_url=base, timeout=30) as client:
            assert client.get("/api/hanoi_markets/notices").status_code == 401
            login = client.post("/api/auth/login", json={"username": "epi01", "password": TEST_PASSWORD})
            assert login.status_code == 201, login.text
            token = login.json()["token"]
            notices = client.get("/api/hanoi_markets/notices", headers={"Authorization": f"Bearer {token}"})
            assert (notices.status_code, notices.json()) == (200, [])
            plugins = {view["name"]: view for view in client.get("/-/plugins").json()}
            assert (plugins["hanoi_markets"]["province"], plugins["hanoi_markets"]["settings_section"]) == (
                "01",
                "plugin.hanoi_markets",
            )
    finally:
        stop(server)

    # The generated tests, on the suite's database server (SQLite files or PostgreSQL).
    test_env = {"PHONGDICH_TEST_DATABASE": os.environ.get("PHONGDICH_TEST_DATABASE", "sqlite")}
    for project, count in (("phongdich-hanoi-markets", 5), ("phongdich-city-notices", 4)):
        tested = run(str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider", cwd=work / project, extra=test_env)
        assert f"{count} passed" in tested, tested


def fresh_environment(root: Path) -> Path:
    """A new virtual environment without phongdich. Its dependencies are this one's, linked, not downloaded."""
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=300)
    python = venv / "bin" / "python"
    here = Path(sysconfig.get_paths()["purelib"])
    linked = root / "dependencies"
    linked.mkdir()
    for entry in here.iterdir():
        if entry.name in ("core", "plugins", "provinces") or entry.name.startswith(("phongdich", "__editable__")):
            continue
        if entry.suffix == ".pth":
            continue
        (linked / entry.name).symlink_to(entry)
    target = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    (Path(target) / "dependencies.pth").write_text(f"{linked}\n")
    return python


def copy_of_source(root: Path) -> Path:
    """The source tree to install from; a copy, so that building leaves nothing in the repository."""
    source = root / "phongdich-source"
    source.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.sqlite3*", "*.egg-info", "build", "keys")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, source / name)
    for package in ("core", "plugins", "provinces"):
        shutil.copytree(REPO / package, source / package, ignore=ignore)
    return source


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_until_healthy(base: str, server: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"phongdich serve exited with {server.returncode}:\n{log.read_text()}")
        try:
            if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    pytest.fail(f"phongdich serve did not answer /healthz:\n{log.read_text()}")


def stop(server: subprocess.Popen[bytes]) -> None:
    """Stop the server and its workers: SIGTERM, then SIGKILL to its own process group if it lingers."""
    server.terminate()
    try:
        server.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait(timeout=30)


@pytest.fixture
def empty_database(databases: TestDatabases, tmp_path: Path) -> Iterator[str]:
    """The URL of a database with no tables at all, as a new deployment starts with."""
    if databases.kind == "sqlite":
        yield f"sqlite:///{tmp_path / 'author.sqlite3'}"
        return
    name = f"phongdich_author_{uuid.uuid4().hex[:10]}"
    server = databases.target.rstrip("/")

    async def admin(sql: str) -> None:
        connection = await asyncpg.connect(f"{server}/postgres")
        try:
            await connection.execute(sql)
        finally:
            await connection.close()

    asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    yield f"{server}/{name}"
    asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def _phongdich_version() -> str:
    from importlib.metadata import version

    return version("phongdich")
