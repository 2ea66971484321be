"""The mirror's bulk sync: what it saves for new, changed and vanished objects, and what it publishes."""

import uuid as uuidlib

import pytest

from apps.core import mirror
from apps.core.mirror import PER_OBJECT_EVENT_LIMIT, sync_host_objects
from apps.core.models import InventoryChange
from apps.vms.models import VirtualMachine

pytestmark = pytest.mark.django_db


@pytest.fixture
def published(monkeypatch) -> list[tuple[list[str], dict]]:
    sent: list[tuple[list[str], dict]] = []
    monkeypatch.setattr(mirror, "publish", lambda groups, event: sent.append((groups, event)))
    return sent


def _rows(count: int, state: str = "running") -> dict[str, dict]:
    return {
        str(uuidlib.uuid5(uuidlib.NAMESPACE_DNS, f"vm{i}.mirror.test")): {
            "name": f"vm{i:03d}",
            "state": state,
        }
        for i in range(count)
    }


@pytest.fixture
def host(team):
    from apps.hosts.models import Host

    return Host.objects.create(team=team, name="mirror-host", uri="test:///default")


def test_a_burst_keeps_per_object_events_in_bounded_messages(host, published):
    count = PER_OBJECT_EVENT_LIMIT * 2 + 7
    result = sync_host_objects(VirtualMachine, host, _rows(count), complete=False)
    assert len(result.created) == count
    sizes = [len(event["events"]) for _, event in published]
    assert sizes == [PER_OBJECT_EVENT_LIMIT, PER_OBJECT_EVENT_LIMIT, 7]
    names = [e["data"]["name"] for _, event in published for e in event["events"]]
    assert sorted(names) == sorted(r["name"] for r in _rows(count).values())
    assert all(e["type"] == "vm.created" for _, event in published for e in event["events"])
    assert published[0][0] == ["all", f"team-{host.team_id}", f"host-{host.pk}"]


def test_a_large_reconcile_sends_one_inventory_event_and_one_feed_entry(host, published):
    count = PER_OBJECT_EVENT_LIMIT + 1
    sync_host_objects(VirtualMachine, host, _rows(count), complete=True)
    assert [event["events"] for _, event in published] == [
        [{"type": "inventory.changed", "kind": "vm", "host": host.pk, "count": count}]
    ]
    assert list(InventoryChange.objects.filter(host=host).values_list("event", flat=True)) == ["inventory"]


def test_vanished_objects_are_marked_gone_together_and_come_back(host, published):
    rows = _rows(5)
    sync_host_objects(VirtualMachine, host, rows, complete=True)
    keep = dict(list(rows.items())[:2])
    published.clear()
    result = sync_host_objects(VirtualMachine, host, keep, complete=True)
    assert len(result.gone) == 3 and not result.created and not result.changed
    gone = VirtualMachine.objects.filter(host=host, gone=True)
    assert gone.count() == 3
    assert all(vm.gone_since is not None and vm.updated == vm.gone_since for vm in gone)
    assert VirtualMachine.objects.filter(host=host, gone=False).count() == 2
    assert sorted(e["type"] for _, event in published for e in event["events"]) == ["vm.gone"] * 3
    assert all(e["data"]["gone"] for _, event in published for e in event["events"])

    back = sync_host_objects(VirtualMachine, host, rows, complete=True)
    assert len(back.changed) == 3 and all("gone" in fields for _, fields in back.changed)
    assert not VirtualMachine.objects.filter(host=host, gone=True).exists()
    assert VirtualMachine.objects.filter(host=host, gone_since__isnull=False).count() == 0


def test_an_incremental_sync_marks_only_the_named_uuids_gone(host, published):
    rows = _rows(4)
    sync_host_objects(VirtualMachine, host, rows, complete=True)
    first, second = list(rows)[:2]
    result = sync_host_objects(VirtualMachine, host, {}, complete=False, gone=[first])
    assert [str(vm.uuid) for vm in result.gone] == [first]
    assert set(VirtualMachine.objects.filter(host=host, gone=True).values_list("uuid", flat=True)) == {
        uuidlib.UUID(first)
    }
    assert not VirtualMachine.objects.get(host=host, uuid=second).gone


def test_many_new_rows_are_written_as_bulk_create_would(team, published, monkeypatch):
    """Above COPY_THRESHOLD, PostgreSQL gets new rows through COPY: the same values, keys and feed."""
    from apps.hosts.models import Host

    rows = {
        key: {
            **values,
            "title": "a 'quoted' \\ title\twith\ttabs",
            "description": "line one\nline two, ünïcode, \\N, NULL",
            "memory_kib": 2**40,
            "disks": [{"target": "vda", "source": "/a b/c'd.qcow2", "readonly": False}],
            "nics": [{"mac": "52:54:00:00:00:01", "addresses": ["192.0.2.7"]}],
            "addresses": ["192.0.2.7"],
            "persistent": False,
            "cpu_time_ns": None,
        }
        for key, values in _rows(12).items()
    }
    results = {}
    for name, threshold in (("insert", 10**9), ("copy", 1)):
        monkeypatch.setattr(mirror, "COPY_THRESHOLD", threshold)
        host = Host.objects.create(team=team, name=f"mirror-{name}", uri="test:///default")
        result = sync_host_objects(VirtualMachine, host, rows, complete=False)
        assert all(obj.pk and not obj._state.adding for obj in result.created)
        assert {obj.pk for obj in result.created} == set(
            VirtualMachine.objects.filter(host=host).values_list("pk", flat=True)
        )
        stored = VirtualMachine.objects.filter(host=host).order_by("uuid").values()
        results[name] = [
            {k: v for k, v in row.items() if k not in ("id", "host_id", "first_seen", "updated")}
            for row in stored
        ]
        assert all(row["first_seen"] and row["updated"] for row in stored)
    assert results["copy"] == results["insert"]
    assert results["copy"][0]["title"] == "a 'quoted' \\ title\twith\ttabs"
