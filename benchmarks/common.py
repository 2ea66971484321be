"""Shared set-up for the benchmarks: a throwaway environment (data folder, database, Redis db 14),
subprocesses (daphne, hostd), process figures, percentiles and libvirt clean-up by prefix.

Benchmarks are run on purpose (``.venv/bin/python benchmarks/<name>.py``), never by pytest.
Everything a benchmark creates is removed at the end: the temp folder, the PostgreSQL database,
the Redis keys under its own prefix, and libvirt objects named ``vireo-bench-<hex>-*``.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

PYTHON = REPO / ".venv" / "bin" / "python"
DAPHNE = REPO / ".venv" / "bin" / "daphne"
PG_ADMIN_DSN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres connect_timeout=3"
REDIS_URL = "redis://127.0.0.1:6379/14"
SYSTEM_URI = "qemu:///system"
#: Every libvirt object a benchmark creates is named with this root plus a per-run hex part.
PREFIX_ROOT = "vireo-bench-"


def run_prefix() -> str:
    """A fresh per-run prefix, e.g. ``vireo-bench-3fa2c1-``."""
    return f"{PREFIX_ROOT}{secrets.token_hex(3)}-"


@dataclass
class BenchEnv:
    """The throwaway environment of one benchmark run."""

    tmp: Path
    db_engine: str  # "postgresql" or "sqlite"
    db_name: str | None
    env: dict[str, str]
    channel_prefix: str
    cleanups: list = field(default_factory=list)

    def describe(self) -> str:
        where = f"PostgreSQL database {self.db_name}" if self.db_engine == "postgresql" else "SQLite"
        return f"{where}, data dir {self.tmp}, Redis {REDIS_URL}"


def _postgres_answers() -> bool:
    try:
        import psycopg

        with psycopg.connect(PG_ADMIN_DSN, autocommit=True):
            return True
    except Exception:
        return False


def _pg_admin(sql: str) -> None:
    import psycopg

    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
        conn.execute(sql)


def setup_environment(name: str, *, sqlite: bool = False, db_name: str = "vireo_bench") -> BenchEnv:
    """Create the temp data folder and database, set the environment, django.setup() and migrate."""
    tmp = Path(tempfile.mkdtemp(prefix=f"vireo-bench-{name}-"))
    channel_prefix = f"vireo-bench-{secrets.token_hex(3)}"
    env = {
        "DJANGO_SETTINGS_MODULE": "project.settings",
        "VIREO_DATA_DIR": str(tmp / "data"),
        "REDIS_URL": REDIS_URL,
        "CELERY_BROKER_URL": REDIS_URL,
        "VIREO_CHANNEL_PREFIX": channel_prefix,
        "LOG_LEVEL": os.environ.get("BENCH_LOG_LEVEL", "WARNING"),
        "DEBUG": "false",
    }
    engine, used_db = "sqlite", None
    if not sqlite and _postgres_answers():
        engine, used_db = "postgresql", db_name
        _pg_admin(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)')
        _pg_admin(f'CREATE DATABASE "{db_name}"')
        env["DATABASE_URL"] = f"postgres://postgres@127.0.0.1:5432/{db_name}"
    else:
        env["DATABASE_URL"] = f"sqlite:///{tmp / 'bench.sqlite3'}"
    (tmp / "data" / "static").mkdir(parents=True)  # STATIC_ROOT, so whitenoise does not warn
    os.environ.update(env)
    bench = BenchEnv(
        tmp=tmp, db_engine=engine, db_name=used_db, env=dict(os.environ), channel_prefix=channel_prefix
    )

    import django

    django.setup()
    from django.core.management import call_command

    started = time.monotonic()
    call_command("migrate", verbosity=0, interactive=False)
    print(f"[setup] {bench.describe()}; migrated in {time.monotonic() - started:.1f} s", flush=True)
    return bench


def teardown_environment(bench: BenchEnv) -> None:
    """Run registered clean-ups (newest first), then drop the database, Redis keys and temp folder."""
    for cleanup in reversed(bench.cleanups):
        try:
            cleanup()
        except Exception as exc:  # clean-up continues whatever one step does
            print(f"[cleanup] {cleanup!r} failed: {exc}", flush=True)
    with contextlib.suppress(Exception):
        from django.db import connections

        connections.close_all()
    if bench.db_engine == "postgresql" and bench.db_name:
        try:
            _pg_admin(f'DROP DATABASE IF EXISTS "{bench.db_name}" WITH (FORCE)')
            print(f"[cleanup] dropped database {bench.db_name}", flush=True)
        except Exception as exc:
            print(f"[cleanup] could not drop database {bench.db_name}: {exc}", flush=True)
    try:
        import redis

        client = redis.Redis.from_url(REDIS_URL)
        keys = list(client.scan_iter(f"{bench.channel_prefix}*", count=1000))
        keys += list(client.scan_iter("vireo:seq:*", count=1000))
        if keys:
            client.delete(*keys)
    except Exception as exc:
        print(f"[cleanup] Redis keys not removed: {exc}", flush=True)
    logs = sorted(bench.tmp.glob("*.log"))
    if logs:
        keep = Path(tempfile.gettempdir()) / "vireo-bench-logs" / bench.tmp.name
        keep.mkdir(parents=True, exist_ok=True)
        for log in logs:
            shutil.copy2(log, keep / log.name)
        print(f"[cleanup] process logs kept in {keep}", flush=True)
    shutil.rmtree(bench.tmp, ignore_errors=True)


# ---------------------------------------------------------------------------------------------------
# processes


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, timeout: float = 30.0, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening on {port}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        time.sleep(0.1)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout:.0f} s")


def start_process(
    bench: BenchEnv, args: list[str], log_name: str, extra_env: dict[str, str] | None = None
) -> subprocess.Popen:
    """Start a subprocess with the benchmark's environment, output to a log file in the temp folder."""
    log = open(bench.tmp / f"{log_name}.log", "wb")  # noqa: SIM115 - closed with the process
    proc = subprocess.Popen(
        args,
        cwd=REPO,
        env={**bench.env, **(extra_env or {})},
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )

    def stop() -> None:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        log.close()

    stop.__qualname__ = f"stop {log_name} (pid {proc.pid})"
    bench.cleanups.append(stop)
    proc.log_path = bench.tmp / f"{log_name}.log"  # type: ignore[attr-defined]
    return proc


