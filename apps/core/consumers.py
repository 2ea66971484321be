"""The live consumer at /ws/live/: every change reaches the open pages of those who may see it.

On connect a user joins the groups of their teams (superusers: "all") and gets the current sequence
number of each group. Pages may also subscribe to single objects ("vm-5", "host-2"), checked with
restrict(). Events carry per-group sequence numbers; a page that sees a gap refetches its state.
A page may also ask for the CPU and memory points of the VMs it shows ({"stats": [pk, ...]}): the socket
joins the `stats-host-<pk>` groups of their hosts and forwards only those VMs' points.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re

import redis
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.conf import settings

from .choices import Action
from .live import current_sequences
from .permissions import restrict

logger = logging.getLogger(__name__)
OBJECT_GROUP_RE = re.compile(r"^(vm|host|network|pool|job)-(\d+)$")
# The most VMs one socket may follow the statistics of (the longest list page).
MAX_STATS_VMS = 250


def _model_for(kind: str):
    from apps.hosts.models import Host
    from apps.networks.models import Network
    from apps.storage.models import StoragePool
    from apps.vms.models import VirtualMachine

    from .models import Job

    return {"vm": VirtualMachine, "host": Host, "network": Network, "pool": StoragePool, "job": Job}[kind]


class LiveConsumer(AsyncJsonWebsocketConsumer):
    """Streams published changes to a browser."""

    async def connect(self):
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=4401)
            return
        self.groups_joined: set[str] = set()
        self.last_seq: dict[str, int] = {}
        self.suspect: dict[str, int] = {}
        await self.accept()
        await self.join(await self._base_groups(user))
        self.watcher = asyncio.ensure_future(self._watch_sequences())

    async def disconnect(self, code):
        watcher = getattr(self, "watcher", None)
        if watcher is not None:
            watcher.cancel()
        for group in (*getattr(self, "groups_joined", ()), *getattr(self, "stats_groups", ())):
            await self.channel_layer.group_discard(group, self.channel_name)

    async def join(self, groups: list[str]) -> None:
        for group in groups:
            await self.channel_layer.group_add(group, self.channel_name)
            self.groups_joined.add(group)
        seqs = await database_sync_to_async(current_sequences)(groups)
        self.last_seq.update(seqs)
        await self.send_json({"type": "subscribed", "groups": seqs})

    async def _watch_sequences(self) -> None:
        """Tell the page to refetch when it may have missed events the stream cannot show as a gap.

        Events published while Redis restarts are lost, and its counters start again from zero. A counter
        below what this socket last forwarded means a restart (and the socket joins its groups again); one
        above it for two checks in a row means a lost message. Either way the page refetches its state.
        """
        while True:
            await asyncio.sleep(settings.VIREO_LIVE_CHECK_SECONDS)
            try:
                current = await database_sync_to_async(current_sequences)(sorted(self.groups_joined))
            except redis.RedisError:  # Redis away: check again later; the counters tell what happened
                logger.debug("live: sequence check skipped, Redis unavailable")
                continue
            behind = {g for g, seq in current.items() if seq > self.last_seq.get(g, 0)}
            reset = any(seq < self.last_seq.get(g, 0) for g, seq in current.items())
            missed = any(self.suspect.get(g, -1) >= self.last_seq.get(g, 0) for g in behind)
            self.suspect = {g: current[g] for g in behind}
            if reset:  # Redis restarted: its record of this socket's groups went with it
                for group in (*self.groups_joined, *getattr(self, "stats_groups", ())):
                    await self.channel_layer.group_add(group, self.channel_name)
            if reset or missed:
                self.last_seq.update(current)
                self.suspect = {}
                await self.send_json({"type": "subscribed", "groups": current, "resync": True})

    async def receive_json(self, content, **kwargs):
        if isinstance(content, dict) and "stats" in content:
            await self.watch_stats(content["stats"])
            return
        group = content.get("subscribe") if isinstance(content, dict) else None
        if not isinstance(group, str):
            await self.send_json({"type": "error", "detail": 'Send {"subscribe": "vm-<id>"}.'})
            return
        match = OBJECT_GROUP_RE.fullmatch(group)
        if match is None or not await self._may_see(match.group(1), int(match.group(2))):
            await self.send_json({"type": "error", "detail": f"Not found: {group}"})
            return
        await self.join([group])
        # The object's current state, read after joining: the page may have missed changes since it was
        # rendered (or while it was disconnected); events after this carry what changes later.
        kind, pk = match.group(1), int(match.group(2))
        payload = await self._payload(kind, pk)
        if payload is not None:
            await self.send_json({"type": "snapshot", "kind": kind, "pk": pk, "data": payload})

    async def dispatch(self, message):
        # Channels runs close_old_connections() in the sync thread before every handler: one thread hop
        # per subscriber per event, all queued on the one sync thread, which was most of a burst's fan-out
        # time. The live handlers touch no database, so they skip that; every other message keeps it.
        kind = message.get("type")
        if kind == "live.event":
            await self.live_event(message)
        elif kind == "live.ephemeral":
            await self.live_ephemeral(message)
        else:
            await super().dispatch(message)

    async def watch_stats(self, pks) -> None:
        """Forward the CPU and memory points of these VMs (those the user may see; at most a page's worth),
        replacing the VMs asked for before."""
        if not isinstance(pks, list) or len(pks) > MAX_STATS_VMS or not all(isinstance(p, int) for p in pks):
            await self.send_json(
                {"type": "error", "detail": f'Send {{"stats": [up to {MAX_STATS_VMS} VM ids]}}.'}
            )
            return
        hosts = await self._visible_vm_hosts(pks)
        groups = {f"stats-host-{host}" for host in hosts.values()}
        for group in getattr(self, "stats_groups", set()) - groups:
            await self.channel_layer.group_discard(group, self.channel_name)
        for group in groups:
            await self.channel_layer.group_add(group, self.channel_name)
        self.stats_groups, self.stats_vms = groups, {str(pk) for pk in hosts}

    async def live_ephemeral(self, message):
        data = message["data"]
        if data.get("type") != "stats":
            return
        mine = {pk: point for pk, point in data["vms"].items() if pk in getattr(self, "stats_vms", ())}
        if mine:
            await self.send_json({"type": "stats", "vms": mine})

    async def live_event(self, message):
        # The event arrives serialized (once, by the publisher); only the envelope is built here.
        self.last_seq[message["group"]] = int(message["seq"])
        group, seq = json.dumps(message["group"]), int(message["seq"])
        await self.send(
            text_data=f'{{"type": "event", "group": {group}, "seq": {seq}, "event": {message["text"]}}}'
        )

    @database_sync_to_async
    def _base_groups(self, user) -> list[str]:
        if user.is_superuser:
            return ["all"]
        from apps.accounts.models import Team

        return [
            f"team-{pk}"
            for pk in restrict(Team.objects.all(), user, Action.VIEW).values_list("pk", flat=True)
        ]

    @database_sync_to_async
    def _visible_vm_hosts(self, pks: list[int]) -> dict[int, int]:
        from apps.vms.models import VirtualMachine

        visible = restrict(
            VirtualMachine.objects.filter(pk__in=pks, gone=False), self.scope["user"], Action.VIEW
        )
        return dict(visible.values_list("pk", "host_id"))

    @database_sync_to_async
    def _may_see(self, kind: str, pk: int) -> bool:
        model = _model_for(kind)
        return restrict(model.objects.filter(pk=pk), self.scope["user"], Action.VIEW).exists()

    @database_sync_to_async
    def _payload(self, kind: str, pk: int) -> dict | None:
        obj = restrict(_model_for(kind).objects.filter(pk=pk), self.scope["user"], Action.VIEW).first()
        return obj.live_payload() if obj is not None else None
