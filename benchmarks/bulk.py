"""Bulk start: N stopped tiny-guest VMs started with one bulk action, against one VM's start.

What runs is what a user gets: a real daphne serves the API, the bulk action queues one job, a real
Celery worker (prefork) runs it, and the job starts every VM in parallel. The wall time runs from the
request (POST /api/v1/vms/bulk/) until the mirror says every VM is running (what the pages show);
the time libvirt reports them all running is given too. One VM's start goes the same way (a bulk
action of one VM), several times, and the median is the baseline. Target: bulk <= 2 x one start.

    .venv/bin/python benchmarks/bulk.py --count 3      # a quick run
    .venv/bin/python benchmarks/bulk.py                # 20 VMs (only on a quiet machine)

Every libvirt object it makes is named vireo-bench-<hex>-* and removed at the end, failures included.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import common  # noqa: E402

TARGET_RATIO = 2.0
#: The benchmark's Celery broker: its own Redis database, so that no other worker takes its jobs.
BROKER_URL = "redis://127.0.0.1:6379/7"


def api(port: int, token: str, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
    """One API call to the benchmark's daphne."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}",
        data=data,
        method=method,
        headers={"Authorization": f"Token {token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310 - loopback only
        return response.status, json.loads(response.read() or b"{}")


def wait_running(vm_pks: list[int], domains, started: float, timeout: float) -> tuple[float, float]:
    """Seconds from `started` until libvirt, then the mirror, show every VM running."""
    import libvirt

    from apps.vms.models import VirtualMachine

    libvirt_at = None
    while True:
        now = time.monotonic() - started
        if libvirt_at is None and all(d.state()[0] == libvirt.VIR_DOMAIN_RUNNING for d in domains):
            libvirt_at = now
        if VirtualMachine.objects.filter(pk__in=vm_pks, state="running").count() == len(vm_pks):
            return (libvirt_at if libvirt_at is not None else now), now
        if now > timeout:
            raise TimeoutError(f"not all {len(vm_pks)} VMs running after {timeout:.0f} s")
        time.sleep(0.02)


def bulk_start(port: int, token: str, vms, domains, timeout: float) -> tuple[float, float, dict]:
    """Start `vms` with one bulk action: seconds from the request to running in libvirt, in the mirror."""
    from apps.core.models import Job

    started = time.monotonic()
    status, job = api(
        port, token, "POST", "/api/v1/vms/bulk/", {"action": "start", "vms": [v.pk for v in vms]}
    )
    assert status == 202, job
    in_libvirt, in_mirror = wait_running([v.pk for v in vms], domains, started, timeout)
    row = Job.objects.get(pk=job["id"])
    return in_libvirt, in_mirror, {"id": row.pk, "state": row.state}


def stop_all(domains) -> None:
    """Force every domain off (between measurements)."""
    import libvirt

    for dom in domains:
        try:
            if dom.isActive():
                dom.destroy()
        except libvirt.libvirtError:
            pass


def main() -> int:
    """Run the benchmark; exit status 0 when the target is met."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--count", type=int, default=20, help="VMs started by the bulk action (default 20)")
    parser.add_argument("--single-runs", type=int, default=3, help="single starts for the baseline (median)")
    parser.add_argument("--worker-concurrency", type=int, default=4, help="Celery worker processes")
    parser.add_argument("--sqlite", action="store_true", help="use SQLite instead of PostgreSQL")
    args = parser.parse_args()

    bench = common.setup_environment("bulk", sqlite=args.sqlite, db_name="vireo_bench_bulk")
    prefix = common.run_prefix()
    import libvirt

    conn = libvirt.open(common.SYSTEM_URI)
    bench.cleanups.append(lambda: common.cleanup_prefixed_domains(conn, prefix))
    try:
        from django.contrib.auth import get_user_model

        from apps.accounts.models import ApiToken, Membership, Team
        from apps.core.choices import Role
        from apps.hosts.models import Host
        from apps.hosts.services import reconcile_host
        from apps.vms.models import VirtualMachine
        from tests.fixtures.libvirt_env import tiny_guest_xml
        from tests.fixtures.tinyguest import build_tiny_guest

        team = Team.objects.create(name="bench")
        user = get_user_model().objects.create_user("bench", password="bench-password-123")
        Membership.objects.create(user=user, team=team, role=Role.OPERATOR)
        _, token = ApiToken.issue(user, name="bench")
        host = Host.objects.create(team=team, name="local", uri=common.SYSTEM_URI)

        guest = build_tiny_guest()
        domain_type = common.system_domain_type(conn)
        domains = []
        for i in range(args.count + 1):
            xml = tiny_guest_xml(
                f"{prefix}vm{i:02d}",
                guest,
                domain_type=domain_type,
                serial_log=bench.tmp / f"vm{i:02d}.log",
                vnc=False,
            )
            domains.append(conn.defineXML(xml))
        reconcile_host(host)
        vms = [VirtualMachine.objects.get(host=host, uuid=d.UUIDString()) for d in domains]
        single_vm, single_dom = vms[-1], domains[-1]
        bulk_vms, bulk_doms = vms[:-1], domains[:-1]
        print(f"[setup] {len(domains)} stopped {domain_type} tiny guests defined ({prefix}*)", flush=True)

        bench.env["CELERY_BROKER_URL"] = BROKER_URL
        worker = common.start_process(
            bench,
            [str(common.REPO / ".venv/bin/celery"), "-A", "project", "worker", "--pool=prefork",
             f"--concurrency={args.worker_concurrency}", "--loglevel=INFO", "--without-gossip",
             "--without-mingle"],
            "worker",
        )  # fmt: skip
        _, port = common.start_daphne(bench)
        deadline = time.monotonic() + 60
        while " ready." not in Path(worker.log_path).read_text(errors="replace"):  # type: ignore[attr-defined]
            if worker.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"worker did not start:\n{common.log_tail(worker)}")
            time.sleep(0.2)

        singles = []
        for run in range(args.single_runs):
            in_libvirt, total, job = bulk_start(port, token, [single_vm], [single_dom], 120)
            singles.append(total)
            print(
                f"[single] run {run + 1}: running in libvirt {in_libvirt:.2f} s, in the mirror {total:.2f} s "
                f"(job #{job['id']} {job['state']})",
                flush=True,
            )
            stop_all([single_dom])
            reconcile_host(host)
        single = statistics.median(singles)

        in_libvirt, total, job = bulk_start(port, token, bulk_vms, bulk_doms, 300)
        print(
            f"[bulk] {len(bulk_vms)} VMs: all running in libvirt {in_libvirt:.2f} s, in the mirror {total:.2f} s "
            f"(job #{job['id']} {job['state']})",
            flush=True,
        )
        ratio = total / single if single else float("inf")
        ok = ratio <= TARGET_RATIO
        print(
            f"[result] bulk start of {len(bulk_vms)} VMs: {total:.2f} s; one VM's start (median of "
            f"{len(singles)}): {single:.2f} s; ratio {ratio:.2f} -> target <= {TARGET_RATIO:.0f}x "
            f"{common.verdict(ok)}",
            flush=True,
        )
        stop_all(domains)
        return 0 if ok else 1
    finally:
        common.teardown_environment(bench)
        conn.close()


if __name__ == "__main__":
    sys.exit(main())
