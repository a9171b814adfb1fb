"""phongdich core: the public surface for plugin authors.

Plugins write ``from core import hookimpl`` and take the types they need
from here; everything else in ``core`` is the platform's own business.
"""

from core.access import Resource, Scope, Vote
from core.consent import Purpose
from core.errors import Conflict, InvalidInput, NotFound
from core.jobs import Job
from core.markers import hookimpl, hookspec
from core.messages import Message, Receipt
from core.principal import Principal, Role
from core.settings import PluginSettings
from core.web.menu import MenuItem

__all__ = [
    "Conflict",
    "InvalidInput",
    "Job",
    "MenuItem",
    "Message",
    "NotFound",
    "PluginSettings",
    "Principal",
    "Purpose",
    "Receipt",
    "Resource",
    "Role",
    "Scope",
    "Vote",
    "hookimpl",
    "hookspec",
]
