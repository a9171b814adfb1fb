"""An extension plugin whose import fails: it needs a package that is not installed."""

import phongdich_sms_gateway_that_is_not_installed  # noqa: F401

from core import hookimpl  # noqa: F401
