"""Sends Celery tasks with `.apply_async` (what `.delay` calls), optionally with a priority.

    CELERY_BROKER_URL=redis://... python enqueue.py QUEUE:KIND:COUNT[:PRIORITY] ...

KIND is `work` or `hold=<key>`. Specs are sent one after the other, in order.
"""

import sys

from app import hold, work


def main():
    for spec in sys.argv[1:]:
        parts = spec.split(":")
        queue, kind, count = parts[:3]
        options = {"queue": queue}
        if len(parts) > 3:
            options["priority"] = int(parts[3])
        for _ in range(int(count)):
            if kind == "work":
                work.apply_async(**options)
            elif kind.startswith("hold="):
                hold.apply_async((kind[len("hold="):],), **options)
            else:
                sys.exit(f"unknown task kind {kind!r}")


if __name__ == "__main__":
    main()
