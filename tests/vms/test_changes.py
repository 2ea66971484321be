"""Changing VMs through the API on libvirt's test driver: settings (live or pending), XML editor and its
policy, templates, permissions and bad input."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from apps.audit.models import AuditEntry
from apps.hosts.services import connection_for
from apps.virt import parse_xml
from apps.virt.builder import DomainSpec, build_domain_xml
from apps.virt.domedit import define_domain, remove_domain
from apps.vms.models import VirtualMachine
from apps.vms.services import refresh_vm

pytestmark = pytest.mark.django_db


def api(user):
    client = APIClient()
    client.force_authenticate(user)
    return client


@pytest.fixture
def vm(test_host):
    """A running VM of its own on the test driver (test:///default is shared: the 'test' VM stays as it is)."""
    conn = connection_for(test_host)
    spec = DomainSpec(
        name="change-me",
        domain_type="test",
        arch="i686",
        vcpus=1,
        max_vcpus=4,
        memory_mib=256,
        max_memory_mib=512,
    )
    uuid = define_domain(conn, build_domain_xml(spec))
    conn.lookupByUUIDString(uuid).create()
    row = VirtualMachine.objects.create(host=test_host, team=test_host.team, uuid=uuid, name="change-me")
    yield refresh_vm(row, conn)
    remove_domain(connection_for(test_host), uuid)


def test_settings_live_and_pending(owner, vm):
    response = api(owner).patch(
        f"/api/v1/vms/{vm.pk}/",
        {
            "vcpus": 3,
            "memory_mib": 384,
            "title": "Büro <1>",
            "description": "x & y",
            "tags": ["db"],
            "autostart": True,
        },
        format="json",
    )
    assert response.status_code == 200, response.content
    body = response.json()
    assert "vCPUs set to 3: applied now and saved." in body["messages"]
    # The test driver cannot balloon a running VM: the memory waits for the next boot.
    assert any("pending until the VM restarts" in m for m in body["messages"])
    assert body["pending"] == {"memory_mib": 384} and body["vm"]["pending_changes"] == {"memory_mib": 384}
    vm.refresh_from_db()
    assert (vm.vcpus, vm.title, vm.description, vm.autostart) == (3, "Büro <1>", "x & y", True)
    assert list(vm.tags.values_list("name", flat=True)) == ["db"]
    assert AuditEntry.objects.filter(action="vm.update", object_id=vm.pk, outcome="success").exists()
    # Once the VM is off, nothing is pending any more.
    conn = connection_for(vm.host)
    conn.lookupByUUIDString(str(vm.uuid)).destroy()
    refresh_vm(vm, conn)
    assert vm.pending_changes == {} and vm.memory_kib == 384 * 1024


def test_pending_marker_on_the_page(owner, vm, client_for):
    api(owner).patch(f"/api/v1/vms/{vm.pk}/", {"memory_mib": 300}, format="json")
    page = client_for(owner).get(f"/vms/{vm.pk}/edit/")
    assert page.status_code == 200
    assert "Pending until restart:</strong> memory: 300" in page.content.decode()


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"vcpus": 0}, "vcpus"),
        ({"vcpus": -1}, "vcpus"),
        ({"vcpus": 2**32}, "vcpus"),
        ({"vcpus": 1.5}, "vcpus"),
        ({"memory_mib": 0}, "memory_mib"),
        ({"memory_mib": -5}, "memory_mib"),
        ({"memory_mib": 1024**3}, "memory_mib"),
        ({"title": "a\nb"}, "title"),
        ({"tags": ["<script>"]}, "tags"),
    ],
)
def test_bad_settings(owner, vm, data, field):
    before = parse_xml(connection_for(vm.host).lookupByUUIDString(str(vm.uuid)).XMLDesc(0)).findtext("vcpu")
    response = api(owner).patch(f"/api/v1/vms/{vm.pk}/", data, format="json")
    assert response.status_code == 400 and field in response.json(), response.content
    after = parse_xml(connection_for(vm.host).lookupByUUIDString(str(vm.uuid)).XMLDesc(0)).findtext("vcpu")
    assert before == after


def test_more_vcpus_than_the_maximum(owner, vm):
    response = api(owner).patch(f"/api/v1/vms/{vm.pk}/", {"vcpus": 8}, format="json")
    assert response.status_code == 400 and "at most 4 vCPUs" in response.json()["detail"]


