"""Console benchmark: the websockify path (Vireo's token and auth plugins, the RFB filter) against a direct
VNC connection on loopback, and many concurrent console sessions.

Targets: throughput >= 90 % of direct, <= 2 ms added median latency, 50 sessions held.

Tiny guests (vireo-bench-<hex>-*, TCG or KVM, VNC on 127.0.0.1) are booted on qemu:///system; a real
websockify runs with Vireo's plugins (`python -m websockify`, as the Procfile does) on a throwaway
database. Every console through websockify gets its own single-use ticket from Vireo (POST
/vms/<pk>/console/ticket/) and connects as a browser does (Origin, session cookie, binary subprotocol).

- Latency: a 1x1 non-incremental FramebufferUpdateRequest and its answer, one at a time; the median round
  trip through websockify minus the direct one is the added latency. QEMU answers on its display refresh
  timer (tens of ms under TCG), so single round trips vary widely; the medians of --pings samples each
  still show what the proxy adds.
- Throughput: full-screen non-incremental updates (Raw, 32 bpp), one after another, for --seconds;
  bytes per second through websockify against direct.
- Sessions: --sessions consoles open at once (spread over guests: QEMU takes 32 VNC clients at most),
  each asking for a small update every second for --seconds; all must stay connected. CPU and memory of
  websockify (its main process and one child per console) are reported.

Run:  .venv/bin/python benchmarks/console.py [--sessions 50] [--seconds 20] [--sqlite]
Small check:  .venv/bin/python benchmarks/console.py --sessions 3 --seconds 2

The guests, the database, the temp folder and the Redis keys are removed in a finally block.
"""

from __future__ import annotations

import argparse
import math
import os
import socket
import statistics
import struct
import sys
import threading
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

TARGET_THROUGHPUT_RATIO = 0.90
TARGET_ADDED_LATENCY_MS = 2.0
#: QEMU's default limit of simultaneous VNC clients per guest.
VNC_CLIENTS_PER_GUEST = 25


# ---------------------------------------------------------------------------------------------------
# a minimal RFB client over a plain socket or a WebSocket


class Direct:
    """A VNC connection straight to the guest's port."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buffer = bytearray()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _more(self) -> bytes:
        data = self.sock.recv(1 << 20)
        if not data:
            raise ConnectionError("VNC closed the connection")
        return data

    def read(self, size: int) -> bytes:
        while len(self.buffer) < size:
            self.buffer += self._more()
        data = bytes(self.buffer[:size])
        del self.buffer[:size]
        return data

    def close(self) -> None:
        self.sock.close()


class ThroughWebsockify(Direct):
    """A VNC connection through websockify, as noVNC makes it."""

    def __init__(self, url: str, origin: str, cookie: str) -> None:
        from websockets.sync.client import connect

        self.ws = connect(  # closed by close()
            url,
            origin=origin,
            additional_headers={"Cookie": cookie},
            subprotocols=["binary"],
            open_timeout=30,
            max_size=None,
            compression=None,
        )
        self.buffer = bytearray()

    def send(self, data: bytes) -> None:
        self.ws.send(data)

    def _more(self) -> bytes:
        data = self.ws.recv(timeout=30)
        return data if isinstance(data, bytes) else data.encode()

    def close(self) -> None:
        self.ws.close()


def handshake(conn: Direct) -> tuple[int, int]:
    """RFB 3.8 with security None, shared; returns the screen's width and height."""
    version = conn.read(12)
    if not version.startswith(b"RFB 003."):
        raise RuntimeError(f"not a VNC server: {version!r}")
    conn.send(b"RFB 003.008\n")
    count = conn.read(1)[0]
    types = conn.read(count)
    if 1 not in types:
        raise RuntimeError(f"VNC offers no 'None' security: {list(types)}")
    conn.send(b"\x01")
    if conn.read(4) != b"\x00\x00\x00\x00":
        raise RuntimeError("VNC security handshake failed")
    conn.send(b"\x01")
    width, height = struct.unpack(">HH", conn.read(4))
    bits_per_pixel = conn.read(16)[0]
    name_length = struct.unpack(">I", conn.read(4))[0]
    conn.read(name_length)
    if bits_per_pixel != 32:  # ask for 32 bpp true colour so that sizes are known
        conn.send(b"\x00\x00\x00\x00" + struct.pack(">BBBBHHHBBB3x", 32, 24, 0, 1, 255, 255, 255, 16, 8, 0))
    conn.send(struct.pack(">BBHi", 2, 0, 1, 0))  # SetEncodings: Raw only
    return width, height


def request(conn: Direct, width: int, height: int) -> None:
    conn.send(struct.pack(">BBHHHH", 3, 0, 0, 0, width, height))


