"""The Celery app of the canary tests: broker and Redis result backend are the test's Redis.

    CELERY_BROKER_URL   the test's redis URL; the result backend uses the same database, the
                        one canaryd's canary reads

`canary_app.boom` raises, for the canary's `job_failed` verdict; `celery.accumulate` (the
canary's default task) is built into every app.
"""

import os

from celery import Celery

app = Celery("canary_app")
app.conf.broker_connection_retry_on_startup = True
app.conf.result_backend = os.environ["CELERY_BROKER_URL"]
if os.environ.get("CELERY_KEYPREFIX"):
    prefix = {"global_keyprefix": os.environ["CELERY_KEYPREFIX"]}
    app.conf.broker_transport_options = prefix
    app.conf.result_backend_transport_options = prefix


@app.task
def boom(*args):
    raise ValueError("canary boom")


@app.task(acks_late=True)
def slow(*args):
    """Runs 1 s with its message acknowledged late: kombu keeps the reservation (with its time)
    while it runs, where the canary reads the pickup time."""
    import time

    time.sleep(1.0)
    return list(args)
