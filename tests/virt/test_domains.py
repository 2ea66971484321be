"""Bulk listing, XML parsing, details, power actions and their refusals."""

from __future__ import annotations

import dataclasses
import threading

import libvirt
import pytest

from apps.virt import (
    ACTIONS,
    STATE_REASONS,
    InvalidInput,
    InvalidState,
    NotFound,
    action_refusal,
    force_off,
    get_domain,
    get_domains,
    list_domains,
    parse_domain_xml,
    pause,
    reboot,
    resume,
    shutdown,
    start,
)
from apps.virt import domains as domains_module

from .conftest import DOMAIN_COUNT


def _uuid(index: int) -> str:
    return f"00000000-0000-4000-8000-{index:012d}"


def test_list_domains_bulk(node_conn: libvirt.virConnect) -> None:
    vms = {vm.name: vm for vm in list_domains(node_conn)}
    assert len(vms) == DOMAIN_COUNT
    off, on = vms["vm03"], vms["vm07"]
    assert off.state == "shutoff" and off.id is None and off.cpu_time_ns is None
    assert on.state == "running" and on.id is not None
    assert sum(vm.state == "shutoff" for vm in vms.values()) == len(range(0, DOMAIN_COUNT, 3))
    assert on.uuid == _uuid(7) and on.title == "Machine 7"
    assert (on.vcpus, on.max_vcpus) == (2, 4)
    assert (on.memory_kib, on.max_memory_kib) == (512 * 8 * 1024, 1024 * 8 * 1024)
    assert on.persistent is True and on.autostart is False
    assert (on.os_type, on.arch) == ("hvm", "i686")
    disk = on.disks[0]
    assert (disk.target, disk.device, disk.bus, disk.format, disk.readonly) == (
        "vda",
        "disk",
        "virtio",
        "qcow2",
        False,
    )
    assert disk.source == "/var/lib/libvirt/images/vm07.qcow2"
    nic = on.nics[0]
    assert (nic.mac, nic.type, nic.source, nic.model) == ("52:54:00:00:00:07", "network", "net0", "virtio")
    five = vms["vm05"]
    assert [d.device for d in five.disks] == ["disk", "cdrom"] and five.disks[1].readonly
    gfx = five.graphics[0]
    assert (gfx.type, gfx.listen, gfx.autoport) == ("vnc", "127.0.0.1", True)


