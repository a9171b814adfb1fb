"""ASGI factories the benchmark servers load (``uvicorn --factory bench.asgi:pipeline_app``).

Settings come from the ``PHONGDICH_*`` environment that the harness sets, so
the served app is the one ``phongdich serve`` would build, plus the bench
plugins.
"""

from __future__ import annotations

from litestar import Litestar

from bench.plugin import bare_read, bench_plugins
from core.app import create_app


def pipeline_app() -> Litestar:
    """The platform's app with the bench plugins: every request goes through the real pipeline."""
    return create_app(extra_plugins=bench_plugins())


def bare_app() -> Litestar:
    """One Litestar handler answering the same JSON: no middleware, guard, identity or database."""
    return Litestar(route_handlers=[bare_read], openapi_config=None)
