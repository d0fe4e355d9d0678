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


@app.task
def boom(*args):
    raise ValueError("canary boom")
