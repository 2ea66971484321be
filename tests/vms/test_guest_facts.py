"""Guest addresses on libvirt's test driver: from the guest agent where its channel is connected, else
from DHCP leases; shown on the VM page, in the list and in the API."""

import pytest
from lxml import etree
from rest_framework.test import APIClient

from apps import virt
from apps.hosts.services import connection_for, reconcile_host
from apps.vms.models import VirtualMachine

pytestmark = pytest.mark.django_db


def define_running(conn, name, *, agent: bool):
    root = etree.fromstring(conn.lookupByName("test").XMLDesc(0))
    root.attrib.pop("id", None)
    root.find("name").text = name
    root.remove(root.find("uuid"))
    root.find("devices/interface/mac").set("address", "52:54:00:12:34:56" if agent else "52:54:00:12:34:57")
    root.find("devices/interface/target").set("dev", f"{name}0")
    if agent:
        channel = etree.SubElement(root.find("devices"), "channel", type="unix")
        etree.SubElement(channel, "target", type="virtio", name="org.qemu.guest_agent.0", state="connected")
    dom = conn.defineXML(etree.tostring(root, encoding="unicode"))
    dom.create()
    return dom


def test_agent_addresses_first(test_host, client_for, viewer):
    conn = connection_for(test_host)
    define_running(conn, "withagent", agent=True)
    define_running(conn, "noagent", agent=False)
    with_agent = virt.get_domain(conn, str(conn.lookupByName("withagent").UUIDString()), with_addresses=True)
    assert with_agent.address_source == "agent" and with_agent.nics[0].addresses
    no_agent = virt.get_domain(conn, str(conn.lookupByName("noagent").UUIDString()), with_addresses=True)
    assert no_agent.address_source in ("lease", "")  # the lease answer, whatever it holds
    assert virt.parse_domain_xml(conn.lookupByName("withagent").XMLDesc(0)).guest_agent is True
    assert virt.parse_domain_xml(conn.lookupByName("noagent").XMLDesc(0)).guest_agent is False

    reconcile_host(test_host)
    vm = VirtualMachine.objects.get(host=test_host, name="withagent")
    assert vm.address_source == "agent" and vm.addresses == with_agent.nics[0].addresses
    client = client_for(viewer)
    page = client.get(f"/vms/{vm.pk}/").content.decode()
    assert vm.addresses[0] in page and "from the guest agent" in page
    assert vm.addresses[0] in client.get("/vms/?q=withagent").content.decode()
    api = APIClient()
    api.force_authenticate(viewer)
    row = api.get("/api/v1/vms/?q=withagent").json()["results"][0]
    assert row["addresses"] == vm.addresses and row["address_source"] == "agent"


def test_stopped_vm_has_no_addresses(test_host):
    conn = connection_for(test_host)
    dom = define_running(conn, "stopping", agent=True)
    dom.destroy()
    reconcile_host(test_host)
    vm = VirtualMachine.objects.get(host=test_host, name="stopping")
    assert vm.addresses == [] and vm.address_source == "" and vm.address_source_label == ""


@pytest.mark.integration
def test_disconnected_agent_falls_back_at_once(libvirt_system, disk_vm_factory, transactional_db):
    import time

    from tests.fixtures.libvirt_env import wait_for_text
    from tests.fixtures.tinyguest import READY_MARKER

    guest = disk_vm_factory()
    root = etree.fromstring(guest.domain.XMLDesc(0))
    channel = etree.SubElement(root.find("devices"), "channel", type="unix")
    etree.SubElement(channel, "target", type="virtio", name="org.qemu.guest_agent.0")
    dom = libvirt_system.defineXML(etree.tostring(root, encoding="unicode"))
    dom.create()
    wait_for_text(guest.serial_log, READY_MARKER, 90, alive=lambda: bool(dom.isActive()))
    live = virt.parse_domain_xml(dom.XMLDesc(0))
    assert live.guest_agent is False  # the tiny guest runs no agent: QEMU says "disconnected"
    started = time.monotonic()
    conn = virt.open_connection("qemu:///system")
    try:
        info = virt.get_domain(conn, guest.uuid, with_addresses=True)
    finally:
        virt.close_connection(conn)
    assert time.monotonic() - started < 5
    assert info.address_source == "" and info.state == "running"
