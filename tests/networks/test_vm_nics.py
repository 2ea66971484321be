"""A VM's NICs on the real libvirtd: link state and network changed live on a running tiny guest,
a host bridge and a macvtap device where libvirt allows it (else saved for the next boot), reserve the
NIC's address, pages and API by role. The guest sends no traffic; its networks are isolated."""

from __future__ import annotations

import contextlib

import libvirt
import pytest
from lxml import etree
from rest_framework.test import APIClient

from apps import virt
from apps.core.mirror import sync_host_objects
from apps.networks import services
from apps.vms.models import VirtualMachine
from apps.vms.services import domain_fields
from tests.fixtures.libvirt_env import remove_domain, tiny_guest_xml

pytestmark = [pytest.mark.integration, pytest.mark.django_db]

MAC = "52:54:00:37:0a:01"


@pytest.fixture
def nic_vm(system_host, owner, host_links, libvirt_system, tiny_guest_files, domain_type, run_prefix):
    """A running persistent tiny guest with one NIC on isolated network A; networks A and B exist."""
    for suffix, subnet in (("a", 10), ("b", 11)):
        services.create_network(
            owner,
            system_host,
            {
                "name": run_prefix + f"nic-{suffix}",
                "mode": "isolated",
                "bridge": host_links.name(f"n{suffix}"),
                "ipv4_address": f"10.237.{subnet}.1/24",
                "ipv4_dhcp_start": f"10.237.{subnet}.100",
                "ipv4_dhcp_end": f"10.237.{subnet}.150",
            },
        )
    root = etree.fromstring(
        tiny_guest_xml(run_prefix + "nic", tiny_guest_files, domain_type=domain_type, vnc=False).encode()
    )
    iface = etree.SubElement(root.find("devices"), "interface", type="network")
    etree.SubElement(iface, "mac", address=MAC)
    etree.SubElement(iface, "source", network=run_prefix + "nic-a")
    etree.SubElement(iface, "model", type="virtio")
    dom = libvirt_system.defineXML(etree.tostring(root, encoding="unicode"))
    try:
        dom.create()
        info = virt.get_domain(libvirt_system, dom.UUIDString())
        sync_host_objects(VirtualMachine, system_host, {info.uuid: domain_fields(info)}, complete=False)
        yield VirtualMachine.objects.get(host=system_host, uuid=info.uuid), dom
    finally:
        with contextlib.suppress(libvirt.libvirtError):
            remove_domain(dom)


def _nic(dom: libvirt.virDomain, flags: int = 0) -> etree._Element:
    root = etree.fromstring(dom.XMLDesc(flags).encode())
    return next(i for i in root.findall("devices/interface") if i.find("mac").get("address") == MAC)


def test_link_state_and_network_change_live(nic_vm, owner, operator, run_prefix, host_links, system_host):
    vm, dom = nic_vm
    change = services.set_vm_nic(operator, vm, MAC, link_up=False)
    assert change.live and change.config
    assert _nic(dom).find("link").get("state") == "down"
    assert _nic(dom, libvirt.VIR_DOMAIN_XML_INACTIVE).find("link").get("state") == "down"
    vm.refresh_from_db()
    assert vm.nics[0]["link"] == "down"
    services.set_vm_nic(operator, vm, MAC, link_up=True)
    assert _nic(dom).find("link").get("state") == "up"

    change = services.set_vm_nic(owner, vm, MAC, kind="network", source=run_prefix + "nic-b")
    assert change.live and change.config
    assert _nic(dom).find("source").get("network") == run_prefix + "nic-b"
    vm.refresh_from_db()
    assert vm.nics[0]["source"] == run_prefix + "nic-b"
    assert dom.isActive() == 1

    # Reserve an address for the NIC on the network it is on now.
    network = services.reserve_vm_address(owner, vm, MAC, "10.237.11.50")
    assert {"mac": MAC, "ip": "10.237.11.50"}.items() <= network.details["dhcp_hosts"][0].items()

    # A host bridge made by the test, then a macvtap device (a veth end): live where libvirt can.
    bridge = host_links.bridge("hb")
    tap = host_links.veth("ht")
    services.refresh_interfaces(system_host)
    change = services.set_vm_nic(owner, vm, MAC, kind="bridge", source=bridge)
    assert change.config
    inactive = _nic(dom, libvirt.VIR_DOMAIN_XML_INACTIVE)
    assert inactive.get("type") == "bridge" and inactive.find("source").get("bridge") == bridge
    if change.live:
        assert _nic(dom).find("source").get("bridge") == bridge
    else:
        assert change.detail
    change = services.set_vm_nic(owner, vm, MAC, kind="direct", source=tap, mode="vepa")
    assert change.config
    inactive = _nic(dom, libvirt.VIR_DOMAIN_XML_INACTIVE)
    assert inactive.get("type") == "direct" and inactive.find("source").attrib == {"dev": tap, "mode": "vepa"}
    if not change.live:
        assert change.detail  # libvirt's reason, shown with "applies at the next boot"
    assert dom.isActive() == 1

    from apps.audit.models import AuditEntry

    assert AuditEntry.objects.filter(action="vm.nic_update", object_id=vm.pk, outcome="success").count() == 5


