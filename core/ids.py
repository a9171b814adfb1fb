"""Random identifiers on hot paths: the operating system's CSPRNG, read a block at a time.

``uuid.uuid4()`` asks the kernel for 16 bytes per identifier; a check-in
needs three (request, visit, declaration), and on a virtual machine each of
those system calls costs tens of microseconds. Here one ``os.urandom`` call
serves 256 identifiers. The bytes are the same kind ``uuid4`` uses (and as
unpredictable); a forked child drops its parent's unused block, so two
workers never hand out the same identifier.
"""

from __future__ import annotations

import os
import threading
import uuid

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
    """A random (version 4) UUID, like ``uuid.uuid4()``."""
    return uuid.UUID(bytes=random_bytes(16), version=4)


def new_hex() -> str:
    """128 random bits as 32 hex digits."""
    return random_bytes(16).hex()


def _forget_after_fork() -> None:
    global _buffer, _offset
    _buffer, _offset = b"", 0


os.register_at_fork(after_in_child=_forget_after_fork)
