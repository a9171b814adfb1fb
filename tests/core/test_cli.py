"""The ``phongdich`` command line, through click's runner and through the installed script."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import asyncpg
import pytest
from argon2 import PasswordHasher
from click.testing import CliRunner

from core.cli import Context, cli
from core.identity import digest
from core.platform import Platform
from core.settings import Settings
from core.tables import AdminUnit, ApiKey, StaffAccount
from core.testing import TEST_PASSWORD, TEST_SECRET

SCRIPT = Path(sys.executable).with_name("phongdich")


@pytest.fixture
def empty_database(databases, tmp_path):
    """The URL of a database with no tables at all (a new deployment)."""
    if databases.kind == "sqlite":
        yield f"sqlite:///{tmp_path / 'new.sqlite3'}"
        return
    name = f"phongdich_cli_{uuid.uuid4().hex[:10]}"
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


def invoke(settings: Settings, *args: str, input: str | None = None):
    return CliRunner().invoke(cli, list(args), obj=Context(settings), input=input)


def query(settings: Settings, work):
    """Run ``await work()`` against the database of ``settings`` (outside any CLI command)."""

    async def runner():
        platform = Platform(settings)
        await platform.db.start()
        try:
            return await work()
        finally:
            await platform.db.stop()

    return asyncio.run(runner())


def script_env(tmp_path: Path, database_url: str) -> dict[str, str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("PHONGDICH_")}
    environment.update(
        PHONGDICH_DATABASE_URL=database_url,
        PHONGDICH_SECRET_KEY=TEST_SECRET,
        PHONGDICH_LOG_FORMAT="json",
        PHONGDICH_LOG_LEVEL="warning",
    )
    return environment


def test_migrate_creates_everything_then_has_nothing_to_do(empty_database, tmp_path):
    run = subprocess.run(
        [str(SCRIPT), "migrate"],
        cwd=tmp_path,
        env=script_env(tmp_path, empty_database),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    assert "core: applied" in run.stdout
    assert "administrative units loaded" in run.stdout

    settings = Settings(database_url=empty_database, secret_key=TEST_SECRET, run_background_tasks=False)
    assert query(settings, lambda: AdminUnit.exists().where(AdminUnit.code == "01"))
    again = invoke(settings, "migrate")
    assert again.exit_code == 0, again.output
    assert "Done: 0 migration(s) applied" in again.output


def test_commands_refuse_an_unmigrated_database(empty_database):
    settings = Settings(database_url=empty_database, secret_key=TEST_SECRET, run_background_tasks=False)
    result = invoke(settings, "keys", "create", "--name", "x", "--province", "01", "--site", "v")
    assert result.exit_code == 1
    assert "needs migrations" in result.output
    assert "phongdich migrate" in result.output


def test_plugins_lists_the_national_plugins(sync_database):
    settings = sync_database()
    result = invoke(settings, "plugins")
    assert result.exit_code == 0, result.output
    for name in ("checkin", "testing", "vaccination"):
        assert f"{name} " in result.output
    assert "(national)" in result.output
    as_json = invoke(settings, "plugins", "--json")
    names = {plugin["name"]: plugin for plugin in json.loads(as_json.output)}
    assert names["checkin"]["kind"] == "national"
    assert "identify" in names["core.defaults.identity"]["hooks"]


def test_users_create_reads_the_password_from_stdin(sync_database):
    settings = sync_database()
    result = invoke(
        settings,
        "users",
        "create",
        "--username",
        "hn.admin",
        "--display-name",
        "Sở Y tế Hà Nội",
        "--role",
        "province_admin",
        "--province",
        "01",
        "--password-stdin",
        input=TEST_PASSWORD + "\n",
    )
    assert result.exit_code == 0, result.output
    assert "Created hn.admin (province_admin)" in result.output
    row = query(settings, lambda: StaffAccount.select().where(StaffAccount.username == "hn.admin").first())
    assert row["province"] == "01"
    assert row["password_hash"].startswith("$argon2")

    # The same name again, a short password, a scoped role without its province: clear errors, exit 1.
    for args, stdin, expected in (
        (["--username", "hn.admin", "--role", "province_admin", "--province", "01"], TEST_PASSWORD, "taken"),
        (["--username", "x.short", "--role", "national_admin"], "short", "password: use at least 12"),
        (["--username", "x.noprov", "--role", "epidemiologist"], TEST_PASSWORD, "province: role 'epidemiologist'"),
    ):
        failed = invoke(settings, "users", "create", "--display-name", "x", "--password-stdin", *args, input=stdin)
        assert failed.exit_code == 1, failed.output
        assert expected in failed.output


def test_keys_create_shows_the_key_once_and_stores_its_hash(sync_database):
    settings = sync_database()
    result = invoke(settings, "keys", "create", "--name", "Lab system", "--province", "79", "--site", "venue-1")
    assert result.exit_code == 0, result.output
    key = next(line for line in result.output.splitlines() if line.startswith("pdk_"))
    row = query(settings, lambda: ApiKey.select().where(ApiKey.key_hash == digest(key)).first())
    assert row is not None and row["province"] == "79" and row["created_by"] == "cli"
    revoked = invoke(settings, "keys", "revoke", str(row["id"]))
    assert "Revoked." in revoked.output
    assert "No active key" in invoke(settings, "keys", "revoke", str(row["id"])).output


def test_messages_list_shows_the_outbox(sync_database):
    async def send_code(platform: Platform) -> None:
        await platform.identity.request_otp("0912345678", "cli-test")

    settings = sync_database(send_code)
    result = invoke(settings, "messages", "list", "--recipient", "+84912345678")
    assert result.exit_code == 0, result.output
    assert "sms +84912345678 [core.otp]" in result.output
    assert "Your phongdich code is" in result.output
    assert "1 message(s)." in result.output
    assert "0 message(s)." in invoke(settings, "messages", "list", "--recipient", "+84900000000").output


def test_config_show_redacts_secrets(sync_database):
    settings = sync_database()
    result = invoke(settings, "config", "show")
    assert result.exit_code == 0, result.output
    assert TEST_SECRET not in result.output
    assert '"secret_key": "***"' in result.output


def test_demo_is_idempotent(sync_database):
    settings = sync_database()
    first = invoke(settings, "demo")
    assert first.exit_code == 0, first.output
    assert "Demo ready" in first.output
    count = query(settings, StaffAccount.count)
    assert count > 0
    second = invoke(settings, "demo")
    assert second.exit_code == 0, second.output
    assert "0 created" in second.output
    assert query(settings, StaffAccount.count) == count
    # Every run prints a fresh password that works for the demo accounts.
    password = second.output.split("all with password ", 1)[1].split()[0]
    row = query(settings, lambda: StaffAccount.select().where(StaffAccount.username == "moh.admin").first())
    assert PasswordHasher().verify(row["password_hash"], password)


def test_script_reports_a_wrong_setting_by_name(tmp_path):
    environment = script_env(tmp_path, "sqlite:///x.sqlite3")
    environment["PHONGDICH_OTP_MAX_ATTEMPTS"] = "several"
    run = subprocess.run(
        [str(SCRIPT), "config", "show"], cwd=tmp_path, env=environment, capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 2
    assert "otp_max_attempts" in run.stderr
    assert "Traceback" not in run.stderr
