"""The three mandatory national platforms, each a pluggy plugin on the core."""
