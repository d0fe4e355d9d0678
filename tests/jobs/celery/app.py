"""The Celery app of the tests: the broker is the test's Redis, from the environment.

    CELERY_BROKER_URL   the test's redis URL (Celery reads this variable itself)
    CELERY_KEYPREFIX    optional kombu `global_keyprefix`

Every message is stamped with its enqueue time in the `enqueued_at` header, the recipe canaryd's
`enqueued_at_header` option documents: Celery's own messages carry no enqueue time.
"""

import os
import time

import redis
from celery import Celery
from celery.signals import before_task_publish

app = Celery("app")
app.conf.broker_connection_retry_on_startup = True
if os.environ.get("CELERY_KEYPREFIX"):
    app.conf.broker_transport_options = {"global_keyprefix": os.environ["CELERY_KEYPREFIX"]}


@before_task_publish.connect
def stamp_enqueue_time(headers=None, **_):
    headers["enqueued_at"] = time.time()


@app.task
def work():
    return "ok"


@app.task(acks_late=True)
def hold(key, timeout=30.0):
    """Runs until the test sets `key` (unprefixed) in Redis. `acks_late`: its message stays in
    kombu's `unacked` hash while it runs, where the test looks for it."""
    client = redis.Redis.from_url(os.environ["CELERY_BROKER_URL"])
    deadline = time.monotonic() + timeout
    while not client.exists(key):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{key} was never set")
        time.sleep(0.02)
    return "released"
