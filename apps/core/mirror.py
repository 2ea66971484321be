"""Keeping a host's mirror rows (VMs, networks, pools) equal to what libvirt reports, in bulk.

One generic upsert serves every mirrored model: rows are keyed by (host, uuid); new ones are created,
changed ones updated, missing ones marked gone (never deleted). Changes are saved first, then published:
one event per object, except for a large reconcile, which sends one "inventory" event per host (the
browser refetches), so that a reconcile of thousands of objects does not flood every open page.
"""

from __future__ import annotations

import uuid as uuidlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from django.db import connections, models, router, transaction
from django.utils import timezone

from .live import object_event, publish
from .models import InventoryChange

# Above this many changed objects, a reconcile sends one host-wide event instead of per-object ones, and
# the feed records one entry; incremental syncs send their per-object events in messages of this many.
PER_OBJECT_EVENT_LIMIT = 50


@dataclass
class SyncResult:
    """What a sync changed."""

    created: list[models.Model] = field(default_factory=list)
    changed: list[tuple[models.Model, list[str]]] = field(default_factory=list)
    gone: list[models.Model] = field(default_factory=list)

    @property
    def count(self) -> int:
        return len(self.created) + len(self.changed) + len(self.gone)


def _describe_change(obj: models.Model, fields: list[str]) -> tuple[str, str]:
    """The feed's event word and detail for a changed object."""
    if "gone" in fields and not getattr(obj, "gone", False):
        return "reappeared", ""
    if "state" in fields:
        return getattr(obj, "state", ""), getattr(obj, "state_reason", "")
    if "active" in fields:
        return ("started" if getattr(obj, "active", False) else "stopped"), ""
    return "changed", ", ".join(sorted(fields))


def sync_host_objects(
    model: type[models.Model],
    host,
    rows: dict[str, dict[str, Any]],
    *,
    complete: bool,
    gone: Iterable[str] = (),
    feed: bool = True,
) -> SyncResult:
    """Make `host`'s rows of `model` equal `rows` (uuid -> field values), in one transaction.

    `complete` says `rows` is the host's whole inventory: objects not in it are marked gone. Otherwise
    only the objects in `rows` and the uuids in `gone` (which libvirt no longer has) are touched.
    """
    gone = set(gone) - set(rows)
    result = SyncResult()
    fields = sorted({name for values in rows.values() for name in values})
    kind = model.live_kind
    now = timezone.now()
    with transaction.atomic():
        candidates = model.objects.filter(host=host)
        if not complete:
            candidates = candidates.filter(uuid__in=[uuidlib.UUID(key) for key in (*rows, *gone)])
        existing = {str(obj.uuid): obj for obj in candidates}
        to_create, to_update = [], []
        for key, values in rows.items():
            obj = existing.get(key)
            if obj is None:
                to_create.append(model(host=host, team_id=host.team_id, uuid=uuidlib.UUID(key), **values))
                continue
            changed = [name for name, value in values.items() if getattr(obj, name) != value]
            if obj.gone:
                obj.gone = False
                changed.append("gone")
                if hasattr(obj, "gone_since"):
                    obj.gone_since = None
            if changed:
                for name in changed:
                    if name != "gone":
                        setattr(obj, name, values[name])
                to_update.append(obj)
                result.changed.append((obj, changed))
        if complete or gone:
            gone_values = {"gone": True, "updated": now}
            if hasattr(model, "gone_since"):
                gone_values["gone_since"] = now
            for key, obj in existing.items():
                if key not in rows and not obj.gone and (complete or key in gone):
                    for name, value in gone_values.items():
                        setattr(obj, name, value)
                    result.gone.append(obj)
            if result.gone:  # the same values for every row: one UPDATE, not a CASE per row
                model.objects.filter(pk__in=[obj.pk for obj in result.gone]).update(**gone_values)
        if to_create:
            result.created = _insert(model, host, to_create)
        if to_update:
            update_fields = sorted(
                set(fields)
                | {"gone", "updated"}
                | ({"gone_since"} if hasattr(model, "gone_since") else set())
            )
            for obj in to_update:
                obj.updated = now
            model.objects.bulk_update(to_update, update_fields, batch_size=500)
        if feed and result.count:
            _record_feed(host, kind, result)
        _publish(host, kind, result, complete=complete)
    return result