def test_list_domains_uses_one_stats_call(
    node_conn: libvirt.virConnect, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[object] = []
    real = domains_module._bulk_stats

    def counting(conn: libvirt.virConnect, doms: object) -> object:
        calls.append(doms)
        return real(conn, doms)  # type: ignore[arg-type]

    monkeypatch.setattr(domains_module, "_bulk_stats", counting)
    assert len(list_domains(node_conn)) == DOMAIN_COUNT
    assert calls == [None]


def test_list_domains_skips_vanished(node_conn: libvirt.virConnect, monkeypatch: pytest.MonkeyPatch) -> None:
    real = domains_module._describe
    removed: list[str] = []

    def remove(name: str) -> None:
        dom = node_conn.lookupByName(name)
        if dom.isActive():
            dom.destroy()
        dom.undefine()
        removed.append(name)

    def vanishing(dom: libvirt.virDomain, stats: object, with_addresses: bool, **bulk: object) -> object:
        if not removed:  # after listAllDomains, before its XML is read: this VM and a later one vanish
            remove(dom.name())
            remove("vm49" if dom.name() != "vm49" else "vm48")
        return real(dom, stats, with_addresses, **bulk)  # type: ignore[arg-type]

    monkeypatch.setattr(domains_module, "_describe", vanishing)
    names = [vm.name for vm in list_domains(node_conn)]
    assert len(removed) == 2 and not set(removed) & set(names)
    assert len(names) == DOMAIN_COUNT - 2


def test_addresses_come_from_leases(default_conn: libvirt.virConnect) -> None:
    # One VM: its own lease query (the test driver makes up a lease per interface).
    vm = get_domain(default_conn, default_conn.lookupByName("test").UUIDString(), with_addresses=True)
    assert vm.nics[0].addresses
    # Every VM: one lease query per network, never one per VM (the test driver's network has no leases).
    calls: list[str] = []
    real = domains_module._lease_map
    domains_module._lease_map = lambda conn: calls.append("leases") or real(conn)  # type: ignore[assignment]
    try:
        (listed,) = list_domains(default_conn, with_addresses=True)
    finally:
        domains_module._lease_map = real  # type: ignore[assignment]
    assert calls == ["leases"] and listed.name == "test" and listed.nics[0].addresses == []
    (plain,) = list_domains(default_conn)
    assert plain.nics[0].addresses == []


def test_get_domain(node_conn: libvirt.virConnect) -> None:
    vm = get_domain(node_conn, _uuid(4))
    assert vm.name == "vm04" and vm.state == "running"
    with pytest.raises(NotFound) as info:
        get_domain(node_conn, "12345678-1234-1234-1234-123456789abc")
    assert "12345678-1234-1234-1234-123456789abc" in info.value.message
    with pytest.raises(InvalidInput):
        get_domain(node_conn, "not-a-uuid")


def test_parse_domain_xml_units_and_defaults() -> None:
    parsed = parse_domain_xml(
        "<domain type='kvm' id='7'><name>web1</name><uuid>u</uuid>"
        "<memory unit='GiB'>2</memory><vcpu>3</vcpu>"
        "<os><type arch='x86_64' machine='pc-q35-7.2'>hvm</type></os>"
        "<devices><disk type='volume' device='disk'><source pool='default' volume='web1.qcow2'/>"
        "<target dev='vda'/></disk>"
        "<interface type='bridge'><source bridge='br0'/><target dev='vnet3'/></interface>"
        "<graphics type='spice' port='5901' autoport='no'><listen type='address' address='0.0.0.0'/>"
        "</graphics></devices></domain>"
    )
    assert (parsed.id, parsed.domain_type, parsed.machine) == (7, "kvm", "pc-q35-7.2")
    assert parsed.memory_kib == parsed.max_memory_kib == 2 * 1024 * 1024
    assert parsed.vcpus == parsed.max_vcpus == 3
    assert parsed.disks[0].source == "default/web1.qcow2" and parsed.disks[0].bus is None
    assert (parsed.nics[0].type, parsed.nics[0].source, parsed.nics[0].target) == ("bridge", "br0", "vnet3")
    assert (parsed.graphics[0].port, parsed.graphics[0].listen) == (5901, "0.0.0.0")


def test_parse_domain_xml_refuses_entities() -> None:
    evil = (
        '<?xml version="1.0"?><!DOCTYPE d [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
        "<domain><name>&x;</name></domain>"
    )
    parsed = parse_domain_xml(evil)
    assert "root:" not in parsed.name
    with pytest.raises(InvalidInput):
        parse_domain_xml("<domain><name>")


def test_actions_cycle_on_generated_node(node_conn: libvirt.virConnect) -> None:
    uuid = _uuid(3)  # shut off

    def state() -> str:
        return get_domain(node_conn, uuid).state

    start(node_conn, uuid)
    assert state() == "running"
    pause(node_conn, uuid)
    assert state() == "paused"
    resume(node_conn, uuid)
    assert state() == "running"
    reboot(node_conn, uuid)
    assert state() == "running"
    shutdown(node_conn, uuid)
    assert state() == "shutoff"  # the test driver's guest obeys at once
    start(node_conn, uuid)
    force_off(node_conn, uuid)
    vm = get_domain(node_conn, uuid)
    assert (vm.state, vm.state_reason) == ("shutoff", "destroyed")


@pytest.mark.parametrize(
    ("action", "message"),
    [
        ("start", "VM test is already running."),
        ("resume", "VM test is not paused."),
    ],
)
def test_invalid_state_on_default_running_vm(
    default_conn: libvirt.virConnect, action: str, message: str
) -> None:
    uuid = default_conn.lookupByName("test").UUIDString()
    with pytest.raises(InvalidState) as info:
        ACTIONS[action](default_conn, uuid)
    assert info.value.message == message


def test_actions_on_default_vm_restore_state(default_conn: libvirt.virConnect) -> None:
    dom = default_conn.lookupByName("test")
    uuid = dom.UUIDString()
    try:
        pause(default_conn, uuid)
        with pytest.raises(InvalidState, match="VM test is already paused."):
            pause(default_conn, uuid)
        force_off(default_conn, uuid)
        for action in ("shutdown", "reboot", "pause", "resume"):
            with pytest.raises(InvalidState, match="VM test is not running; start it first."):
                ACTIONS[action](default_conn, uuid)
        with pytest.raises(InvalidState, match="VM test is already off."):
            force_off(default_conn, uuid)
        start(default_conn, uuid)
        assert dom.state()[0] == libvirt.VIR_DOMAIN_RUNNING
    finally:
        if dom.state()[0] == libvirt.VIR_DOMAIN_PAUSED:
            dom.resume()
        if dom.state()[0] == libvirt.VIR_DOMAIN_SHUTOFF:
            dom.create()


def test_action_on_missing_vm_is_not_found(node_conn: libvirt.virConnect) -> None:
    with pytest.raises(NotFound):
        start(node_conn, "12345678-1234-1234-1234-123456789abc")


def test_concurrent_start_reports_state_not_traceback(node_conn: libvirt.virConnect) -> None:
    errors: list[Exception] = []

    def go() -> None:
        try:
            start(node_conn, _uuid(6))
        except InvalidState as exc:
            errors.append(exc)
        except Exception as exc:  # another VirtError from libvirt's own check is fine, a raw error is not
            assert not isinstance(exc, libvirt.libvirtError)
            errors.append(exc)

    threads = [threading.Thread(target=go) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(errors) == 3
    assert get_domain(node_conn, _uuid(6)).state == "running"


REFUSALS = {
    # state: (start, shutdown, reboot, force_off, pause, resume) -> True means allowed
    "running": (False, True, True, True, True, False),
    "blocked": (False, True, True, True, True, False),
    "paused": (False, False, False, True, False, True),
    "shutdown": (False, False, False, True, False, False),
    "shutoff": (True, False, False, False, False, False),
    "crashed": (False, False, False, True, False, False),
    "pmsuspended": (False, False, False, True, False, False),
    "nostate": (False, False, False, False, False, False),
}


@pytest.mark.parametrize("state", list(REFUSALS))
def test_action_refusal_table(state: str) -> None:
    for action, allowed in zip(
        ("start", "shutdown", "reboot", "force_off", "pause", "resume"), REFUSALS[state], strict=True
    ):
        reason = action_refusal(action, state)
        if allowed:
            assert reason is None, (action, state)
        else:
            assert reason and reason.startswith("The VM ") and reason.endswith("."), (action, state, reason)


def test_action_refusal_wording() -> None:
    assert action_refusal("start", "running") == "The VM is already running."
    assert action_refusal("shutdown", "shutoff") == "The VM is not running; start it first."
    assert action_refusal("start", "paused") == "The VM is paused; resume it instead."
    with pytest.raises(InvalidInput):
        action_refusal("explode", "running")
    assert set(ACTIONS) == {
        "start",
        "shutdown",
        "force_off",
        "reboot",
        "pause",
        "resume",
        "reset",
        "save",
        "restore",
    }
    assert action_refusal("save", "shutoff") == "The VM is not running; there is nothing to save."
    assert action_refusal("save", "paused") is None and action_refusal("reset", "running") is None
    assert action_refusal("restore", "running") == "The VM is already running."
    assert action_refusal("restore", "shutoff") is None  # whether a saved state exists is checked on the VM


def test_state_reasons() -> None:
    assert STATE_REASONS[("running", libvirt.VIR_DOMAIN_RUNNING_BOOTED)] == "booted"
    assert STATE_REASONS[("paused", libvirt.VIR_DOMAIN_PAUSED_USER)] == "user"
    assert STATE_REASONS[("shutoff", libvirt.VIR_DOMAIN_SHUTOFF_DESTROYED)] == "destroyed"
    assert STATE_REASONS[("shutoff", libvirt.VIR_DOMAIN_SHUTOFF_SAVED)] == "saved"
    assert STATE_REASONS[("crashed", libvirt.VIR_DOMAIN_CRASHED_PANICKED)] == "panicked"


def test_get_domains_reads_many_and_reports_missing(node_conn: libvirt.virConnect) -> None:
    absent = "12345678-1234-1234-1234-123456789abc"
    infos, missing = get_domains(node_conn, [_uuid(1), absent, _uuid(2)])
    assert sorted(vm.name for vm in infos) == ["vm01", "vm02"]
    assert missing == [absent]


def test_get_domains_reads_a_burst_host_wide_with_the_same_result(
    node_conn: libvirt.virConnect, monkeypatch: pytest.MonkeyPatch
) -> None:
    from apps.virt import domains

    uuids = [_uuid(i) for i in range(12)]
    node_conn.lookupByUUIDString(uuids[3]).setAutostart(1)
    node_conn.lookupByUUIDString(uuids[5]).undefine()  # running, so it stays as a transient VM
    monkeypatch.setattr(domains, "BULK_READ_THRESHOLD", 10_000)
    one_by_one, _ = get_domains(node_conn, uuids)
    monkeypatch.setattr(domains, "BULK_READ_THRESHOLD", 1)
    listed = []
    real_list = node_conn.listAllDomains
    monkeypatch.setattr(node_conn, "listAllDomains", lambda flags=0: listed.append(flags) or real_list(flags))
    absent = "12345678-1234-1234-1234-123456789abc"
    host_wide, missing = get_domains(node_conn, [*uuids, absent])
    assert listed, "a burst reads the host-wide listings"
    assert missing == [absent]
    differences = [
        (a["name"], key, a[key], b[key])
        for a, b in zip(map(dataclasses.asdict, host_wide), map(dataclasses.asdict, one_by_one), strict=True)
        for key in a
        if a[key] != b[key]
    ]
    assert differences == []
    by_uuid = {i.uuid: i for i in host_wide}
    assert by_uuid[uuids[3]].autostart and not by_uuid[uuids[4]].autostart
    assert not by_uuid[uuids[5]].persistent and by_uuid[uuids[4]].persistent