def start_daphne(bench: BenchEnv) -> tuple[subprocess.Popen, int]:
    """A real daphne web process on a free loopback port."""
    port = free_port()
    proc = start_process(
        bench,
        [str(DAPHNE), "-b", "127.0.0.1", "-p", str(port), "project.asgi:application"],
        "daphne",
    )
    wait_for_port(port, proc=proc)
    return proc, port


def log_tail(proc: subprocess.Popen, lines: int = 30) -> str:
    path = getattr(proc, "log_path", None)
    if path is None or not Path(path).exists():
        return ""
    return "\n".join(Path(path).read_text(errors="replace").splitlines()[-lines:])


def rss_mb(pid: int, field_name: str = "VmRSS") -> float:
    """Resident memory (VmRSS, or VmHWM for the peak) of a process in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field_name + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# ---------------------------------------------------------------------------------------------------
# figures


def percentile(values: list[float], pct: float) -> float:
    """Nearest-rank percentile (pct in 0..100) of a non-empty list."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(pct / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def summary_ms(values_s: list[float]) -> str:
    """p50/p95/p99/max of durations in seconds, shown in ms."""
    if not values_s:
        return "no samples"
    ms = [v * 1000 for v in values_s]
    return (
        f"n={len(ms)} p50={percentile(ms, 50):.1f} p95={percentile(ms, 95):.1f} "
        f"p99={percentile(ms, 99):.1f} max={max(ms):.1f} mean={statistics.fmean(ms):.1f} ms"
    )


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


# ---------------------------------------------------------------------------------------------------
# libvirt


def cleanup_prefixed_domains(conn, prefix: str) -> list[str]:
    """Destroy and undefine the domains named ``prefix*`` (only benchmark prefixes are accepted)."""
    import libvirt

    if not prefix.startswith(PREFIX_ROOT) or len(prefix) <= len(PREFIX_ROOT):
        raise ValueError(f"refusing to clean up with prefix {prefix!r}")
    removed = []
    for dom in conn.listAllDomains(0):
        try:
            name = dom.name()
        except libvirt.libvirtError:
            continue
        if not name.startswith(prefix):
            continue
        with contextlib.suppress(libvirt.libvirtError):
            if dom.isActive():
                dom.destroy()
        with contextlib.suppress(libvirt.libvirtError):
            if dom.isPersistent():
                dom.undefineFlags(
                    libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE
                    | libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA
                    | libvirt.VIR_DOMAIN_UNDEFINE_NVRAM
                )
        removed.append(name)
    return removed


def minimal_domain_xml(name: str, domain_type: str = "qemu") -> str:
    """A persistent domain that is never started: no disks, no NICs, no graphics, no balloon."""
    from lxml import etree

    E = etree.SubElement
    domain = etree.Element("domain", type=domain_type)
    E(domain, "name").text = name
    E(domain, "memory", unit="MiB").text = "64"
    E(domain, "vcpu").text = "1"
    os_el = E(domain, "os")
    E(os_el, "type", arch="x86_64").text = "hvm"
    devices = E(domain, "devices")
    E(devices, "controller", type="usb", model="none")
    E(devices, "memballoon", model="none")
    return etree.tostring(domain, encoding="unicode")


def system_domain_type(conn) -> str:
    """'qemu' (TCG) unless libvirt offers only kvm; the domains are never started, so TCG is fine."""
    from lxml import etree

    caps = etree.fromstring(conn.getCapabilities().encode())
    types = set(caps.xpath("/capabilities/guest[arch/@name='x86_64']/arch/domain/@type"))
    return "qemu" if "qemu" in types or not types else sorted(types)[0]
