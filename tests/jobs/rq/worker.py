"""Runs one RQ worker until SIGTERM (RQ's warm shutdown).

    python worker.py REDIS_URL WORKER_NAME QUEUE [QUEUE ...]
"""

import sys

from redis import Redis
from rq import Worker


def main():
    url, name, *queues = sys.argv[1:]
    worker = Worker(queues, connection=Redis.from_url(url), name=name)
    # The maintenance tasks and scheduler are not what the tests look at; keep the worker lean.
    worker.work(with_scheduler=False, logging_level="INFO")


if __name__ == "__main__":
    main()
