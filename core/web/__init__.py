"""Shared web pieces: the guard, error handling, request context and the core's routes."""