def read_update(conn: Direct) -> int:
    """Read one FramebufferUpdate (Raw); return its size in bytes."""
    kind, _pad, rects = struct.unpack(">BBH", conn.read(4))
    if kind != 0:
        raise RuntimeError(f"unexpected server message {kind}")
    size = 4
    for _ in range(rects):
        _x, _y, w, h, encoding = struct.unpack(">HHHHi", conn.read(12))
        size += 12
        if encoding != 0:
            raise RuntimeError(f"unexpected encoding {encoding}")
        conn.read(w * h * 4)
        size += w * h * 4
    return size


def latencies(conn: Direct, count: int) -> list[float]:
    result = []
    for _ in range(count):
        started = time.perf_counter()
        request(conn, 1, 1)
        read_update(conn)
        result.append(time.perf_counter() - started)
    return result


def throughput(conn: Direct, width: int, height: int, seconds: float) -> float:
    """Bytes per second of full-screen updates, asked for one after another (QEMU merges requests made
    before it answers, so only one is in flight)."""
    received, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        request(conn, width, height)
        received += read_update(conn)
    return received / (time.perf_counter() - started)


# ---------------------------------------------------------------------------------------------------
# processes


def process_tree(pid: int) -> list[int]:
    """`pid` and its children (websockify forks one process per console)."""
    children = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat[stat.rindex(")") + 2 :].split()[1]) == pid:
                children.append(int(entry.name))
    return [pid, *children]


def pss_mb(pid: int) -> float:
    """Proportional set size of a process in MB: its private memory plus its share of shared pages (the
    forked children share most of the parent's), so that the sum over processes is the real use."""
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1]) / 1024
    return 0.0


