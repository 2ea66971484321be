"""The VM spec builder: validation, capabilities, XML that libvirt accepts, and no user string breaking it."""

from __future__ import annotations

import libvirt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from apps.virt import parse_domain_xml, parse_xml
from apps.virt.builder import (
    VNC_LISTEN,
    DiskSpec,
    DomainSpec,
    InvalidSpec,
    NicSpec,
    build_domain_xml,
    validate_memory_mib,
    validate_name,
    validate_spec,
    validate_vcpus,
)
from apps.virt.capabilities import HostCapabilities, get_capabilities

BAD_NAMES = [
    "a<b",
    "a&b",
    'a"b',
    "a'b",
    "a/b",
    "a..b",
    "..",
    "a\nb",
    "-leading",
    "x" * 65,
    "",
    " space",
    "tab\there",
]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_bad_names_are_refused(name):
    with pytest.raises(InvalidSpec) as err:
        validate_name(name)
    assert err.value.errors["name"]


def test_good_names():
    for name in ("web1", "a", "db.prod-01_x", "x" * 64):
        assert validate_name(name) == name


@pytest.mark.parametrize("value", [0, -1, 1.5, "1.5", "abc", True, 1024**3, "1e9", None])
def test_bad_memory(value):
    with pytest.raises(InvalidSpec):
        validate_memory_mib(value)


def test_memory_bounded_by_host_and_pib():
    assert validate_memory_mib("512") == 512
    assert validate_memory_mib(2.0) == 2
    with pytest.raises(InvalidSpec, match="at most"):
        validate_memory_mib(1024 * 1024 * 1024)  # 1 PiB in MiB
    with pytest.raises(InvalidSpec, match="at most 1024"):
        validate_memory_mib(2048, host_kib=1024 * 1024)


@pytest.mark.parametrize("value", [0, -1, 2**32, 1.5, "x", False])
def test_bad_vcpus(value):
    with pytest.raises(InvalidSpec):
        validate_vcpus(value)


def test_validate_spec_collects_every_error():
    spec = DomainSpec(
        name="bad<name",
        vcpus=0,
        memory_mib=-5,
        title="two\nlines",
        nics=[NicSpec(mac="ff:ff:ff:ff:ff:ff")],
        disks=[DiskSpec(path="relative/path")],
    )
    with pytest.raises(InvalidSpec) as err:
        validate_spec(spec)
    assert {"name", "vcpus", "memory_mib", "title", "nics.0.mac", "disks.0.path"} <= set(err.value.errors)


def test_topology_must_match():
    spec = DomainSpec(name="t", vcpus=4, sockets=1, cores=2, threads=1)
    with pytest.raises(InvalidSpec) as err:
        validate_spec(spec)
    assert "sockets" in err.value.errors
    ok = validate_spec(DomainSpec(name="t", vcpus=4, sockets=1, cores=2, threads=2))
    assert ok.max_vcpus == 4


def test_capabilities_refuse_what_the_host_lacks():
    caps = HostCapabilities(
        arch="x86_64",
        domain_type="kvm",
        domain_types=["kvm", "qemu"],
        machine_types=["pc", "q35"],
        firmware=["bios"],
        cpu_modes=["host-model"],
        disk_buses=["virtio", "sata"],
        video_models=["vga"],
        memory_kib=4 * 1024 * 1024,
    )
    spec = DomainSpec(
        name="t",
        domain_type="xen",
        machine="nonsense",
        firmware="efi",
        secure_boot=True,
        tpm=True,
        cpu_mode="host-passthrough",
        memory_mib=8192,
        disks=[DiskSpec(path="/p/a.qcow2", bus="scsi")],
        nics=[NicSpec(model="ne2k")],
    )
    with pytest.raises(InvalidSpec) as err:
        validate_spec(spec, caps)
    assert {
        "domain_type",
        "machine",
        "firmware",
        "secure_boot",
        "tpm",
        "cpu_mode",
        "memory_mib",
        "disks.0.bus",
        "nics.0.model",
    } <= set(err.value.errors)


def test_xml_contents():
    spec = DomainSpec(
        name="web1",
        title="Web <1>",
        description="a & b\n'quoted'",
        domain_type="qemu",
        vcpus=2,
        max_vcpus=4,
        memory_mib=256,
        max_memory_mib=512,
        machine="pc",
        cpu_mode="host-model",
        disks=[
            DiskSpec(path="/pool/web1-disk0.qcow2", boot_order=1, cache="none"),
            DiskSpec(path="/pool/iso.iso", device="cdrom", bus="sata", boot_order=2),
            DiskSpec(path="/pool/data.raw", format="raw", bus="scsi"),
        ],
        nics=[NicSpec(source="default", mac="52:54:00:aa:bb:cc"), NicSpec(kind="bridge", source="br0")],
    )
    root = parse_xml(build_domain_xml(spec))
    parsed = parse_domain_xml(build_domain_xml(spec))
    assert parsed.name == "web1" and parsed.title == "Web <1>" and parsed.description == "a & b\n'quoted'"
    assert (parsed.vcpus, parsed.max_vcpus) == (2, 4)
    assert (parsed.memory_kib, parsed.max_memory_kib) == (256 * 1024, 512 * 1024)
    assert [(d.target, d.device, d.bus) for d in parsed.disks] == [
        ("vda", "disk", "virtio"),
        ("sda", "cdrom", "sata"),
        ("sdb", "disk", "scsi"),
    ]
    assert root.find("devices/controller[@model='virtio-scsi']") is not None
    assert [n.source for n in parsed.nics] == ["default", "br0"]
    assert parsed.nics[0].mac == "52:54:00:aa:bb:cc" and parsed.nics[1].mac.startswith("52:54:00:")
    graphics = root.find("devices/graphics")
    assert graphics.get("listen") == VNC_LISTEN and graphics.find("listen").get("address") == VNC_LISTEN
    assert root.find("os/boot") is None  # per-device boot order instead
    assert root.find("devices/disk/boot").get("order") == "1"
    # The guest's balloon driver reports its memory use (the memory sparkline).
    assert root.find("devices/memballoon[@model='virtio']/stats").get("period") == "10"


