"""The integration test bed itself: the tiny guest boots, talks on serial and obeys ACPI."""

from __future__ import annotations

import os
import time

import libvirt
import pytest
from lxml import etree

from tests.fixtures.guest import TinyVM, TinyVMFactory
from tests.fixtures.libvirt_env import RUN_PREFIX, cleanup_prefixed
from tests.fixtures.tinyguest import POWEROFF_MARKER, READY_MARKER, SHELL_PROMPT

pytestmark = pytest.mark.integration


def _serial_pty(dom: libvirt.virDomain) -> str:
    """Host path of the guest's serial pty (from the live domain XML)."""
    tree = etree.fromstring(dom.XMLDesc(0).encode())
    paths = tree.xpath("/domain/devices/serial[@type='pty']/source/@path")
    assert paths, "no pty source path in the live XML"
    return str(paths[0])


def test_boots_to_ready_and_serial_shell_answers(tiny_vm: TinyVM, record_property) -> None:
    """READY, then a shell prompt, on serial; the shell runs a command typed on the pty."""
    ready_end = tiny_vm.wait_for_serial(READY_MARKER, timeout=1)
    prompt_end = tiny_vm.wait_for_serial(SHELL_PROMPT, timeout=15, start=ready_end)

    fd = os.open(_serial_pty(tiny_vm.domain), os.O_RDWR | os.O_NOCTTY)
    try:
        os.write(fd, b"echo $((6 * 7))-vireo-ok\n")
        tiny_vm.wait_for_serial("42-vireo-ok", timeout=15, start=prompt_end)
    finally:
        os.close(fd)
    record_property("boot_to_ready_seconds", round(tiny_vm.boot_seconds, 2))
    print(f"\n{tiny_vm.domain_type} boot to READY: {tiny_vm.boot_seconds:.2f} s")


def test_guest_has_no_network_and_local_only_vnc(tiny_vm: TinyVM) -> None:
    """Network safety: no NIC at all, and VNC listens on 127.0.0.1 only."""
    tree = etree.fromstring(tiny_vm.domain.XMLDesc(0).encode())
    assert tree.xpath("/domain/devices/interface") == []
    graphics = tree.xpath("/domain/devices/graphics[@type='vnc']")
    assert len(graphics) == 1
    assert graphics[0].get("listen") == "127.0.0.1"
    assert {el.get("address") for el in graphics[0].xpath("listen")} == {"127.0.0.1"}
    assert int(graphics[0].get("port")) >= 5900
    assert tiny_vm.name.startswith(RUN_PREFIX)


def test_acpi_shutdown_powers_off(tiny_vm: TinyVM, record_property) -> None:
    """``shutdown()`` presses the ACPI power button; the guest powers off within 30 s."""
    started = time.monotonic()
    tiny_vm.domain.shutdown()
    tiny_vm.wait_for_state(libvirt.VIR_DOMAIN_SHUTOFF, timeout=30)
    elapsed = time.monotonic() - started
    assert POWEROFF_MARKER in tiny_vm.serial_output()
    assert tiny_vm.domain.isPersistent()  # still defined: the fixture undefines it
    record_property("acpi_shutdown_seconds", round(elapsed, 2))
    print(f"\nACPI shutdown: {elapsed:.2f} s")


def test_boots_under_tcg_quickly(tiny_vm_factory: TinyVMFactory, record_property) -> None:
    """Even without KVM the tiny guest is READY well within 30 s."""
    vm = tiny_vm_factory(domain_type="qemu", vnc=False)
    assert vm.boot_seconds < 45
    record_property("tcg_boot_to_ready_seconds", round(vm.boot_seconds, 2))
    print(f"\nTCG boot to READY: {vm.boot_seconds:.2f} s")


def test_cleanup_refuses_foreign_prefixes(libvirt_system: libvirt.virConnect) -> None:
    """``cleanup_prefixed`` never accepts a prefix that could match non-test objects."""
    for prefix in ("", "vireo-", "vireo-test-", "default", "web"):
        with pytest.raises(ValueError):
            cleanup_prefixed(libvirt_system, prefix)
