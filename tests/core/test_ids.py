"""Random identifiers read in blocks: unique, version 4, and not shared with a forked child."""

import os
import uuid

from core import ids


def test_ids_are_unique_random_version_4_uuids():
    made = [ids.new_uuid() for _ in range(5000)]  # crosses several blocks
    assert len(set(made)) == 5000
    assert all(isinstance(u, uuid.UUID) and u.version == 4 and u.variant == uuid.RFC_4122 for u in made)
    assert all(uuid.UUID(str(u)) == u and hash(uuid.UUID(str(u))) == hash(u) for u in made[:100])
    # Every hex digit position but the fixed version/variant ones varies.
    varying = [len({u.hex[i] for u in made}) for i in range(32)]
    assert sum(1 for v in varying if v > 1) >= 30
    assert len({ids.new_hex() for _ in range(1000)}) == 1000


def test_a_forked_child_does_not_reuse_the_parents_block():
    ids.new_uuid()  # the parent holds a partly used block
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child
        os.close(read)
        os.write(write, ids.new_uuid().bytes)
        os._exit(0)
    os.close(write)
    child = uuid.UUID(bytes=os.read(read, 16))
    os.waitpid(pid, 0)
    os.close(read)
    assert child != ids.new_uuid()


def test_canonical_uuid_takes_only_the_canonical_spelling():
    text = str(uuid.uuid4())
    assert ids.canonical_uuid(text) == uuid.UUID(text)
    for other in (text.upper(), text.replace("-", ""), "{" + text + "}", "urn:uuid:" + text, "", "not a uuid" * 4):
        assert ids.canonical_uuid(other) is None
