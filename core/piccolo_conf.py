"""Piccolo's configuration module (``PICCOLO_CONF=core.piccolo_conf``).

``DB`` and ``APP_REGISTRY`` are looked up on the active ``core.storage.Database``
each time Piccolo asks, so Piccolo's CLI (``piccolo migrations new checkin
--auto``) and the platform agree on one database and one set of apps.
"""

from typing import Any


def __getattr__(name: str) -> Any:
    from core import storage

    if name == "DB":
        return storage.active().engine
    if name == "APP_REGISTRY":
        return storage.active().registry
    raise AttributeError(name)
