"""Resource use of a host's running VMs, in one bulk call (for the CPU and memory sparklines)."""

from __future__ import annotations

from dataclasses import dataclass

import libvirt

from .errors import translate


@dataclass(frozen=True)
class GuestSample:
    """What libvirt reports of one running VM at one moment (None where the driver does not say)."""

    uuid: str
    cpu_time_ns: int | None
    vcpus: int | None
    #: Memory the guest has now (balloon.current), KiB.
    memory_kib: int | None
    #: Memory the guest uses (available - unused), KiB: known only where the guest's balloon driver reports
    #: statistics (`<memballoon><stats period=…/>`, which VMs created by Vireo have). The host memory of
    #: the VM's process (balloon.rss) is not used: it counts the hypervisor's own memory too.
    used_kib: int | None


_GROUPS = (
    libvirt.VIR_DOMAIN_STATS_CPU_TOTAL | libvirt.VIR_DOMAIN_STATS_BALLOON | libvirt.VIR_DOMAIN_STATS_VCPU
)


def sample_running(conn: libvirt.virConnect) -> list[GuestSample]:
    """One sample of every running VM of the host (one getAllDomainStats call); [] if the driver has none."""
    try:
        records = conn.getAllDomainStats(_GROUPS, libvirt.VIR_CONNECT_GET_ALL_DOMAINS_STATS_ACTIVE)
    except libvirt.libvirtError as exc:
        if exc.get_error_code() in (libvirt.VIR_ERR_NO_SUPPORT, libvirt.VIR_ERR_ARGUMENT_UNSUPPORTED):
            return []
        raise translate(exc, "the host's VM statistics") from exc
    samples = []
    for dom, stats in records:
        available, unused = stats.get("balloon.available"), stats.get("balloon.unused")
        used = available - unused if available is not None and unused is not None else None
        samples.append(
            GuestSample(
                uuid=dom.UUIDString(),
                cpu_time_ns=stats.get("cpu.time"),
                vcpus=stats.get("vcpu.current"),
                memory_kib=stats.get("balloon.current"),
                used_kib=used,
            )
        )
    return samples