def test_bad_nic_input_is_refused_before_libvirt(nic_vm, owner, run_prefix):
    vm, dom = nic_vm
    for kwargs, text in (
        ({"kind": "network", "source": "nope"}, "no network called"),
        ({"kind": "bridge", "source": "br0;reboot"}, "not a valid interface name"),
        ({"kind": "bridge", "source": "nobridge0"}, "no bridge called"),
        ({"kind": "direct", "source": "eth0", "mode": "weird"}, "macvtap mode"),
        ({"kind": "tunnel", "source": "x"}, "connects to"),
        ({}, "Nothing to change"),
    ):
        with pytest.raises(services.NetworkInputError, match=text):
            services.set_vm_nic(owner, vm, MAC, **kwargs)
    with pytest.raises(services.NetworkInputError, match="multicast"):
        services.set_vm_nic(owner, vm, "01:00:5e:00:00:01", link_up=False)
    with pytest.raises(services.NetworkInputError, match="no NIC with MAC"):
        services.set_vm_nic(owner, vm, "52:54:00:00:00:99", link_up=False)
    assert _nic(dom).find("source").get("network") == run_prefix + "nic-a"


def test_nic_page_and_api_by_role(nic_vm, client_for, owner, operator, viewer, outsider, run_prefix):
    vm, dom = nic_vm
    page = client_for(viewer).get(f"/networks/vm/{vm.pk}/nics/").content.decode()
    assert MAC in page and "Plug in" not in page and "Unplug" not in page and "Connect</button>" not in page
    assert (
        client_for(viewer).post(f"/networks/vm/{vm.pk}/nics/link/", {"mac": MAC, "state": "down"}).status_code
        == 403
    )
    assert client_for(outsider).get(f"/networks/vm/{vm.pk}/nics/").status_code == 404
    assert client_for(outsider).post(f"/networks/vm/{vm.pk}/nics/link/", {"mac": MAC}).status_code == 404
    client = client_for(operator)
    assert "Unplug" in client.get(f"/networks/vm/{vm.pk}/nics/").content.decode()
    assert client.post(f"/networks/vm/{vm.pk}/nics/link/", {"mac": MAC, "state": "down"}).status_code == 302
    assert _nic(dom).find("link").get("state") == "down"
    target = f"network:{run_prefix}nic-b"
    assert (
        client.post(f"/networks/vm/{vm.pk}/nics/connect/", {"mac": MAC, "target": target}).status_code == 403
    )
    assert (
        client_for(owner)
        .post(f"/networks/vm/{vm.pk}/nics/connect/", {"mac": MAC, "target": target})
        .status_code
        == 302
    )
    assert _nic(dom).find("source").get("network") == run_prefix + "nic-b"

    def api(user):
        c = APIClient()
        c.force_authenticate(user)
        return c

    body = api(viewer).get(f"/api/v1/vm-nics/{vm.pk}/").json()
    assert body["nics"][0]["mac"] == MAC and any(
        n["name"] == run_prefix + "nic-a" for n in body["choices"]["networks"]
    )
    assert api(outsider).get(f"/api/v1/vm-nics/{vm.pk}/").status_code == 404
    assert (
        api(viewer)
        .post(f"/api/v1/vm-nics/{vm.pk}/link/", {"mac": MAC, "up": True}, format="json")
        .status_code
        == 403
    )
    response = api(operator).post(f"/api/v1/vm-nics/{vm.pk}/link/", {"mac": MAC, "up": True}, format="json")
    assert response.status_code == 200 and response.json()["live"] is True
    assert _nic(dom).find("link").get("state") == "up"
    bad = api(owner).post(
        f"/api/v1/vm-nics/{vm.pk}/connect/", {"mac": MAC, "kind": "network", "source": "x'y"}, format="json"
    )
    assert bad.status_code == 400 and "no network called" in bad.json()["detail"]
    assert (
        api(operator)
        .post(f"/api/v1/vm-nics/{vm.pk}/reserve/", {"mac": MAC, "ip": "10.237.11.60"}, format="json")
        .status_code
        == 403
    )
    reserved = api(owner).post(
        f"/api/v1/vm-nics/{vm.pk}/reserve/", {"mac": MAC, "ip": "10.237.11.60"}, format="json"
    )
    assert reserved.status_code == 200, reserved.content