def test_xml_view_and_editor_policy(owner, superuser, vm):
    client = api(owner)
    xml = client.get(f"/api/v1/vms/{vm.pk}/xml/").json()["xml"]
    assert "<name>change-me</name>" in xml
    root = parse_xml(xml)
    devices = root.find("devices")
    hostdev = parse_xml(
        "<hostdev mode='subsystem' type='usb'><source><vendor id='0x1234'/><product id='0x5678'/></source></hostdev>"
    )
    devices.append(hostdev)
    from lxml import etree

    refused = client.put(
        f"/api/v1/vms/{vm.pk}/xml/", {"xml": etree.tostring(root, encoding="unicode")}, format="json"
    )
    assert refused.status_code == 400 and "hostdev" in refused.json()["detail"]
    devices.remove(hostdev)
    block = parse_xml(
        "<disk type='block' device='disk'><source dev='/dev/sda'/><target dev='vdz' bus='virtio'/></disk>"
    )
    devices.append(block)
    refused = client.put(
        f"/api/v1/vms/{vm.pk}/xml/", {"xml": etree.tostring(root, encoding="unicode")}, format="json"
    )
    assert refused.status_code == 400 and "block devices" in refused.json()["detail"]
    devices.remove(block)
    outside = parse_xml(
        "<disk type='file' device='disk'><source file='/etc/shadow'/><target dev='vdy' bus='virtio'/></disk>"
    )
    devices.append(outside)
    refused = client.put(
        f"/api/v1/vms/{vm.pk}/xml/", {"xml": etree.tostring(root, encoding="unicode")}, format="json"
    )
    assert refused.status_code == 400 and "not a volume of a storage pool" in refused.json()["detail"]
    devices.remove(outside)
    qemu = etree.SubElement(root, "{http://libvirt.org/schemas/domain/qemu/1.0}commandline")
    etree.SubElement(qemu, "{http://libvirt.org/schemas/domain/qemu/1.0}arg", value="-evil")
    refused = client.put(
        f"/api/v1/vms/{vm.pk}/xml/", {"xml": etree.tostring(root, encoding="unicode")}, format="json"
    )
    assert refused.status_code == 400 and "qemu:commandline" in refused.json()["detail"]
    root.remove(qemu)
    malformed = client.put(f"/api/v1/vms/{vm.pk}/xml/", {"xml": "<domain><name>x</nam"}, format="json")
    assert malformed.status_code == 400 and "not well-formed" in malformed.json()["detail"]
    renamed = etree.fromstring(etree.tostring(root))
    renamed.find("name").text = "other"
    assert (
        client.put(
            f"/api/v1/vms/{vm.pk}/xml/", {"xml": etree.tostring(renamed, encoding="unicode")}, format="json"
        ).status_code
        == 400
    )
    root.find("devices").append(
        parse_xml("<disk type='file' device='cdrom'><target dev='hdd' bus='ide'/><readonly/></disk>")
    )
    accepted = client.put(
        f"/api/v1/vms/{vm.pk}/xml/", {"xml": etree.tostring(root, encoding="unicode")}, format="json"
    )
    assert accepted.status_code == 200, accepted.content
    assert accepted.json()["pending"] == {"xml": True}
    # A superuser may give the VM host devices (libvirt still validates the XML).
    devices = root.find("devices")
    devices.append(outside)
    as_admin = api(superuser).put(
        f"/api/v1/vms/{vm.pk}/xml/", {"xml": etree.tostring(root, encoding="unicode")}, format="json"
    )
    assert as_admin.status_code == 200, as_admin.content


def test_template_flag(owner, vm):
    client = api(owner)
    running = client.post(f"/api/v1/vms/{vm.pk}/template/", {"is_template": True}, format="json")
    assert running.status_code == 409 and "Shut the VM down" in running.json()["detail"]
    conn = connection_for(vm.host)
    conn.lookupByUUIDString(str(vm.uuid)).destroy()
    refresh_vm(vm, conn)
    done = client.post(f"/api/v1/vms/{vm.pk}/template/", {"is_template": True}, format="json")
    assert done.status_code == 200 and done.json()["vm"]["is_template"] is True
    assert AuditEntry.objects.filter(action="vm.template", object_id=vm.pk).exists()


