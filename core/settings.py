"""Settings: one msgspec Struct, read from ``PHONGDICH_*`` variables and a TOML file.

Precedence: environment > TOML file > defaults. The TOML file is
``$PHONGDICH_CONFIG`` or ``phongdich.toml`` in the working folder if present.
Plugin sections live under ``[plugin.<name>]`` (or
``PHONGDICH_PLUGIN__<NAME>__<FIELD>``) and are validated by the Struct the
plugin declares through ``register_settings``. A wrong value raises
``SettingsError`` naming the setting; secrets are redacted by ``redacted()``.
"""

from __future__ import annotations

import os
import secrets
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit, urlunsplit

import msgspec

ENV_PREFIX = "PHONGDICH_"
SECRET_FIELDS = frozenset({"secret_key", "previous_secret_keys"})
REDACTED = "***"
# PHONGDICH_* variables that are read elsewhere, not settings.
NOT_SETTINGS = frozenset({f"{ENV_PREFIX}CONFIG", f"{ENV_PREFIX}TEST_DATABASE"})

Minutes = Annotated[int, msgspec.Meta(ge=1, le=60 * 24 * 365)]
Count = Annotated[int, msgspec.Meta(ge=1, le=1_000_000)]


class SettingsError(ValueError):
    """A setting is missing or wrong; the message names it and says how to fix it."""


class PluginSettings(msgspec.Struct, frozen=True):
    """A plugin's settings section: its name and the Struct that validates it."""

    name: str
    struct: type[msgspec.Struct]


class Settings(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Every core setting, with its default.

    Field ``x`` is read from ``PHONGDICH_X``. Lists are comma-separated in the
    environment.
    """

    database_url: str = "sqlite:///phongdich.sqlite3"
    replica_urls: list[str] = msgspec.field(default_factory=list)
    database_pool_size: Annotated[int, msgspec.Meta(ge=1, le=500)] = 10
    redis_url: str | None = None
    secret_key: str = ""
    secret_key_file: str | None = None
    # Rotation: tokens name the key version that signed them (core.signing).
    secret_key_version: Annotated[int, msgspec.Meta(ge=1, le=999_999)] = 1
    previous_secret_keys: list[Annotated[str, msgspec.Meta(pattern=r"^[0-9]{1,6}:.{32,}$")]] = msgspec.field(
        default_factory=list
    )
    base_url: str = "http://127.0.0.1:8000"
    plugins: list[str] = msgspec.field(default_factory=list)
    admin_units_file: str | None = None
    log_format: Literal["auto", "json", "console"] = "auto"
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    trace_hooks: bool = False
    debug: bool = False
    epidemic_declared: bool = True
    token_ttl_minutes: Minutes = 12 * 60
    citizen_token_ttl_minutes: Minutes = 30 * 24 * 60
    otp_ttl_minutes: Minutes = 10
    otp_max_attempts: Count = 5
    otp_per_phone_per_hour: Count = 5
    otp_per_client_per_hour: Count = 30
    login_per_client_per_hour: Count = 60
    plugin_state_ttl_seconds: Annotated[float, msgspec.Meta(ge=0, le=3600)] = 2.0
    # How long a worker trusts a bearer token or API key it has looked up; a revocation
    # takes effect at once in the worker that made it and within this time in the others.
    credential_cache_seconds: Annotated[float, msgspec.Meta(ge=0, le=300)] = 5.0
    event_max_attempts: Count = 12
    run_background_tasks: bool = True
    plugin: dict[str, dict[str, Any]] = msgspec.field(default_factory=dict)

    def __post_init__(self) -> None:
        scheme = urlsplit(self.database_url).scheme
        if scheme not in ("sqlite", "postgres", "postgresql"):
            raise SettingsError(
                f"database_url: unsupported scheme {scheme!r}; use sqlite:///path.sqlite3 "
                "or postgresql://user@host:5432/dbname"
            )

    @property
    def database_kind(self) -> Literal["sqlite", "postgres"]:
        return "sqlite" if self.database_url.startswith("sqlite") else "postgres"

    def plugin_section(self, name: str) -> dict[str, Any]:
        return self.plugin.get(name, {})

    def redacted(self) -> dict[str, Any]:
        """The settings as a dict that is safe to print or log."""
        data = msgspec.to_builtins(self)
        for key in SECRET_FIELDS:
            if data.get(key):
                data[key] = REDACTED
        data["database_url"] = _redact_url(self.database_url)
        data["replica_urls"] = [_redact_url(u) for u in self.replica_urls]
        if self.redis_url:
            data["redis_url"] = _redact_url(self.redis_url)
        return data

    def __repr__(self) -> str:
        return f"Settings({self.redacted()!r})"


def load_settings(env: dict[str, str] | None = None, toml_path: str | Path | None = None, **overrides: Any) -> Settings:
    """Read settings from a TOML file, the environment and ``overrides`` (highest first).

    Raises ``SettingsError`` naming the first wrong setting.
    """
    env = dict(os.environ if env is None else env)
    raw: dict[str, Any] = {}
    path = toml_path or env.get(f"{ENV_PREFIX}CONFIG")
    if path is None and Path("phongdich.toml").is_file():
        path = "phongdich.toml"
    if path is not None:
        raw.update(_read_toml(Path(path)))
    _merge_env(raw, env)
    raw.update(overrides)
    try:
        settings = msgspec.convert(raw, Settings, strict=False)
    except msgspec.ValidationError as exc:
        raise SettingsError(f"invalid setting: {_name_setting(str(exc))}") from exc
    settings.secret_key = _secret_key(settings)
    return settings


def validate_plugin_sections(settings: Settings, sections: list[PluginSettings]) -> dict[str, Any]:
    """Validate each plugin's section with its Struct; unknown sections are an error too."""
    validated: dict[str, Any] = {}
    declared = {section.name for section in sections}
    for section in sections:
        raw = settings.plugin_section(section.name)
        try:
            validated[section.name] = msgspec.convert(raw, section.struct, strict=False)
        except msgspec.ValidationError as exc:
            message = (
                str(exc).replace("$.", f"plugin.{section.name}.").replace(" - at `$`", f" - in plugin.{section.name}")
            )
            if f"plugin.{section.name}" not in message:
                # msgspec gives no path for an unknown field at the top of the section.
                message = f"plugin.{section.name}: {message}"
            raise SettingsError(f"invalid setting: {message}") from exc
    unknown = sorted(set(settings.plugin) - declared)
    if unknown:
        raise SettingsError(
            f"settings name plugin section(s) {', '.join('plugin.' + u for u in unknown)} "
            "but no loaded plugin declares them; check the spelling or PHONGDICH_PLUGINS."
        )
    return validated


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError as exc:
        raise SettingsError(f"settings file {path} does not exist (PHONGDICH_CONFIG)") from exc
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"settings file {path} is not valid TOML: {exc}") from exc