# From this many new rows on, PostgreSQL gets them through COPY (a host's first reconcile, a large burst).
COPY_THRESHOLD = 200


def _insert(model: type[models.Model], host, objs: list[models.Model]) -> list[models.Model]:
    """Insert new mirror rows and give the objects their primary keys.

    On PostgreSQL many rows go through COPY: Django's bulk INSERT quotes every value in Python, which was
    most of a first reconcile's time. The values are Django's own (each field's pre_save and
    get_db_prep_save), so the rows are what bulk_create would have written.
    """
    db = connections[router.db_for_write(model)]  # the wrapper itself: `connection` is a per-use proxy
    if db.vendor != "postgresql" or len(objs) < COPY_THRESHOLD:
        return model.objects.bulk_create(objs, batch_size=500)
    fields = [f for f in model._meta.local_concrete_fields if not f.primary_key]
    quote = db.ops.quote_name
    sql = f"COPY {quote(model._meta.db_table)} ({', '.join(quote(f.column) for f in fields)}) FROM STDIN"
    with db.cursor() as cursor, cursor.cursor.copy(sql) as copy:
        for obj in objs:
            copy.write_row([f.get_db_prep_save(f.pre_save(obj, True), db) for f in fields])
    pks = dict(model.objects.filter(host=host, uuid__in=[obj.uuid for obj in objs]).values_list("uuid", "pk"))
    for obj in objs:
        obj.pk = pks[obj.uuid]
        obj._state.adding, obj._state.db = False, db.alias
    return objs


def mark_gone(model: type[models.Model], host, uuid: str) -> models.Model | None:
    """Mark one object gone after libvirt said it was undefined; returns it, or None if unknown."""
    result = sync_host_objects(model, host, {}, complete=False, gone=[uuid])
    return result.gone[0] if result.gone else None


def _record_feed(host, kind: str, result: SyncResult) -> None:
    def entry(obj, event: str, detail: str = "") -> InventoryChange:
        return InventoryChange(
            team_id=host.team_id,
            host=host,
            object_type=kind,
            object_id=obj.pk,
            object_name=str(obj),
            event=event[:32],
            detail=detail[:255],
        )

    if result.count > PER_OBJECT_EVENT_LIMIT:  # one entry for the lot
        entries = [
            InventoryChange(
                team_id=host.team_id,
                host=host,
                object_type=kind,
                object_name=host.name,
                event="inventory",
                detail=f"{result.count} {kind} changes",
            )
        ]
    else:
        entries = [entry(obj, "appeared") for obj in result.created]
        entries += [entry(obj, *_describe_change(obj, changed)) for obj, changed in result.changed]
        entries += [entry(obj, "gone") for obj in result.gone]
    InventoryChange.objects.bulk_create(entries)


def _publish(host, kind: str, result: SyncResult, *, complete: bool) -> None:
    """Tell the host's groups what a sync changed: every changed object, or for a large reconcile one
    host-wide "inventory.changed" (pages refetch)."""
    if not result.count:
        return
    groups = ["all", f"team-{host.team_id}", f"host-{host.pk}"]
    if complete and result.count > PER_OBJECT_EVENT_LIMIT:
        event = {"type": "inventory.changed", "kind": kind, "host": host.pk, "count": result.count}
        publish(groups, {"type": "batch", "events": [event]})
        return
    events = [object_event(obj, f"{kind}.created") for obj in result.created]
    events += [object_event(obj, f"{kind}.updated") for obj, _ in result.changed]
    events += [object_event(obj, f"{kind}.gone") for obj in result.gone]
    # A burst of events (hostd, bulk jobs) keeps per-object events, in messages of a bounded size, so
    # that open pages update their rows instead of all refetching at once.
    for start in range(0, len(events), PER_OBJECT_EVENT_LIMIT):
        publish(groups, {"type": "batch", "events": events[start : start + PER_OBJECT_EVENT_LIMIT]})
