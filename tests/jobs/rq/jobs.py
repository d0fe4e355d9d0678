"""Job functions the RQ tests enqueue; the worker imports this module by name (`jobs.*`)."""

import time

from rq import get_current_job


def work():
    """A job that succeeds at once."""
    return "ok"


def boom():
    """A job that fails: it lands in the failed registry and the worker's failed counter."""
    raise RuntimeError("boom (expected by the test)")


def hold(key, timeout=30.0):
    """Runs until the test sets `key` in Redis, so the test can look at a busy worker."""
    conn = get_current_job().connection
    deadline = time.monotonic() + timeout
    while not conn.exists(key):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{key} was never set")
        time.sleep(0.02)
    return "released"
