"""The Litestar application: ``create_app(settings)``.

The core's routes are mounted as they are; every plugin's API routes sit
under ``/api/<plugin>`` and its pages under ``/<plugin>``, collected by one
Litestar plugin from the ``register_routes`` and ``register_pages`` hooks,
so no plugin can shadow another. Every route must declare its ``action``
(or ``public=True``) in ``opt``; the app refuses to start otherwise.
"""

from __future__ import annotations

import asyncio
import gc
import os
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from litestar import Litestar, Router
from litestar.config.app import AppConfig
from litestar.datastructures import State
from litestar.di import Provide
from litestar.exceptions import HTTPException
from litestar.openapi import OpenAPIConfig
from litestar.openapi.spec import Components, SecurityScheme
from litestar.plugins import InitPluginProtocol

from core.errors import Conflict, InvalidInput, NotFound
from core.observability import buffer_log_lines, configure_logging, flush_log_lines
from core.platform import Platform
from core.settings import Settings, load_settings
from core.web import admin, auth, health, me
from core.web.context import request_context
from core.web.errors import domain_error, http_error, undecodable_body, unexpected_error
from core.web.guard import platform_guard, provide_platform, provide_principal
from core.web.lean import direct_routes

CORE_ROUTES = [*health.ROUTES, *auth.ROUTES, *me.ROUTES, *admin.ROUTES]


class RouteDeclarationError(RuntimeError):
    """A route does not say what it does; the message names it."""


class PluginRoutes(InitPluginProtocol):
    """Mounts each plugin's contributed routes under its own prefix."""

    def __init__(self, platform: Platform) -> None:
        self.platform = platform

    def on_app_init(self, app_config: AppConfig) -> AppConfig:
        hooks = self.platform.hooks
        for hook, prefix in (("register_routes", "/api/{name}"), ("register_pages", "/{name}")):
            for plugin_name, handlers in hooks.collect_by_plugin(hook, settings=self.platform.settings):
                path = prefix.format(name=plugin_name.replace(".", "-"))
                app_config.route_handlers.append(
                    Router(path=path, route_handlers=list(handlers), opt={"plugin": plugin_name})
                )
        dirs: list[Path | os.PathLike[Any] | str] = [
            Path(d) for group in hooks.collect_sync("register_template_dirs") for d in group
        ]
        if dirs:
            from litestar.contrib.jinja import JinjaTemplateEngine
            from litestar.template.config import TemplateConfig

            app_config.template_config = TemplateConfig(directory=dirs, engine=JinjaTemplateEngine)
        return app_config


def create_app(
    settings: Settings | None = None,
    *,
    platform: Platform | None = None,
    extra_plugins: Iterable[tuple[str, object]] = (),
) -> Litestar:
    settings = settings or (platform.settings if platform else load_settings())
    configure_logging(settings)
    platform = platform or Platform(settings, extra_plugins=extra_plugins)
    app = Litestar(
        route_handlers=list(CORE_ROUTES),
        plugins=[PluginRoutes(platform)],
        guards=[platform_guard],  # it runs refuse_nul_characters too: Litestar copies the handler per guard
        dependencies={
            "platform": Provide(provide_platform, sync_to_thread=False),
            "principal": Provide(provide_principal),
        },
        exception_handlers={
            HTTPException: http_error,
            InvalidInput: domain_error,
            NotFound: domain_error,
            Conflict: domain_error,
            UnicodeDecodeError: undecodable_body,
            Exception: unexpected_error,
        },
        openapi_config=OpenAPIConfig(
            title="phongdich",
            version=platform.plugins["checkin"].version,
            description="National epidemic response platform: check-in, testing, vaccination.",
            components=Components(
                security_schemes={
                    "bearer": SecurityScheme(type="http", scheme="bearer", description="Staff or citizen token"),
                    "apiKey": SecurityScheme(type="apiKey", name="X-API-Key", security_scheme_in="header"),
                }
            ),
            security=[{"bearer": []}, {"apiKey": []}],
        ),
        state=State({"platform": platform}),
        lifespan=[_lifespan(platform)],
        debug=settings.debug,
    )
    _check_declarations(app, platform)
    # Around everything the app does for a request (routing, its exception handlers), not inside a
    # route: unknown paths and errors raised before a route's own handling (the lean path's guard)
    # get their request id header and a request line with the status actually sent.
    # The lean routes with fixed paths (a check-in) skip the router: routed once, here.
    app.asgi_handler = request_context(app.asgi_handler, direct_routes(app))
    return app


def app_factory() -> Litestar:
    """For ASGI servers: ``uvicorn --factory core.app:app_factory``; settings from the environment."""
    return served(create_app())


# Young objects between two collections of the youngest generation (CPython's default: 700).
GC_YOUNG_THRESHOLD = 20_000


def served(app: Litestar) -> Litestar:
    """The app as a server process runs it: the garbage collector tuned once start-up is done.

    Everything built at start-up (the app, its routes, plugins, settings,
    schemas) lives as long as the process; ``gc.freeze()`` moves it out of
    the collector's way, so a full collection no longer walks it. Requests
    allocate many short-lived objects (a few hundred per request): collecting
    the youngest generation every 20,000 allocations instead of every 700
    keeps the same garbage collected with a thirtieth of the passes. JSON log
    lines are written in batches (``core.observability.BufferedLines``). Only for
    server processes (``phongdich serve``, ``app_factory``): a test process
    makes hundreds of apps and must not freeze them.
    """
    app.on_startup.append(_tune_gc)
    app.on_startup.append(buffer_log_lines)
    app.on_shutdown.append(flush_log_lines)
    return app


def _tune_gc() -> None:
    gc.collect()
    gc.freeze()
    _young, middle, old = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, middle, old)


def _lifespan(platform: Platform) -> Any:
    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        await platform.start()
        stop = asyncio.Event()
        tasks = []
        if platform.settings.run_background_tasks:
            tasks = [
                asyncio.create_task(platform.events.run_forever(stop), name="events"),
                asyncio.create_task(platform.scheduler.run_forever(stop), name="jobs"),
            ]
        try:
            yield
        finally:
            stop.set()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await platform.stop()

    return lifespan


def _only_options(handler: Any) -> bool:
    """Litestar's automatic OPTIONS (CORS pre-flight) handlers answer without data."""
    return set(getattr(handler, "http_methods", ())) == {"OPTIONS"}


def _check_declarations(app: Litestar, platform: Platform) -> None:
    """Every route says what it does: an action or ``public``, and only known purposes."""
    for route in app.routes:
        if route.path.startswith("/schema"):
            continue
        for handler in getattr(route, "route_handlers", []):
            if _only_options(handler):
                continue
            opt = handler.opt
            where = f"{handler.handler_name} ({', '.join(sorted(handler.paths))}, plugin {opt.get('plugin', 'core')})"
            if not opt.get("public") and not opt.get("action"):
                raise RouteDeclarationError(f"route {where} declares neither opt['action'] nor opt['public']")
            purpose = opt.get("purpose")
            if purpose and purpose not in platform.consent.purposes:
                raise RouteDeclarationError(f"route {where} names unknown purpose {purpose!r}")
