"""Loading plugins, and calling hooks with province scoping and fault containment.

``load_plugins`` builds a fresh ``pluggy.PluginManager``: the core's default
plugins, the three national plugins (always), then the province and
third-party plugins that the settings name from the ``phongdich.plugins``
entry-point group. Anything wrong stops start-up with a ``PluginLoadError``
that names the plugin.

``Hooks`` is how the platform calls hooks at run time. It never uses
pluggy's all-or-nothing call: each hookimpl runs on its own, so one failing
plugin is logged and skipped (contributions) or counts as a deny (votes).
Hooks called for a province go through a ``subset_hook_caller`` that leaves
out every other province's plugins, cached per province.
"""

from __future__ import annotations

import importlib
import inspect
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint, entry_points
from types import GeneratorType, ModuleType
from typing import Any

import pluggy
import structlog

from core import hookspecs
from core.access import Vote
from core.markers import PROJECT

log = structlog.get_logger("core.plugins")

ENTRY_POINT_GROUP = "phongdich.plugins"
NATIONAL_PLUGINS: tuple[str, ...] = ("checkin", "testing", "vaccination")
DEFAULT_PLUGINS: tuple[str, ...] = (
    "core.defaults.identity",
    "core.defaults.messages",
)


class PluginLoadError(RuntimeError):
    """A plugin could not be loaded; the message names it and says what to do."""


@dataclass(frozen=True)
class PluginInfo:
    """What ``phongdich plugins`` and ``/-/plugins`` show about a loaded plugin."""

    name: str
    kind: str  # "core", "national", "province", "extension"
    module: str
    version: str
    province: str | None
    hooks: tuple[str, ...] = field(default=())


def load_plugins(
    allowlist: Iterable[str] = (), extra: Iterable[tuple[str, object]] = ()
) -> tuple[pluggy.PluginManager, dict[str, PluginInfo]]:
    """Build a plugin manager with the default, national and allowed plugins.

    ``allowlist`` names entry points of the ``phongdich.plugins`` group to
    load besides the national plugins; installed but not named means not
    loaded. ``extra`` registers already-built plugin objects by name (tests
    and embedding code use it).
    """
    pm = pluggy.PluginManager(PROJECT)
    pm.add_hookspecs(hookspecs)
    installed = {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}

    candidates: list[tuple[str, str, object]] = []
    for module_name in DEFAULT_PLUGINS:
        candidates.append((module_name, "core", importlib.import_module(module_name)))
    for name in NATIONAL_PLUGINS:
        candidates.append((name, "national", _import_plugin(name, installed.get(name))))
    for name in dict.fromkeys(allowlist):
        if name in NATIONAL_PLUGINS:
            continue
        if name not in installed:
            known = ", ".join(sorted(set(installed) - set(NATIONAL_PLUGINS))) or "none"
            raise PluginLoadError(
                f"plugin {name!r} is named in settings (PHONGDICH_PLUGINS) but no package "
                f"provides it in the {ENTRY_POINT_GROUP!r} entry-point group. "
                f"Install it with pip, or remove it from the list. Installed: {known}."
            )
        plugin = _import_plugin(name, installed[name])
        candidates.append((name, _kind_of(plugin), plugin))
    for name, plugin in extra:
        candidates.append((name, _kind_of(plugin), plugin))

    # Every plugin's own specs go in before any hookimpl is registered, so that
    # pluggy checks each hookimpl against its spec at registration time.
    for name, _kind, plugin in candidates:
        for spec_module in _own_hookspecs(plugin):
            try:
                pm.add_hookspecs(spec_module)
            except ValueError as exc:
                raise PluginLoadError(f"plugin {name!r}: bad hook specs: {exc}") from exc

    infos: dict[str, PluginInfo] = {}
    for name, kind, plugin in candidates:
        try:
            pm.register(plugin, name=name)
        except pluggy.PluginValidationError as exc:
            raise PluginLoadError(f"plugin {name!r} has an invalid hook: {exc}") from exc
        except ValueError as exc:
            raise PluginLoadError(f"plugin {name!r} could not be registered: {exc}") from exc
        infos[name] = PluginInfo(
            name=name,
            kind=kind,
            module=getattr(plugin, "__name__", type(plugin).__name__),
            version=_version_of(name, plugin, installed.get(name)),
            province=province_of(plugin),
        )
    _check_pending(pm)
    for name, info in infos.items():
        plugin = pm.get_plugin(name)
        implemented = tuple(sorted(hc.name for hc in pm.get_hookcallers(plugin) or ()))
        infos[name] = PluginInfo(**{**info.__dict__, "hooks": implemented})
    return pm, infos


def province_of(plugin: object) -> str | None:
    """The province code a plugin declares with ``PROVINCE = "01"``, if any."""
    code = getattr(plugin, "PROVINCE", None)
    if code is None:
        return None
    if not isinstance(code, str) or not code.isdigit() or len(code) != 2:
        raise PluginLoadError(
            f"plugin {getattr(plugin, '__name__', plugin)!r} declares PROVINCE={code!r}; "
            "it must be a two-digit province code such as '01'."
        )
    return code