def _merge_env(raw: dict[str, Any], env: dict[str, str]) -> None:
    fields = {f.name: f for f in msgspec.structs.fields(Settings)}
    for key, value in env.items():
        if not key.startswith(ENV_PREFIX) or key in NOT_SETTINGS:
            continue
        name = key[len(ENV_PREFIX) :].lower()
        if name.startswith("plugin__"):
            parts = name.split("__")
            if len(parts) != 3 or not all(parts):
                raise SettingsError(f"{key}: use PHONGDICH_PLUGIN__<NAME>__<FIELD>")
            raw.setdefault("plugin", {}).setdefault(parts[1], {})[parts[2]] = value
            continue
        if name not in fields:
            raise SettingsError(
                f"{key} is not a phongdich setting; known: "
                + ", ".join(ENV_PREFIX + n.upper() for n in sorted(fields) if n != "plugin")
            )
        if name in ("plugins", "replica_urls", "previous_secret_keys"):
            raw[name] = [item.strip() for item in value.split(",") if item.strip()]
        elif value == "" and fields[name].default is None:
            raw[name] = None
        else:
            raw[name] = value


def _name_setting(message: str) -> str:
    # msgspec says "Expected `int`, got `str` - at `$.token_ttl_minutes`".
    if "- at `$." in message:
        head, _, path = message.rpartition(" - at `$.")
        return f"{path.rstrip('`')}: {head}"
    return message


def _secret_key(settings: Settings) -> str:
    if settings.secret_key:
        key = settings.secret_key
    elif settings.secret_key_file:
        try:
            key = Path(settings.secret_key_file).read_text().strip()
        except OSError as exc:
            raise SettingsError(f"secret_key_file: cannot read {settings.secret_key_file}: {exc}") from exc
    elif settings.database_kind == "sqlite":
        # The embedded default needs no setup: keep a generated key beside the database.
        local = Path(".phongdich-secret")
        if not local.exists():
            local.write_text(secrets.token_urlsafe(48))
            local.chmod(0o600)
        key = local.read_text().strip()
    else:
        raise SettingsError(
            "secret_key: set PHONGDICH_SECRET_KEY or PHONGDICH_SECRET_KEY_FILE "
            "(at least 32 characters) when running on PostgreSQL"
        )
    if len(key) < 32:
        raise SettingsError("secret_key: must be at least 32 characters long")
    return key


def _redact_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", f":{REDACTED}@")
        return urlunsplit(parts._replace(netloc=netloc))
    return url