def tree_figures(pid: int) -> tuple[float, float, int]:
    """(CPU seconds, PSS MB, processes) of websockify and its children."""
    cpu = memory = 0.0
    pids = process_tree(pid)
    for p in pids:
        try:
            cpu += common.cpu_seconds(p)
            memory += pss_mb(p)
        except OSError:
            continue
    return cpu, memory, len(pids)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sessions", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--pings", type=int, default=300, help="round trips per latency measurement")
    parser.add_argument("--sqlite", action="store_true")
    parser.add_argument("--db-name", default="vireo_bench_console")
    args = parser.parse_args()

    warnings.filterwarnings("ignore", message=r"connect\(\) must be used as a context manager")
    os.environ["VIREO_CONSOLE_MAX_PER_USER"] = "0"  # one benchmark user holds all the sessions
    bench = common.setup_environment("console", sqlite=args.sqlite, db_name=args.db_name)
    prefix = common.run_prefix()
    import libvirt

    conn = libvirt.open(common.SYSTEM_URI)
    bench.cleanups.append(lambda: common.cleanup_prefixed_domains(conn, prefix))
    ok = True
    try:
        from django.contrib.auth import get_user_model
        from django.test import Client

        from apps import virt
        from apps.accounts.models import Membership, Team
        from apps.core.choices import Role
        from apps.hosts.models import Host
        from apps.hosts.services import connection_for, reconcile_host
        from apps.vms.models import VirtualMachine
        from tests.fixtures.libvirt_env import tiny_guest_xml, wait_for_text
        from tests.fixtures.tinyguest import READY_MARKER, build_tiny_guest

        team = Team.objects.create(name="bench")
        user = get_user_model().objects.create_user("bench", password="bench-password-123")
        Membership.objects.create(user=user, team=team, role=Role.OPERATOR)
        host = Host.objects.create(team=team, name="local", uri=common.SYSTEM_URI)

        guest = build_tiny_guest()
        domain_type = os.environ.get("VIREO_TEST_DOMAIN_TYPE") or common.system_domain_type(conn)
        guests = max(1, math.ceil(args.sessions / VNC_CLIENTS_PER_GUEST))
        domains = []
        started = time.monotonic()
        for i in range(guests):
            log = bench.tmp / f"vm{i}.serial.log"
            xml = tiny_guest_xml(f"{prefix}vm{i}", guest, domain_type=domain_type, serial_log=log)
            domains.append((conn.createXML(xml, 0), log))
        for _dom, log in domains:
            wait_for_text(log, READY_MARKER, 120)
        print(f"[setup] {guests} {domain_type} tiny guest(s) ready in {time.monotonic() - started:.1f} s")
        reconcile_host(host)
        vms = [VirtualMachine.objects.get(host=host, uuid=d.UUIDString()) for d, _ in domains]

        ws_port = common.free_port()
        plugins = "apps.console.websockify_plugins"
        websockify = common.start_process(
            bench,
            [str(common.PYTHON), "-m", "websockify", "--token-plugin", f"{plugins}.ConsoleTokens",
             "--token-source", "project.settings", "--auth-plugin", f"{plugins}.ConsoleAuth",
             "--auth-source", "project.settings", f"127.0.0.1:{ws_port}"],
            "websockify",
        )  # fmt: skip
        common.wait_for_port(ws_port, proc=websockify)

        client = Client()
        client.force_login(user)
        cookie = f"sessionid={client.cookies['sessionid'].value}"
        origin = "http://127.0.0.1:8000"

        def through_websockify(vm) -> ThroughWebsockify:
            answer = client.post(f"/vms/{vm.pk}/console/ticket/", HTTP_HOST="127.0.0.1")
            if answer.status_code != 200:
                raise RuntimeError(f"no ticket: {answer.status_code} {answer.content[:200]!r}")
            query = answer.json()["url"].partition("?")[2]
            url = f"ws://127.0.0.1:{ws_port}/websockify?{query}"
            return ThroughWebsockify(url, origin, cookie)

        display = next(
            g for g in virt.get_domain(connection_for(host), str(vms[0].uuid)).graphics if g.type == "vnc"
        )
        vnc_port = int(display.port)

        # Latency and throughput: direct, then through websockify, one connection each.
        figures = {}
        for label, make in (
            ("direct", lambda: Direct(vnc_port)),
            ("websockify", lambda: through_websockify(vms[0])),
        ):
            connection = make()
            try:
                width, height = handshake(connection)
                latencies(connection, 20)  # warm up
                rtts = latencies(connection, args.pings)
                rate = throughput(connection, width, height, max(args.seconds, 1.0))
            finally:
                connection.close()
            figures[label] = (statistics.median(rtts), rate)
            print(
                f"[{label}] {width}x{height}: round trip {common.summary_ms(rtts)}; "
                f"throughput {rate / 1e6:.1f} MB/s",
                flush=True,
            )
        added_ms = (figures["websockify"][0] - figures["direct"][0]) * 1000
        ratio = figures["websockify"][1] / figures["direct"][1]
        latency_ok = added_ms <= TARGET_ADDED_LATENCY_MS
        throughput_ok = ratio >= TARGET_THROUGHPUT_RATIO
        print(f"[latency] added median {added_ms:.2f} ms (target <= {TARGET_ADDED_LATENCY_MS} ms): "
              f"{common.verdict(latency_ok)}")  # fmt: skip
        print(f"[throughput] websockify/direct {ratio * 100:.1f} % (target >= "
              f"{TARGET_THROUGHPUT_RATIO * 100:.0f} %): {common.verdict(throughput_ok)}")  # fmt: skip

        # Sessions: all open at once, each asking for a small update every second.
        _cpu, rss_before, _ = tree_figures(websockify.pid)
        consoles = []
        opened_at = time.monotonic()
        for i in range(args.sessions):
            console = through_websockify(vms[i % len(vms)])
            handshake(console)
            consoles.append(console)
        print(f"[sessions] {len(consoles)} consoles open in {time.monotonic() - opened_at:.1f} s", flush=True)
        failures: list[str] = []
        stop = threading.Event()

        def keep_alive(index: int, console: Direct) -> None:
            try:
                while not stop.is_set():
                    request(console, 8, 8)
                    read_update(console)
                    stop.wait(1.0)
            except Exception as exc:  # a dropped console is the finding
                failures.append(f"console {index}: {type(exc).__name__}: {exc}")

        threads = [
            threading.Thread(target=keep_alive, args=(i, c), daemon=True) for i, c in enumerate(consoles)
        ]
        cpu_start = tree_figures(websockify.pid)[0]
        for thread in threads:
            thread.start()
        time.sleep(args.seconds)
        cpu_end, rss_held, processes = tree_figures(websockify.pid)
        stop.set()
        for thread in threads:
            thread.join(10)
        for console in consoles:
            console.close()
        held = args.sessions - len(failures)
        sessions_ok = not failures
        cpu_share = (cpu_end - cpu_start) / args.seconds * 100
        print(
            f"[sessions] held {held}/{args.sessions} for {args.seconds:.0f} s: websockify {processes} processes, "
            f"{rss_held:.0f} MB PSS ({rss_before:.0f} MB before), CPU {cpu_share:.1f} % of one core: "
            f"{common.verdict(sessions_ok)}"
        )
        for failure in failures[:10]:
            print(f"  {failure}")
        ok = latency_ok and throughput_ok and sessions_ok
    finally:
        common.teardown_environment(bench)
        conn.close()
    print(f"[result] {common.verdict(ok)}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
