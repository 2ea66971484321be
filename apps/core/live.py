"""Live updates: publish() sends an event to channel-layer groups after the database is saved.

Each group has its own sequence number (a Redis counter), carried by every event, so that a browser
that sees a gap knows it missed something and refetches its page state.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import threading
import time
from collections.abc import Iterable
from functools import lru_cache
from typing import Any

import redis
from channels.layers import get_channel_layer
from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import transaction

logger = logging.getLogger(__name__)


@lru_cache(maxsize=1)
def redis_client() -> redis.Redis:
    """The process's Redis client (sequence counters, console tokens)."""
    return redis.Redis.from_url(settings.REDIS_URL)


def _seq_key(group: str) -> str:
    """The Redis counter of a group's sequence numbers (under the installation's channel prefix)."""
    return f"{settings.CHANNEL_LAYERS['default']['CONFIG']['prefix']}:seq:{group}"


def current_sequences(groups: Iterable[str]) -> dict[str, int]:
    """The last sequence number sent to each group."""
    groups = list(groups)
    if not groups:
        return {}
    values = redis_client().mget([_seq_key(g) for g in groups])
    return {g: int(v or 0) for g, v in zip(groups, values, strict=True)}


def groups_for(obj) -> list[str]:
    """The groups that hear about a change to `obj`: everything, its team, its host, and itself."""
    groups = ["all", f"team-{obj.team_id}"]
    host_id = getattr(obj, "host_id", None)
    if host_id is not None:
        groups.append(f"host-{host_id}")
    kind = getattr(obj, "live_kind", obj._meta.model_name)
    groups.append(f"{kind}-{obj.pk}")
    return groups


class _Publisher:
    """Sends to the channel layer from one long-lived event loop thread per process.

    async_to_sync would make a new loop, and so new Redis connections, for every event; one loop keeps
    the layer's connection pool. A lock keeps each group's sequence numbers in the order events are sent.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pid = 0

    def _ensure_loop(self) -> asyncio.AbstractEventLoop:
        # A forked child (Celery's prefork pool) inherits the loop object but not the thread running it.
        if self._loop is None or self._loop.is_closed() or self._pid != os.getpid():
            loop = asyncio.new_event_loop()
            threading.Thread(target=loop.run_forever, name="vireo-publish", daemon=True).start()
            self._loop, self._pid = loop, os.getpid()
        return self._loop

    def send(self, groups: list[str], event: dict[str, Any]) -> None:
        layer = get_channel_layer()
        if layer is None:
            return
        with self._lock:
            pipe = redis_client().pipeline(transaction=False)
            for group in groups:
                pipe.incr(_seq_key(group))
            try:
                seqs = pipe.execute()
            except redis.RedisError:
                logger.warning("Redis unavailable: live event %s not published", event.get("type"))
                return
            # Serialized once here, not once per subscriber in every consumer.
            text = json.dumps({**event, "time": time.time()}, cls=DjangoJSONEncoder)

            async def send_all() -> None:
                for group, seq in zip(groups, seqs, strict=True):
                    message = {"type": "live.event", "group": group, "seq": seq, "text": text}
                    await layer.group_send(group, message)

            # Two tries: after Redis restarts, the layer's pooled connections fail once before reconnecting.
            for attempt in (1, 2):
                future = asyncio.run_coroutine_threadsafe(send_all(), self._ensure_loop())
                try:
                    future.result(timeout=10)
                    return
                except Exception:  # the channel layer being down must never fail the change that was saved
                    future.cancel()
                    if attempt == 2:
                        logger.warning(
                            "Channel layer unavailable: live event %s not published",
                            event.get("type"),
                            exc_info=True,
                        )

    def send_ephemeral(self, group: str, event: dict[str, Any]) -> None:
        """Send a passing measurement to `group`: no sequence number (a lost one is simply not drawn) and
        a single try."""
        layer = get_channel_layer()
        if layer is None:
            return
        message = {"type": "live.ephemeral", "data": {**event, "time": time.time()}}
        with self._lock:
            loop = self._ensure_loop()
        future = asyncio.run_coroutine_threadsafe(layer.group_send(group, message), loop)
        try:
            future.result(timeout=10)
        except Exception:
            future.cancel()
            logger.debug("live: ephemeral %s to %s not sent", event.get("type"), group, exc_info=True)


_publisher = _Publisher()


def publish_ephemeral(group: str, event: dict[str, Any]) -> None:
    """Send `event` to `group` now (no transaction, no sequence number): for measurements such as VM
    statistics, which the next one replaces."""
    _publisher.send_ephemeral(group, event)


def _send(groups: list[str], event: dict[str, Any]) -> None:
    _publisher.send(groups, event)


def publish(groups: list[str], event: dict[str, Any]) -> None:
    """Send `event` to `groups` once the current transaction commits (save first, then publish)."""
    transaction.on_commit(lambda: _send(groups, event))


def object_event(obj, event_type: str) -> dict[str, Any]:
    """The event that tells a browser an object's current state (its `live_payload()`)."""
    return {"type": event_type, "kind": obj.live_kind, "pk": obj.pk, "data": obj.live_payload()}


def publish_object(obj, event_type: str) -> None:
    """Publish the current state of one object to its groups."""
    publish(groups_for(obj), object_event(obj, event_type))
