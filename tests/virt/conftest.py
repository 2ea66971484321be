"""Fixtures for apps.virt tests: libvirt's test driver only (test:///default and generated node files)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import libvirt
import pytest
from lxml import etree

from apps.virt import ensure_event_loop, open_connection

DOMAIN_COUNT = 50
TEST_NS = "http://libvirt.org/schemas/domain/test/1.0"


def _sub(parent: etree._Element, tag: str, text: str | None = None, **attrs: str) -> etree._Element:
    node = etree.SubElement(parent, tag, {k.rstrip("_"): v for k, v in attrs.items()})
    if text is not None:
        node.text = text
    return node


def _domain(index: int) -> etree._Element:
    """A test-driver domain; every third one is shut off, every fifth has a VNC console and a CD-ROM."""
    dom = etree.Element("domain", {"type": "test"}, nsmap={"test": TEST_NS})
    _sub(dom, "name", f"vm{index:02d}")
    _sub(dom, "uuid", f"00000000-0000-4000-8000-{index:012d}")
    _sub(dom, "title", f"Machine {index}")
    _sub(dom, "memory", str(1024 * (index + 1)), unit="MiB")
    _sub(dom, "currentMemory", str(512 * (index + 1)), unit="MiB")
    _sub(dom, "vcpu", "4", current="2")
    os_ = _sub(dom, "os")
    _sub(os_, "type", "hvm", arch="i686")
    devices = _sub(dom, "devices")
    disk = _sub(devices, "disk", type="file", device="disk")
    _sub(disk, "driver", name="qemu", type="qcow2")
    _sub(disk, "source", file=f"/var/lib/libvirt/images/vm{index:02d}.qcow2")
    _sub(disk, "target", dev="vda", bus="virtio")
    nic = _sub(devices, "interface", type="network")
    _sub(nic, "mac", address=f"52:54:00:00:00:{index:02x}")
    _sub(nic, "source", network="net0")
    _sub(nic, "model", type="virtio")
    if index % 5 == 0:
        cdrom = _sub(devices, "disk", type="file", device="cdrom")
        _sub(cdrom, "target", dev="sda", bus="sata")
        _sub(cdrom, "readonly")
        _sub(devices, "graphics", type="vnc", port="-1", autoport="yes", listen="127.0.0.1")
    if index % 3 == 0:
        _sub(dom, f"{{{TEST_NS}}}runstate", str(libvirt.VIR_DOMAIN_SHUTOFF))
    return dom


def _network(index: int) -> etree._Element:
    net = etree.Element("network")
    _sub(net, "name", f"net{index}")
    _sub(net, "bridge", name=f"vbr{index}")
    if index == 0:
        _sub(net, "forward", mode="nat")
    _sub(net, "domain", name=f"lab{index}.example")
    ip = _sub(net, "ip", address=f"10.{index}.0.1", netmask="255.255.255.0")
    _sub(_sub(ip, "dhcp"), "range", start=f"10.{index}.0.100", end=f"10.{index}.0.199")
    _sub(net, "ip", family="ipv6", address=f"fd00:{index}::1", prefix="64")
    return net


def _pool(index: int) -> etree._Element:
    pool = etree.Element("pool", {"type": "dir"})
    _sub(pool, "name", f"pool{index}")
    _sub(_sub(pool, "target"), "path", f"/srv/pool{index}")
    return pool


@pytest.fixture
def node_uri(tmp_path: Path) -> str:
    """test:///<file> URI of a private host with 50 VMs, 2 networks and 2 pools (state is per connection)."""
    node = etree.Element("node")
    cpu = _sub(node, "cpu")
    for tag, value in (
        ("mhz", "2400"),
        ("model", "x86_64"),
        ("nodes", "1"),
        ("sockets", "2"),
        ("cores", "4"),
        ("threads", "2"),
        ("active", "16"),
    ):
        _sub(cpu, tag, value)
    _sub(node, "memory", str(16 * 1024 * 1024))
    for i in range(DOMAIN_COUNT):
        node.append(_domain(i))
    for i in range(2):
        node.append(_network(i))
        node.append(_pool(i))
    path = tmp_path / "node.xml"
    path.write_bytes(etree.tostring(node, pretty_print=True))
    return f"test://{path}"


@pytest.fixture
def node_conn(node_uri: str) -> Iterator[libvirt.virConnect]:
    """An open connection to a fresh generated node."""
    conn = open_connection(node_uri)
    yield conn
    conn.close()


@pytest.fixture
def default_conn() -> Iterator[libvirt.virConnect]:
    """An open connection to test:///default (shared by all its connections in this process: restore it)."""
    ensure_event_loop()
    conn = open_connection("test:///default")
    yield conn
    conn.close()