def test_permissions(operator, viewer, outsider, vm):
    for user in (operator, viewer):
        client = api(user)
        assert client.patch(f"/api/v1/vms/{vm.pk}/", {"vcpus": 2}, format="json").status_code == 403
        assert client.put(f"/api/v1/vms/{vm.pk}/xml/", {"xml": "<domain/>"}, format="json").status_code == 403
        assert client.post(f"/api/v1/vms/{vm.pk}/disks/attach/", {}, format="json").status_code == 403
        assert (
            client.post(f"/api/v1/vms/{vm.pk}/template/", {"is_template": True}, format="json").status_code
            == 403
        )
        assert client.get(f"/api/v1/vms/{vm.pk}/xml/").status_code == 200
    client = api(outsider)
    assert client.patch(f"/api/v1/vms/{vm.pk}/", {"vcpus": 2}, format="json").status_code == 404
    assert client.get(f"/api/v1/vms/{vm.pk}/xml/").status_code == 404
    assert (
        client.post(
            f"/api/v1/vms/{vm.pk}/nics/detach/", {"mac": "52:54:00:00:00:01"}, format="json"
        ).status_code
        == 404
    )


def test_edit_pages_by_role(owner, operator, viewer, outsider, vm, client_for):
    """Owner: edit page, changes and the XML editor; operator and viewer: the XML read-only, 403 on
    changes; outsider: 404 everywhere."""
    client = client_for(owner)
    page = client.get(f"/vms/{vm.pk}/edit/")
    assert page.status_code == 200 and "Attach a disk" in page.content.decode()
    detail = client.get(f"/vms/{vm.pk}/").content.decode()
    assert 'id="vm-edit"' in detail
    response = client.post(
        f"/vms/{vm.pk}/edit/settings/", {"title": "Edited", "vcpus": "2", "memory_mib": "256"}
    )
    assert response.status_code == 302
    vm.refresh_from_db()
    assert vm.title == "Edited" and vm.vcpus == 2
    bad = client.post(f"/vms/{vm.pk}/edit/settings/", {"vcpus": "0", "memory_mib": "256"}, follow=True)
    assert "vcpus: Must be at least 1." in bad.content.decode()
    assert client.post(f"/vms/{vm.pk}/edit/no-such-change/", {}).status_code == 404
    xml_page = client.get(f"/vms/{vm.pk}/xml/").content.decode()
    assert "<textarea" in xml_page and "Validate and save" in xml_page
    refused = client.post(f"/vms/{vm.pk}/xml/", {"xml": "<domain><name>broken"})
    assert refused.status_code == 400 and "not well-formed" in refused.content.decode()
    for member in (operator, viewer):
        client = client_for(member)
        assert client.get(f"/vms/{vm.pk}/edit/").status_code == 403
        assert client.post(f"/vms/{vm.pk}/edit/settings/", {"title": "x"}).status_code == 403
        xml_page = client.get(f"/vms/{vm.pk}/xml/")
        assert xml_page.status_code == 200 and "<textarea" not in xml_page.content.decode()
        assert "&lt;name&gt;change-me&lt;/name&gt;" in xml_page.content.decode()
        assert client.post(f"/vms/{vm.pk}/xml/", {"xml": "<domain/>"}).status_code == 403
        assert 'id="vm-edit"' not in client.get(f"/vms/{vm.pk}/").content.decode()
    client = client_for(outsider)
    for url in (f"/vms/{vm.pk}/edit/", f"/vms/{vm.pk}/xml/"):
        assert client.get(url).status_code == 404
    assert client.post(f"/vms/{vm.pk}/edit/settings/", {"title": "x"}).status_code == 404
    vm.refresh_from_db()
    assert vm.title == "Edited"


def test_changes_to_a_stopped_vm_are_not_pending(owner, vm):
    conn = connection_for(vm.host)
    conn.lookupByUUIDString(str(vm.uuid)).destroy()
    refresh_vm(vm, conn)
    response = api(owner).patch(f"/api/v1/vms/{vm.pk}/", {"memory_mib": 320, "max_vcpus": 3}, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["pending"] == {}
    assert "Memory set to 320 MiB: saved." in response.json()["messages"]
    vm.refresh_from_db()
    assert vm.memory_kib == 320 * 1024 and vm.pending_changes == {}


def test_template_filter(owner, vm):
    conn = connection_for(vm.host)
    conn.lookupByUUIDString(str(vm.uuid)).destroy()
    refresh_vm(vm, conn)
    client = api(owner)
    client.post(f"/api/v1/vms/{vm.pk}/template/", {"is_template": True}, format="json")
    names = [row["name"] for row in client.get("/api/v1/vms/?is_template=true").json()["results"]]
    assert names == ["change-me"]
    others = [row["name"] for row in client.get("/api/v1/vms/?is_template=false").json()["results"]]
    assert "change-me" not in others and "test" in others
