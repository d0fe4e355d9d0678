"""Functions the RQ canary tests name as a canary's task (`canary_jobs.*`); every canary job is
called as `task("canaryd", "<check>")`."""


def boom(first, check):
    """A canary task that always raises, so the test sees RQ record the failure."""
    raise RuntimeError(f"canary boom for {check} (expected by the test)")
