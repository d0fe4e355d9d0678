"""Enqueues RQ jobs with RQ's own client API.

    python enqueue.py REDIS_URL QUEUE:KIND:COUNT [QUEUE:KIND:COUNT ...]

KIND is `work`, `boom`, `hold=<key>` or `later` (scheduled an hour ahead). Jobs of one spec are
enqueued in order, specs one after the other.
"""

import sys
from datetime import timedelta

from redis import Redis
from rq import Queue

import jobs


def main():
    conn = Redis.from_url(sys.argv[1])
    for spec in sys.argv[2:]:
        name, kind, count = spec.split(":")
        queue = Queue(name, connection=conn)
        for _ in range(int(count)):
            if kind == "work":
                queue.enqueue(jobs.work)
            elif kind == "boom":
                queue.enqueue(jobs.boom)
            elif kind.startswith("hold="):
                queue.enqueue(jobs.hold, kind[len("hold="):])
            elif kind == "later":
                queue.enqueue_in(timedelta(hours=1), jobs.work)
            else:
                sys.exit(f"unknown job kind {kind!r}")


if __name__ == "__main__":
    main()
