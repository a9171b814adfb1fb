"""A plugin with its own settings section, validated by its own Struct."""

from __future__ import annotations

from typing import Annotated

import msgspec

from core import PluginSettings, hookimpl


class GatewaySettings(msgspec.Struct, forbid_unknown_fields=True):
    sender: str = "PHONGDICH"
    max_per_minute: Annotated[int, msgspec.Meta(ge=1, le=10_000)] = 60


class SmsGateway:
    @hookimpl
    def register_settings(self) -> PluginSettings:
        return PluginSettings(name="gateway", struct=GatewaySettings)
