"""Settings: environment, TOML, precedence, errors that name the setting, plugin sections, secrets."""

from __future__ import annotations

import stat

import pytest

from core.platform import Platform
from core.settings import SettingsError, load_settings
from tests.core.example_plugins.settings_plugin import GatewaySettings, SmsGateway

KEY = "k" * 40
SQLITE = "sqlite:///settings-test.sqlite3"


def env(**values: str) -> dict[str, str]:
    """PHONGDICH_* variables from keyword arguments, with a secret key unless one is given."""
    variables = {"PHONGDICH_SECRET_KEY": KEY, "PHONGDICH_DATABASE_URL": SQLITE}
    variables.update({f"PHONGDICH_{name.upper()}": value for name, value in values.items()})
    return variables


def test_defaults_without_anything(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    settings = load_settings(env={})
    assert settings.database_kind == "sqlite"
    assert settings.plugins == []
    assert settings.otp_max_attempts == 5
    assert settings.epidemic_declared is True


def test_environment_is_parsed_into_types(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    settings = load_settings(
        env=env(
            plugins="hanoi, saigon,,danang ",
            replica_urls="postgresql://r1/db,postgresql://r2/db",
            otp_ttl_minutes="7",
            trace_hooks="true",
            epidemic_declared="false",
            plugin_state_ttl_seconds="0.5",
            redis_url="",
            log_level="debug",
        )
    )
    assert settings.plugins == ["hanoi", "saigon", "danang"]
    assert settings.replica_urls == ["postgresql://r1/db", "postgresql://r2/db"]
    assert settings.otp_ttl_minutes == 7
    assert settings.trace_hooks is True
    assert settings.epidemic_declared is False
    assert settings.plugin_state_ttl_seconds == 0.5
    assert settings.redis_url is None
    assert settings.log_level == "debug"


def test_plugin_sections_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    settings = load_settings(
        env={**env(), "PHONGDICH_PLUGIN__GATEWAY__SENDER": "BYT", "PHONGDICH_PLUGIN__GATEWAY__MAX_PER_MINUTE": "5"}
    )
    assert settings.plugin == {"gateway": {"sender": "BYT", "max_per_minute": "5"}}
    with pytest.raises(SettingsError, match="PHONGDICH_PLUGIN__GATEWAY: use PHONGDICH_PLUGIN__<NAME>__<FIELD>"):
        load_settings(env={**env(), "PHONGDICH_PLUGIN__GATEWAY": "x"})


def test_toml_file_and_precedence(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = tmp_path / "site.toml"
    config.write_text(
        f'secret_key = "{KEY}"\n'
        "otp_ttl_minutes = 3\n"
        "otp_max_attempts = 4\n"
        'plugins = ["hanoi"]\n'
        "[plugin.gateway]\n"
        'sender = "SYT-HN"\n'
    )
    from_file = load_settings(env={}, toml_path=config)
    assert (from_file.otp_ttl_minutes, from_file.otp_max_attempts, from_file.plugins) == (3, 4, ["hanoi"])
    assert from_file.plugin == {"gateway": {"sender": "SYT-HN"}}
    assert from_file.otp_per_phone_per_hour == 5  # untouched: the default

    # The environment beats the file, and explicit overrides beat both.
    mixed = load_settings(env={"PHONGDICH_OTP_TTL_MINUTES": "8"}, toml_path=config, otp_max_attempts=9)
    assert (mixed.otp_ttl_minutes, mixed.otp_max_attempts) == (8, 9)

    # PHONGDICH_CONFIG names the file; without it, ./phongdich.toml is read.
    assert load_settings(env={"PHONGDICH_CONFIG": str(config)}).otp_ttl_minutes == 3
    (tmp_path / "phongdich.toml").write_text(f'secret_key = "{KEY}"\notp_ttl_minutes = 11\n')
    assert load_settings(env={}).otp_ttl_minutes == 11


def test_bad_toml_and_missing_file_are_named(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    broken = tmp_path / "broken.toml"
    broken.write_text("otp_ttl_minutes = = 3\n")
    with pytest.raises(SettingsError, match=r"broken\.toml is not valid TOML"):
        load_settings(env={}, toml_path=broken)
    with pytest.raises(SettingsError, match=r"absent\.toml does not exist"):
        load_settings(env={"PHONGDICH_CONFIG": str(tmp_path / "absent.toml")})


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("otp_ttl_minutes", "ten"),
        ("otp_ttl_minutes", "0"),
        ("otp_max_attempts", "-1"),
        ("log_level", "loud"),
        ("trace_hooks", "maybe"),
        ("database_pool_size", "100000"),
        ("plugin_state_ttl_seconds", "-2"),
    ],
)
def test_wrong_value_names_the_setting(tmp_path, monkeypatch, name, value):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SettingsError) as caught:
        load_settings(env=env(**{name: value}))
    assert str(caught.value).startswith(f"invalid setting: {name}:"), str(caught.value)


def test_wrong_value_in_toml_names_the_setting(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = tmp_path / "phongdich.toml"
    config.write_text(f'secret_key = "{KEY}"\nevent_max_attempts = "many"\n')
    with pytest.raises(SettingsError, match="event_max_attempts"):
        load_settings(env={})
    config.write_text(f'secret_key = "{KEY}"\nno_such_setting = 1\n')
    with pytest.raises(SettingsError, match="no_such_setting"):
        load_settings(env={})


def test_unsupported_database_is_named(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SettingsError, match="database_url: unsupported scheme 'mysql'"):
        load_settings(env=env(database_url="mysql://localhost/db"))


def test_unknown_environment_variable_is_named(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SettingsError) as caught:
        load_settings(env=env(otp_ttl="5"))
    message = str(caught.value)
    assert message.startswith("PHONGDICH_OTP_TTL is not a phongdich setting")
    assert "PHONGDICH_OTP_TTL_MINUTES" in message  # the known names help spot the typo
    # Variables of other programs are none of our business.
    assert load_settings(env={**env(), "PATH": "/bin", "PHONGDICHX": "1"}).otp_ttl_minutes == 10


def test_plugin_section_is_validated_by_the_plugins_struct(tmp_path):
    database = f"sqlite:///{tmp_path / 'x.sqlite3'}"
    good = load_settings(
        env={"PHONGDICH_DATABASE_URL": database, "PHONGDICH_PLUGIN__GATEWAY__MAX_PER_MINUTE": "120"}, secret_key=KEY
    )
    platform = Platform(good, extra_plugins=[("gateway", SmsGateway())])
    assert platform.plugin_config("gateway") == GatewaySettings(sender="PHONGDICH", max_per_minute=120)

    for section, field in (({"max_per_minute": "0"}, "max_per_minute"), ({"max_per_minute": "lots"}, "max_per_minute")):
        bad = load_settings(env={"PHONGDICH_DATABASE_URL": database}, secret_key=KEY, plugin={"gateway": section})
        with pytest.raises(SettingsError, match=rf"plugin\.gateway\.{field}"):
            Platform(bad, extra_plugins=[("gateway", SmsGateway())])
    unknown_field = load_settings(
        env={"PHONGDICH_DATABASE_URL": database}, secret_key=KEY, plugin={"gateway": {"x": 1}}
    )
    with pytest.raises(SettingsError, match=r"plugin\.gateway"):
        Platform(unknown_field, extra_plugins=[("gateway", SmsGateway())])
    # A section that no loaded plugin declares is a typo or a plugin missing from the list.
    orphan = load_settings(env={"PHONGDICH_DATABASE_URL": database}, secret_key=KEY, plugin={"gateways": {}})
    with pytest.raises(SettingsError, match=r"plugin\.gateways"):
        Platform(orphan, extra_plugins=[("gateway", SmsGateway())])


def test_secrets_are_redacted(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    settings = load_settings(
        env=env(
            database_url="postgresql://phongdich:db-password-123@db.internal:5432/phongdich",
            replica_urls="postgresql://reader:replica-password-456@replica:5432/phongdich",
            redis_url="redis://:redis-password-789@cache:6379/0",
        )
    )
    shown = settings.redacted()
    assert shown["secret_key"] == "***"
    assert shown["database_url"] == "postgresql://phongdich:***@db.internal:5432/phongdich"
    assert shown["replica_urls"] == ["postgresql://reader:***@replica:5432/phongdich"]
    assert shown["redis_url"] == "redis://:***@cache:6379/0"
    for text in (repr(settings), str(settings), repr(shown)):
        for secret in (KEY, "db-password-123", "replica-password-456", "redis-password-789"):
            assert secret not in text
    # Redaction is for display only: the settings themselves keep the real values.
    assert settings.secret_key == KEY
    assert "db-password-123" in settings.database_url


def test_postgresql_without_a_secret_key_refuses(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SettingsError, match="secret_key: set PHONGDICH_SECRET_KEY"):
        load_settings(env={"PHONGDICH_DATABASE_URL": "postgresql://postgres@127.0.0.1:5432/x"})
    assert not (tmp_path / ".phongdich-secret").exists()
    with pytest.raises(SettingsError, match="at least 32 characters"):
        load_settings(env={"PHONGDICH_DATABASE_URL": "postgresql://h/x", "PHONGDICH_SECRET_KEY": "short"})


def test_secret_key_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    key_file = tmp_path / "key"
    key_file.write_text(KEY + "\n")
    settings = load_settings(
        env={"PHONGDICH_DATABASE_URL": "postgresql://h/x", "PHONGDICH_SECRET_KEY_FILE": str(key_file)}
    )
    assert settings.secret_key == KEY
    with pytest.raises(SettingsError, match="secret_key_file: cannot read"):
        load_settings(
            env={"PHONGDICH_DATABASE_URL": "postgresql://h/x", "PHONGDICH_SECRET_KEY_FILE": "/nonexistent/key"}
        )


def test_sqlite_without_a_key_keeps_a_generated_one_beside_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    first = load_settings(env={})
    local = tmp_path / ".phongdich-secret"
    assert local.read_text().strip() == first.secret_key
    assert len(first.secret_key) >= 32
    assert stat.S_IMODE(local.stat().st_mode) == 0o600
    assert load_settings(env={}).secret_key == first.secret_key
