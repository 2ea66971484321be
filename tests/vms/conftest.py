"""Fixtures for VM tests on the real libvirtd: the local host and a pool holding the tiny guest."""

from __future__ import annotations

import shutil

import pytest

from apps.hosts.models import Host
from apps.hosts.services import reconcile_host
from apps.virt.cloudinit import CloudInitSpec, build_seed_iso
from tests.fixtures.libvirt_env import remove_domain


@pytest.fixture
def system_host(team, libvirt_system):
    """The local libvirtd as a host of `team`."""
    return Host.objects.create(team=team, name="local", uri="qemu:///system")


@pytest.fixture
def guest_pool(storage_pool, tiny_guest_files, system_host, libvirt_system, run_prefix):
    """A pool holding the tiny guest's kernel and initramfs and a small ISO, mirrored with its volumes.

    Every VM named with the run prefix that the test made is removed at teardown (the pool fixture
    deletes the volumes)."""
    for source, name in ((tiny_guest_files.kernel, "vmlinuz"), (tiny_guest_files.initrd, "initrd.img")):
        target = storage_pool.path / name
        shutil.copyfile(source, target)
        target.chmod(0o644)
    iso = storage_pool.path / "install.iso"
    iso.write_bytes(build_seed_iso(CloudInitSpec(hostname="installer"), "installer"))
    iso.chmod(0o644)
    storage_pool.pool.refresh(0)
    reconcile_host(system_host)
    yield storage_pool
    for dom in libvirt_system.listAllDomains(0):
        if dom.name().startswith(run_prefix + "c-"):
            remove_domain(dom)