def test_direct_kernel_boot_and_efi():
    spec = DomainSpec(
        name="k",
        domain_type="qemu",
        kernel="/pool/vmlinuz",
        initrd="/pool/initrd.gz",
        cmdline="console=ttyS0 quiet",
        firmware="efi",
        secure_boot=True,
        tpm=True,
    )
    root = parse_xml(build_domain_xml(spec))
    assert root.findtext("os/kernel") == "/pool/vmlinuz"
    assert root.findtext("os/cmdline") == "console=ttyS0 quiet"
    assert root.find("os").get("firmware") == "efi"
    assert root.find("features/smm").get("state") == "on"
    assert root.find("devices/tpm/backend").get("type") == "emulator"
    with pytest.raises(InvalidSpec, match="q35"):
        validate_spec(DomainSpec(name="k", firmware="efi", secure_boot=True, machine="pc"))
    assert validate_spec(DomainSpec(name="k", firmware="efi", secure_boot=True, machine="pc-q35-7.2"))
    with pytest.raises(InvalidSpec, match="kernel"):
        validate_spec(DomainSpec(name="k", initrd="/pool/initrd.gz"))
    with pytest.raises(InvalidSpec, match="kernel"):
        validate_spec(DomainSpec(name="k", kernel="/pool/../etc/passwd"))


def test_defined_on_the_test_driver(default_conn):
    caps = get_capabilities(default_conn)
    assert caps.domain_type == "test" and caps.machine_types == [] and caps.domcaps is False
    spec = DomainSpec(
        name="builder-check",
        domain_type=caps.domain_type,
        arch=caps.arch,
        memory_mib=64,
        disks=[DiskSpec(path="/var/lib/libvirt/images/none.qcow2")],
        nics=[NicSpec(source="default")],
    )
    dom = default_conn.defineXML(build_domain_xml(spec, caps))
    try:
        parsed = parse_domain_xml(dom.XMLDesc(0))
        assert parsed.name == "builder-check" and parsed.memory_kib == 64 * 1024
        assert parsed.nics[0].source == "default"
    finally:
        dom.undefine()


def test_real_host_capabilities(libvirt_system, domain_type):
    caps = get_capabilities(libvirt_system, domain_type=domain_type)
    assert caps.domcaps and caps.domain_type == domain_type
    assert "pc" in caps.machine_types and caps.default_machine in ("pc", "q35")
    assert "bios" in caps.firmware and "virtio" in caps.disk_buses
    assert caps.graphics == ["vnc"] and caps.cpu_modes


_text = st.text(alphabet=st.characters(codec="utf-8"), max_size=80)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=_text, title=_text, description=_text, cmdline=_text, bridge=_text, mac=_text)
def test_no_user_string_breaks_the_xml(name, title, description, cmdline, bridge, mac):
    """Whatever a user types either gets a clear InvalidSpec, or lands in the XML as exactly that text."""
    spec = DomainSpec(
        name=name,
        title=title,
        description=description,
        kernel="/pool/vmlinuz",
        cmdline=cmdline,
        nics=[NicSpec(kind="bridge", source=bridge, mac=mac)],
    )
    try:
        xml = build_domain_xml(spec)
    except InvalidSpec as exc:
        assert exc.errors and all(exc.errors.values())
        return
    root = parse_xml(xml)
    assert root.tag == "domain" and len(root.findall("name")) == 1
    assert root.findtext("name") == name
    assert (root.findtext("title") or "") == title
    assert (root.findtext("description") or "") == description
    assert (root.findtext("os/cmdline") or "") == cmdline
    assert root.find("devices/interface/source").get("bridge") == bridge
    assert len(root.findall("devices/interface")) == 1


def test_libvirt_test_driver_rejects_nothing_we_build(default_conn):
    """A spec with every option still defines on the test driver (libvirt parses our XML)."""
    spec = DomainSpec(
        name="builder-full",
        domain_type="test",
        arch="i686",
        title="t & <u>",
        vcpus=2,
        max_vcpus=2,
        memory_mib=128,
        disks=[DiskSpec(path="/x/a.qcow2"), DiskSpec(path="", device="cdrom", bus="ide")],
        nics=[NicSpec(source="default", boot_order=1)],
    )
    dom = default_conn.defineXML(build_domain_xml(spec))
    try:
        assert dom.name() == "builder-full"
        assert dom.metadata(libvirt.VIR_DOMAIN_METADATA_TITLE, None, 0) == "t & <u>"
    finally:
        dom.undefine()
