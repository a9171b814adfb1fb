"""Telling a unique-constraint violation apart from other database errors, on SQLite and PostgreSQL."""

from __future__ import annotations


def is_unique_violation(exc: BaseException) -> bool:
    """True when ``exc`` (from aiosqlite/sqlite3 or asyncpg) says a unique constraint was violated."""
    name = type(exc).__name__
    if name == "UniqueViolationError":
        return True
    return name == "IntegrityError" and "UNIQUE" in str(exc).upper()