def _import_plugin(name: str, entry_point: EntryPoint | None) -> object:
    try:
        if entry_point is not None:
            return entry_point.load()
        return importlib.import_module(f"plugins.{name}")
    except Exception as exc:
        raise PluginLoadError(
            f"plugin {name!r} failed to import: {type(exc).__name__}: {exc}. "
            "Fix the plugin or remove it from PHONGDICH_PLUGINS."
        ) from exc


def _kind_of(plugin: object) -> str:
    return "province" if province_of(plugin) else "extension"


def _own_hookspecs(plugin: object) -> Iterator[Any]:
    """A plugin's own spec module: ``<package>.hookspecs`` or a ``HOOKSPECS`` attribute."""
    declared = getattr(plugin, "HOOKSPECS", None)
    if declared is not None:
        yield declared
        return
    if isinstance(plugin, ModuleType) and hasattr(plugin, "__path__"):
        try:
            yield importlib.import_module(f"{plugin.__name__}.hookspecs")
        except ModuleNotFoundError as exc:
            if exc.name != f"{plugin.__name__}.hookspecs":
                raise


def _version_of(name: str, plugin: object, entry_point: EntryPoint | None) -> str:
    if entry_point is not None and entry_point.dist is not None:
        return entry_point.dist.version
    return str(getattr(plugin, "__version__", "") or _core_version())


def _core_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("phongdich")
    except PackageNotFoundError:
        return "0+unknown"


def _check_pending(pm: pluggy.PluginManager) -> None:
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        raise PluginLoadError(
            f"plugin {_name_of(pm, exc.plugin)!r} implements a hook that no plugin specifies (misspelt?): {exc}"
        ) from exc


def _name_of(pm: pluggy.PluginManager, plugin: object) -> str:
    return pm.get_name(plugin) or str(getattr(plugin, "__name__", repr(plugin)))


class HookFailed(RuntimeError):
    """A decision hook raised; the caller fails closed."""


