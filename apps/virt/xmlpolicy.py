"""What a domain XML may contain when someone other than a superuser defines it: nothing that reaches
the host itself (QEMU pass-through, host devices, host files and sockets, graphics beyond loopback)."""

from __future__ import annotations

import libvirt

from .xmlutil import parse_xml

QEMU_NS = "http://libvirt.org/schemas/domain/qemu/1.0"
_CHARDEV_TAGS = ("serial", "parallel", "console", "channel")


def _in_pool(conn: libvirt.virConnect, path: str) -> bool:
    try:
        conn.storageVolLookupByPath(path)
    except libvirt.libvirtError:
        return False
    return True


def xml_policy_refusals(conn: libvirt.virConnect, xml: str, *, current_xml: str | None = None) -> list[str]:
    """Why a non-admin may not define `xml`: elements that reach the host itself.

    Refused: qemu:commandline (and anything in QEMU's namespace), hostdev devices, host block devices and
    directories, files outside storage pools (disks, kernel, initrd), character devices on host paths,
    sockets or ports, graphics listening beyond loopback, interface scripts, a different emulator.
    """
    root = parse_xml(xml)
    refusals: list[str] = []
    if root.tag != "domain":
        return ["The document must be a <domain>."]
    for element in root.iter():
        if isinstance(element.tag, str) and element.tag.startswith(f"{{{QEMU_NS}}}"):
            refusals.append("QEMU pass-through elements (qemu:commandline and the like) are for admins only.")
            break
    if root.findall(".//hostdev") or root.findall("devices/interface[@type='hostdev']"):
        refusals.append("Host devices (hostdev) are for admins only.")
    for disk in root.findall("devices/disk"):
        kind = disk.get("type", "file")
        source = disk.find("source")
        target = disk.find("target")
        name = target.get("dev") if target is not None else "?"
        if kind in ("block", "dir") or (source is not None and (source.get("dev") or source.get("dir"))):
            refusals.append(f"Disk {name}: host block devices and directories are for admins only.")
        elif kind == "file" and source is not None and source.get("file"):
            if not _in_pool(conn, source.get("file")):
                refusals.append(f"Disk {name}: {source.get('file')} is not a volume of a storage pool.")
        elif kind not in ("file", "volume"):
            refusals.append(f"Disk {name}: {kind} disks are for admins only.")
    if root.findall("devices/filesystem"):
        refusals.append("Shared host directories (filesystem) are for admins only.")
    for tag in ("kernel", "initrd", "dtb"):
        path = root.findtext(f"os/{tag}")
        if path and not _in_pool(conn, path.strip()):
            refusals.append(f"The {tag} {path.strip()} is not a volume of a storage pool.")
    for tag in _CHARDEV_TAGS:
        for dev in root.findall(f"devices/{tag}"):
            kind = dev.get("type", "pty")
            if (
                kind not in ("pty", "unix", "spicevmc", "qemu-vdagent")
                or (dev.find("source") is not None and dev.find("source").get("path"))
                or dev.find("log") is not None
            ):
                refusals.append(f"A {tag} device on a host file, device, pipe or socket is for admins only.")
    for graphics in root.findall("devices/graphics"):
        addresses = [graphics.get("listen")] + [
            listen.get("address") for listen in graphics.findall("listen") if listen.get("type") == "address"
        ]
        if any(a not in (None, "127.0.0.1", "::1", "localhost") for a in addresses) or any(
            listen.get("type") in ("network",) for listen in graphics.findall("listen")
        ):
            refusals.append("Graphics may only listen on the host's loopback address.")
    if root.findall("devices/interface/script") or root.findall("devices/interface[@type='ethernet']"):
        refusals.append("Interface scripts and ethernet (tap) interfaces are for admins only.")
    if root.findall("devices/interface[@type='vhostuser']") or root.findall("devices/shmem"):
        refusals.append("vhost-user interfaces and shared memory are for admins only.")
    emulator = root.findtext("devices/emulator")
    if emulator is not None:
        current = parse_xml(current_xml).findtext("devices/emulator") if current_xml else None
        if emulator.strip() != (current or "").strip():
            refusals.append("Changing the emulator binary is for admins only.")
    loader = root.find("os/loader")
    if loader is not None and current_xml is not None:
        old = parse_xml(current_xml).find("os/loader")
        if old is None or (loader.text or "").strip() != (old.text or "").strip():
            refusals.append("Changing the firmware loader is for admins only.")
    return list(dict.fromkeys(refusals))
