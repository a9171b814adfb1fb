"""The core's built-in plugins, written with the same hooks outside authors use."""
