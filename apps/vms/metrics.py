"""CPU and memory use of running VMs over the last minutes: sampled by hostd, kept in Redis, pushed live.

hostd samples each host's running VMs every VIREO_STATS_SECONDS with one bulk libvirt call
(`virt.sample_running`). A `UsageTracker` per host turns two samples into percentages: CPU is the guest's
CPU time over the wall time and its vCPUs, memory what the guest uses over what it has. Each VM keeps its
last STATS_POINTS points as one Redis string (one pipeline per host and round; a page reads its rows' with
one MGET); the round goes to the group `stats-host-<pk>` as one message, and each live socket forwards
only the VMs its page shows (see LiveConsumer). Nothing here is history worth keeping: Redis forgets a
VM's points after STATS_KEEP_SECONDS.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field

import redis
from django.conf import settings

from apps import virt
from apps.core.live import publish_ephemeral, redis_client

logger = logging.getLogger(__name__)

#: Points kept per VM (with the default 10 s between samples: the last 10 minutes).
STATS_POINTS = 60
STATS_KEEP_SECONDS = 15 * 60


@dataclass
class UsageTracker:
    """Turns one host's successive samples into CPU and memory percentages per VM UUID."""

    previous: dict[str, tuple[float, int]] = field(default_factory=dict)
    #: The series of the host's running VMs (VM pk -> points), as record() last wrote them.
    kept: dict[int, list[list]] = field(default_factory=dict)

    def update(
        self, samples: list[virt.GuestSample], now: float
    ) -> dict[str, tuple[float | None, float | None]]:
        """(cpu %, memory %) of each sampled VM the driver says anything of; CPU is None for a VM's first
        sample (it needs two)."""
        usage: dict[str, tuple[float | None, float | None]] = {}
        seen: dict[str, tuple[float, int]] = {}
        for sample in samples:
            cpu = None
            if sample.cpu_time_ns is not None:
                seen[sample.uuid] = (now, sample.cpu_time_ns)
                before = self.previous.get(sample.uuid)
                if before is not None and now > before[0] and sample.cpu_time_ns >= before[1]:
                    spent = (sample.cpu_time_ns - before[1]) / 1e9 / (now - before[0])
                    cpu = min(100.0, 100.0 * spent / max(1, sample.vcpus or 1))
            memory = None
            if sample.used_kib is not None and sample.memory_kib:
                memory = min(100.0, 100.0 * sample.used_kib / sample.memory_kib)
            if cpu is not None or memory is not None:
                usage[sample.uuid] = (cpu, memory)
        self.previous = seen  # VMs no longer running drop out
        return usage


def _key(vm_pk: int) -> str:
    return f"{settings.CHANNEL_LAYERS['default']['CONFIG']['prefix']}:stats:vm:{vm_pk}"


def _point(now: float, cpu: float | None, memory: float | None) -> list:
    return [round(now), None if cpu is None else round(cpu, 1), None if memory is None else round(memory, 1)]


def record(
    host_pk: int,
    usage: dict[int, tuple[float | None, float | None]],
    now: float,
    kept: dict[int, list[list]] | None = None,
) -> None:
    """Add each VM's point (VM pk -> (cpu %, memory %)) to its series and push the round live.

    A series is one Redis string (its points as JSON), so that a page reads all its rows' series with one
    MGET. `kept` is the caller's copy of the series (a hostd watcher keeps its host's between rounds);
    series it lacks are read from Redis first (another hostd may have kept them before).
    """
    if not usage:
        return
    kept = {} if kept is None else kept
    points = {pk: _point(now, cpu, memory) for pk, (cpu, memory) in usage.items()}
    try:
        client = redis_client()
        missing = [pk for pk in points if pk not in kept]
        if missing:
            kept.update(history(missing))
        pipe = client.pipeline(transaction=False)
        for pk, point in points.items():
            series = kept.setdefault(pk, [])
            series.append(point)
            del series[:-STATS_POINTS]
            pipe.set(_key(pk), json.dumps(series, separators=(",", ":")), ex=STATS_KEEP_SECONDS)
        pipe.execute()
    except redis.RedisError:
        logger.warning("Redis unavailable: VM statistics of host %s not kept", host_pk)
        return
    for pk in set(kept) - set(points):  # VMs that stopped: their series stays in Redis until it expires
        del kept[pk]
    publish_ephemeral(
        f"stats-host-{host_pk}", {"type": "stats", "vms": {str(pk): p for pk, p in points.items()}}
    )


def history(vm_pks: list[int]) -> dict[int, list[list]]:
    """The kept points of each VM ([time, cpu %, memory %], oldest first); VMs without points are left out."""
    if not vm_pks:
        return {}
    try:
        values = redis_client().mget([_key(pk) for pk in vm_pks])
    except redis.RedisError:
        return {}
    return {pk: json.loads(raw) for pk, raw in zip(vm_pks, values, strict=True) if raw}


def sample_host(host, conn, tracker: UsageTracker) -> int:
    """Sample the host's running VMs, record and push their use; returns how many VMs had a point."""
    from .models import VirtualMachine

    samples = virt.sample_running(conn)
    now = time.time()
    usage = tracker.update(samples, now)
    if not usage:
        return 0
    rows = VirtualMachine.objects.filter(host=host, gone=False, uuid__in=list(usage)).values_list(
        "uuid", "pk"
    )
    pks = {str(uuid): pk for uuid, pk in rows}
    by_pk = {pks[uuid]: values for uuid, values in usage.items() if uuid in pks}
    record(host.pk, by_pk, now, tracker.kept)
    return len(by_pk)
