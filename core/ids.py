"""Random identifiers on hot paths: the operating system's CSPRNG, read a block at a time.

``uuid.uuid4()`` asks the kernel for 16 bytes per identifier; a check-in
needs three (request, visit, declaration), and on a virtual machine each of
those system calls costs tens of microseconds. Here one ``os.urandom`` call
serves 256 identifiers. The bytes are the same kind ``uuid4`` uses (and as
unpredictable); a forked child drops its parent's unused block, so two
workers never hand out the same identifier.

The UUIDs are asyncpg's ``UUID`` (a subclass of ``uuid.UUID`` written in C,
the type asyncpg returns for uuid columns) where asyncpg is installed: it is
made from bytes in a seventh of the time and printed in an eighth, and a
check-in makes two and prints one.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import uuid

try:
    from asyncpg.pgproto.pgproto import UUID as _UUID
except ImportError:  # pragma: no cover - asyncpg comes with the PostgreSQL engine
    _UUID = uuid.UUID
else:
    # sqlite3 picks adapters by exact type: store asyncpg's UUID as Piccolo stores a uuid.UUID.
    sqlite3.register_adapter(_UUID, str)

_BLOCK = 4096
_lock = threading.Lock()
_buffer = b""
_offset = 0


def random_bytes(count: int) -> bytes:
    """``count`` (at most 4096) bytes from the OS's cryptographically secure generator."""
    global _buffer, _offset
    with _lock:
        if _offset + count > len(_buffer):
            _buffer, _offset = os.urandom(max(_BLOCK, count)), 0
        chunk = _buffer[_offset : _offset + count]
        _offset += count
    return chunk


def new_uuid() -> uuid.UUID:
    """A random (version 4, RFC 4122 variant) UUID, like ``uuid.uuid4()``."""
    raw = bytearray(random_bytes(16))
    raw[6] = (raw[6] & 0x0F) | 0x40
    raw[8] = (raw[8] & 0x3F) | 0x80
    return _UUID(bytes(raw))


def canonical_uuid(text: str) -> uuid.UUID | None:
    """``text`` as a UUID when it is one in canonical form (lower-case, hyphenated), else None."""
    if len(text) != 36:
        return None
    try:
        parsed = _UUID(text)
    except ValueError:
        return None
    return parsed if str(parsed) == text else None


def new_hex() -> str:
    """128 random bits as 32 hex digits."""
    return random_bytes(16).hex()


def _forget_after_fork() -> None:
    global _buffer, _offset
    _buffer, _offset = b"", 0


os.register_at_fork(after_in_child=_forget_after_fork)