class Hooks:
    """Calls hooks one hookimpl at a time, scoped to a province when asked.

    ``collect_sync`` is for start-up contributions (every loaded plugin
    answers). ``collect``, ``first`` and ``vote`` are for run time: with
    ``province=None`` only the non-province plugins run; with a province
    code, its own province plugins run too, unless the province switched
    them off.
    """

    def __init__(self, pm: pluggy.PluginManager, infos: dict[str, PluginInfo], *, trace: bool = False) -> None:
        self.pm = pm
        self.infos = infos
        self.trace = trace
        self._province_plugins: dict[str, str] = {name: info.province for name, info in infos.items() if info.province}
        self._disabled: frozenset[str] = frozenset()
        self._callers: dict[tuple[str | None, str], Any] = {}
        self._impls: dict[tuple[str | None, str], list[Any]] = {}

    # -- province scoping ----------------------------------------------------

    def province_plugins(self, province: str | None = None) -> list[str]:
        """Names of loaded province plugins, of one province or of all."""
        return sorted(name for name, code in self._province_plugins.items() if province is None or code == province)

    @property
    def disabled(self) -> frozenset[str]:
        return self._disabled

    def set_disabled(self, names: Iterable[str]) -> None:
        """Province plugins switched off by their province (read from the database)."""
        disabled = frozenset(names) & set(self._province_plugins)
        if disabled != self._disabled:
            self._disabled = disabled
            self._callers.clear()
            self._impls.clear()

    def caller(self, name: str, province: str | None) -> Any:
        """The hook caller for ``name`` as seen from ``province`` (cached)."""
        key = (province, name)
        cached = self._callers.get(key)
        if cached is None:
            leave_out = [
                self.pm.get_plugin(plugin_name)
                for plugin_name, code in self._province_plugins.items()
                if code != province or plugin_name in self._disabled
            ]
            cached = self.pm.subset_hook_caller(name, remove_plugins=leave_out)
            self._callers[key] = cached
        return cached

    def impls(self, name: str, province: str | None) -> list[Any]:
        """The hookimpls a call for ``province`` runs, in call order (cached: a hot path)."""
        key = (province, name)
        cached = self._impls.get(key)
        if cached is None:
            cached = _in_call_order(self.caller(name, province))
            self._impls[key] = cached
        return cached

    # -- calling -------------------------------------------------------------

    def collect_sync(self, name: str, **kwargs: Any) -> list[Any]:
        """Every loaded plugin's non-None answer; a raising hookimpl is logged and skipped."""
        results = []
        for plugin_name, outcome, error in self._run(_in_call_order(getattr(self.pm.hook, name)), name, kwargs):
            if error is not None:
                continue
            if _is_awaitable(outcome):
                _close(outcome)
                log.error("hook.async_not_allowed", hook=name, plugin=plugin_name)
                continue
            if outcome is not None:
                results.append(outcome)
        return results

    def collect_by_plugin(self, name: str, **kwargs: Any) -> list[tuple[str, Any]]:
        """Like ``collect_sync``, keeping which plugin answered what."""
        results = []
        for plugin_name, outcome, error in self._run(_in_call_order(getattr(self.pm.hook, name)), name, kwargs):
            if error is None and outcome is not None and not _is_awaitable(outcome):
                results.append((plugin_name, outcome))
        return results

    async def collect(self, name: str, province: str | None = None, **kwargs: Any) -> list[Any]:
        """Like ``collect_sync`` at run time, scoped to ``province``, awaiting awaitables."""
        return await self._collect(self.impls(name, province), name, kwargs)

    async def collect_all(self, name: str, **kwargs: Any) -> list[Any]:
        """Every loaded plugin, whatever its province (demo data, start-up): awaits awaitables."""
        return await self._collect(_in_call_order(getattr(self.pm.hook, name)), name, kwargs)

    async def _collect(self, impls: list[Any], name: str, kwargs: dict[str, Any]) -> list[Any]:
        results = []
        for plugin_name, outcome, error in self._run(impls, name, kwargs):
            if error is not None:
                continue
            try:
                value = await outcome if _is_awaitable(outcome) else outcome
            except Exception as exc:
                self._log_failure(name, plugin_name, exc)
                continue
            if value is not None:
                results.append(value)
        return results

    async def first(self, name: str, province: str | None = None, **kwargs: Any) -> Any:
        """The first non-None answer. A hookimpl that raises stops the call: ``HookFailed``."""
        for impl in self.impls(name, province):
            outcome, error = self._call(impl, name, kwargs)
            if error is not None:
                raise HookFailed(f"plugin {impl.plugin_name!r} failed in {name}") from error
            try:
                value = await outcome if _is_awaitable(outcome) else outcome
            except Exception as exc:
                self._log_failure(name, impl.plugin_name, exc)
                raise HookFailed(f"plugin {impl.plugin_name!r} failed in {name}") from exc
            if value is not None:
                return value
        return None

    async def vote(self, name: str, province: str | None = None, **kwargs: Any) -> list[Vote]:
        """Every plugin's vote; a hookimpl that raises or answers nonsense votes deny."""
        votes: list[Vote] = []
        for impl in self.impls(name, province):
            plugin_name = impl.plugin_name
            outcome, error = self._call(impl, name, kwargs)
            value: Any = None
            if error is None:
                try:
                    value = await outcome if _is_awaitable(outcome) else outcome
                except Exception as exc:
                    self._log_failure(name, plugin_name, exc)
                    error = exc
            if error is not None:
                votes.append(Vote.deny(f"plugin {plugin_name} failed to decide (fail closed)"))
            elif isinstance(value, Vote):
                votes.append(value)
            elif value is not None:
                log.error("hook.bad_vote", hook=name, plugin=plugin_name, got=type(value).__name__)
                votes.append(Vote.deny(f"plugin {plugin_name} returned no Vote (fail closed)"))
        return votes

    def _run(
        self, impls: list[Any], name: str, kwargs: dict[str, Any]
    ) -> Iterator[tuple[str, Any, BaseException | None]]:
        for impl in impls:
            outcome, error = self._call(impl, name, kwargs)
            yield impl.plugin_name, outcome, error

    def _call(self, impl: Any, name: str, kwargs: dict[str, Any]) -> tuple[Any, Exception | None]:
        """One hookimpl's outcome (an awaitable, for async ones), or the exception it raised (logged)."""
        args = [kwargs[arg] for arg in impl.argnames]
        started = time.perf_counter() if self.trace else 0.0
        try:
            outcome = impl.function(*args)
        except Exception as exc:
            self._log_failure(name, impl.plugin_name, exc)
            return None, exc
        if self.trace:
            log.info(
                "hook.call",
                hook=name,
                plugin=impl.plugin_name,
                ms=round((time.perf_counter() - started) * 1000, 3),
                returned=type(outcome).__name__,
            )
        return outcome, None

    @staticmethod
    def _log_failure(name: str, plugin_name: str, exc: BaseException) -> None:
        log.error(
            "hook.failed",
            hook=name,
            plugin=plugin_name,
            error=f"{type(exc).__name__}: {exc}",
            exc_info=exc,
        )


def _in_call_order(caller: Any) -> list[Any]:
    """pluggy's order: the most recently registered (and tryfirst) hookimpls first; no wrappers."""
    return [impl for impl in reversed(caller.get_hookimpls()) if not (impl.wrapper or impl.hookwrapper)]


def _close(awaitable: Any) -> None:
    close = getattr(awaitable, "close", None)
    if close is not None:
        close()


# Whether values of a type are awaitable, by type: ``inspect.isawaitable`` asks ``collections.abc``
# every time, and an access decision awaits two or three hook answers.
_awaitable_types: dict[type, bool] = {}


def _is_awaitable(value: Any) -> bool:
    kind = type(value)
    known = _awaitable_types.get(kind)
    if known is None:
        known = inspect.isawaitable(value)
        if kind is GeneratorType:
            return known  # a generator is awaitable only when marked as a coroutine: ask each one
        _awaitable_types[kind] = known
    return known
