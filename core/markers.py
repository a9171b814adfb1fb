"""The two pluggy markers of the project: every spec and every hookimpl uses these."""

import pluggy

PROJECT = "phongdich"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)
