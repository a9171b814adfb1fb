"""Domain errors, raised by core and plugin code alike, mapped to HTTP status by the web layer.

The message names the field or thing that is wrong and says what to do, so
the CLI can print it and the API can return it as is.
"""


class InvalidInput(ValueError):
    """Bad input: HTTP 400. Start the message with the field name: ``"phone: ..."``."""


class NotFound(LookupError):
    """The thing does not exist, or the principal may not know it does: HTTP 404."""


class Conflict(RuntimeError):
    """The request clashes with stored state (duplicate, already used): HTTP 409."""
