"""Settings of the Python runtime for Vireo's long-running processes (daphne, hostd, Celery workers)."""

import gc


def freeze_startup_objects() -> None:
    """Move every object alive after start-up (modules, classes, Django's registries) out of the collector's view.

    A reconcile or a page builds thousands of short-lived objects, each burst triggering collections that
    would otherwise walk the whole start-up heap again; frozen, they are skipped (about a quarter of a
    large first reconcile's CPU time, measured with benchmarks/inventory.py). Call it once, after the
    imports, in each process that serves requests or runs tasks.
    """
    gc.collect()
    gc.freeze()
