"""Small plugins written against the public hooks, used by the core's tests.

Each is a class so that a test builds a fresh instance (with its own record
of calls) and registers it on a fresh platform; none is shared between tests.
"""
