"""Reads one canary job back with RQ's own API and prints what RQ makes of it, as JSON.

    python canary_show.py REDIS_URL JOB_ID

Times are Unix seconds (null when RQ has none). `data_is_python_pickle` is true when the job's
`data` field decompresses to exactly the bytes `pickle.dumps` gives for the call it decodes to.
"""

import json
import pickle
import sys
import zlib

from redis import Redis
from rq.job import Job


def ts(dt):
    return dt.timestamp() if dt else None


def main():
    conn = Redis.from_url(sys.argv[1])
    job = Job.fetch(sys.argv[2], connection=conn)
    raw = zlib.decompress(conn.hget(job.key, "data"))
    call = pickle.loads(raw)
    result = job.latest_result()
    out = {
        "func_name": job.func_name,
        "args": list(job.args),
        "kwargs": job.kwargs,
        "call": [call[0], call[1], list(call[2]), call[3]],
        "data_is_python_pickle": pickle.dumps(call, protocol=5) == raw,
        "description": job.description,
        "origin": job.origin,
        "status": job.get_status(),
        "timeout": job.timeout,
        "result_ttl": job.result_ttl,
        "failure_ttl": job.failure_ttl,
        "ttl": job.ttl,
        "created_at": ts(job.created_at),
        "enqueued_at": ts(job.enqueued_at),
        "started_at": ts(job.started_at),
        "ended_at": ts(job.ended_at),
        "result_type": result.type.name if result else None,
        "return_value": result.return_value if result else None,
        "exc_string": result.exc_string if result else None,
        "execution_started_at": ts(result.execution_started_at) if result else None,
        "execution_ended_at": ts(result.execution_ended_at) if result else None,
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
