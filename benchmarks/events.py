"""Live-events benchmark: libvirt lifecycle events to 200 open pages, end to end.

Target: p99 <= 250 ms from the libvirt call to the WebSocket message, and no message lost.

A real daphne and a real hostd (`manage.py hostd`) run as subprocesses on a throwaway database; a
Host on qemu:///system belongs to a team; 200 WebSocket subscribers (a team member's session) listen
on /ws/live/. A burst of N domain definitions (each a 'defined' event -> vm.created) and then N
undefinitions (-> vm.gone) is made as fast as possible. Latency = arrival - time just before the
libvirt call for that domain; losses = expected - received, plus gaps in the group's sequence numbers.

Run:  .venv/bin/python benchmarks/events.py [--subscribers 200] [--domains 50] [--sqlite]

The domains (vireo-bench-<hex>-*) have no disk and no NIC and are never started; they are removed in
a finally block, as are the database, the temp folder and the Redis keys.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

TARGET_P99_MS = 250.0


# ---------------------------------------------------------------------------------------------------
# subscriber processes (no Django here)


def subscriber_worker(index, port, cookie, count, prefix, ready, progress, stop, results):
    """Open `count` WebSockets, report ready, record every message until `stop`, send the records."""
    from websockets.asyncio.client import connect

    uri = f"ws://127.0.0.1:{port}/ws/live/"
    origin = f"http://127.0.0.1:{port}"
    records: list[list[tuple]] = [[] for _ in range(count)]
    baselines: list[dict] = [{} for _ in range(count)]
    errors: list[str] = []

    async def one(i: int, opened: asyncio.Event, gate: asyncio.Semaphore) -> None:
        async with gate:
            ws = await connect(
                uri, origin=origin, additional_headers={"Cookie": f"sessionid={cookie}"}, open_timeout=60
            )
        try:
            first = json.loads(await asyncio.wait_for(ws.recv(), 60))
            if first.get("type") != "subscribed":
                errors.append(f"first message {first}")
            baselines[i] = first.get("groups", {})
            opened.set()
            mine = records[i]
            while True:
                raw = await ws.recv()
                arrived = time.time()
                mine.append((arrived, raw))
                if prefix in raw:
                    hits = raw.count('"vm.created"') + raw.count('"vm.gone"')
                    if hits:
                        with progress.get_lock():
                            progress.value += hits
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a closed socket is a finding, reported below
            errors.append(f"subscriber {index}.{i}: {type(exc).__name__}: {exc}")
        finally:
            await ws.close()

    async def main() -> None:
        gate = asyncio.Semaphore(20)
        events = [asyncio.Event() for _ in range(count)]
        tasks = [asyncio.create_task(one(i, events[i], gate)) for i in range(count)]
        await asyncio.wait_for(asyncio.gather(*(e.wait() for e in events)), 120)
        ready.release()
        while not stop.is_set():
            await asyncio.sleep(0.1)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    try:
        asyncio.run(main())
    except Exception as exc:
        errors.append(f"worker {index}: {type(exc).__name__}: {exc}")
        ready.release()
    parsed = []
    for i, recs in enumerate(records):
        rows = []
        for arrived, raw in recs:
            msg = json.loads(raw)
            event = msg.get("event") or {}
            # A sync's changes arrive as one "batch" message carrying each object's event.
            published = event.get("time")
            for sub in event.get("events", []) if event.get("type") == "batch" else [event]:
                data = sub.get("data") or {}
                rows.append(
                    (arrived, msg.get("group"), msg.get("seq"), sub.get("type"), data.get("name"), published)
                )
        parsed.append({"baseline": baselines[i], "rows": rows})
    results.put((index, parsed, errors))


# ---------------------------------------------------------------------------------------------------


def wait_until(predicate, timeout: float, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


def proc_figures(pid: int) -> tuple[float, float]:
    return common.cpu_seconds(pid), common.rss_mb(pid)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--subscribers", type=int, default=200)
    parser.add_argument("--domains", type=int, default=50)
    parser.add_argument("--workers", type=int, default=2, help="client processes sharing the subscribers")
    parser.add_argument("--sqlite", action="store_true")
    parser.add_argument("--db-name", default="vireo_bench")
    parser.add_argument("--hostd-debug", action="store_true", help="hostd logs each batch's timings")
    parser.add_argument("--settle", type=float, default=30.0, help="seconds to wait for a phase's events")
    args = parser.parse_args()

    prefix = common.run_prefix()
    bench = common.setup_environment("events", sqlite=args.sqlite, db_name=args.db_name)
    workers: list = []
    stop = mp.get_context("spawn").Event()
    try:
        import libvirt
        from django.contrib.auth import get_user_model
        from django.test import Client

        from apps.accounts.models import Membership, Team
        from apps.core.choices import Role
        from apps.core.live import current_sequences
        from apps.hosts.models import Host

        def undefine_ours() -> None:
            conn = libvirt.open(common.SYSTEM_URI)
            try:
                removed = common.cleanup_prefixed_domains(conn, prefix)
                if removed:
                    print(f"[cleanup] undefined {len(removed)} leftover {prefix}* domains", flush=True)
            finally:
                conn.close()

        undefine_ours.__qualname__ = f"undefine {prefix}* on {common.SYSTEM_URI}"
        bench.cleanups.append(undefine_ours)

        team = Team.objects.create(name="Bench")
        member = get_user_model().objects.create_user(username="bench-operator", password=None)
        Membership.objects.create(user=member, team=team, role=Role.OPERATOR)
        host = Host.objects.create(team=team, name="bench-system", uri=common.SYSTEM_URI)
        client = Client(HTTP_HOST="127.0.0.1")
        client.force_login(member)
        cookie = client.cookies["sessionid"].value
        group = f"team-{team.pk}"

        daphne, port = common.start_daphne(bench)
        hostd = common.start_process(
            bench,
            [str(common.PYTHON), "manage.py", "hostd"],
            "hostd",
            {"LOG_LEVEL": "DEBUG"} if args.hostd_debug else None,
        )
        started = time.monotonic()
        online = wait_until(
            lambda: Host.objects.filter(pk=host.pk, state="online").exists() or hostd.poll() is not None,
            60,
            0.2,
        )
        if not online or hostd.poll() is not None:
            raise RuntimeError(f"hostd did not bring the host online:\n{common.log_tail(hostd)}")
        print(
            f"[setup] daphne on 127.0.0.1:{port} (pid {daphne.pid}), hostd pid {hostd.pid}: host online "
            f"after {time.monotonic() - started:.1f} s",
            flush=True,
        )
        time.sleep(1.0)  # let the initial reconcile's events go out before subscribers count anything

        ctx = mp.get_context("spawn")
        ready = ctx.Semaphore(0)
        progress = ctx.Value("l", 0)
        results = ctx.Queue()
        per_worker = [
            args.subscribers // args.workers + (1 if i < args.subscribers % args.workers else 0)
            for i in range(args.workers)
        ]
        started = time.monotonic()
        for i, n in enumerate(per_worker):
            p = ctx.Process(
                target=subscriber_worker,
                args=(i, port, cookie, n, prefix, ready, progress, stop, results),
                daemon=True,
            )
            p.start()
            workers.append(p)
        for _ in workers:
            if not ready.acquire(timeout=180):
                raise RuntimeError("subscribers did not connect in time")
        print(
            f"[setup] {args.subscribers} subscribers connected in {time.monotonic() - started:.1f} s "
            f"({args.workers} client processes)",
            flush=True,
        )
        time.sleep(0.5)

        conn = libvirt.open(common.SYSTEM_URI)
        dtype = common.system_domain_type(conn)
        names = [f"{prefix}ev{j:03d}" for j in range(args.domains)]
        xmls = {name: common.minimal_domain_xml(name, dtype) for name in names}
        t0: dict[tuple[str, str], float] = {}
        figures = {}
        phases = {}
        for phase, event_type in (("define", "vm.created"), ("undefine", "vm.gone")):
            target = progress.value + args.subscribers * args.domains
            cpu_d, _ = proc_figures(daphne.pid)
            cpu_h, _ = proc_figures(hostd.pid)
            burst_start = time.time()
            domains = {}
            for name in names:
                t0[(event_type, name)] = time.time()
                if phase == "define":
                    domains[name] = conn.defineXML(xmls[name])
                else:
                    conn.lookupByName(name).undefine()
            burst_s = time.time() - burst_start
            done = wait_until(lambda target=target: progress.value >= target, args.settle)
            settled_s = time.time() - burst_start
            cpu_d2, rss_d = proc_figures(daphne.pid)
            cpu_h2, rss_h = proc_figures(hostd.pid)
            phases[phase] = {"burst_s": burst_s, "settled_s": settled_s, "complete": done}
            figures[phase] = {
                "daphne_cpu": cpu_d2 - cpu_d,
                "daphne_rss": rss_d,
                "hostd_cpu": cpu_h2 - cpu_h,
                "hostd_rss": rss_h,
                "daphne_peak": common.rss_mb(daphne.pid, "VmHWM"),
                "hostd_peak": common.rss_mb(hostd.pid, "VmHWM"),
            }
            print(
                f"[{phase}] {args.domains} libvirt calls in {burst_s * 1000:.0f} ms; all {event_type} events "
                f"{'received' if done else 'NOT all received'} after {settled_s:.2f} s "
                f"(progress {progress.value}/{target})",
                flush=True,
            )
            time.sleep(1.0)
        conn.close()
        time.sleep(1.0)
        final_seq = current_sequences([group])[group]

        stop.set()
        collected = {}
        worker_errors = []
        for _ in workers:
            index, parsed, errors = results.get(timeout=120)
            collected[index] = parsed
            worker_errors += errors
        for p in workers:
            p.join(timeout=10)

        # ------------------------------------------------------------------ analysis
        latencies = {"vm.created": [], "vm.gone": []}
        to_publish, to_arrival = [], []  # the two halves: libvirt call -> published, published -> arrived
        expected = args.subscribers * args.domains * 2
        received = 0
        duplicates = 0
        seq_gaps = 0
        tail_missing = 0
        other_types: dict[str, int] = {}
        subs = [s for index in sorted(collected) for s in collected[index]]
        for sub in subs:
            seen = set()
            base = sub["baseline"].get(group, 0)
            seqs = set()
            for arrived, grp, seq, etype, name, published in sub["rows"]:
                if grp == group and seq is not None:
                    seqs.add(seq)
                if etype in latencies and name and (etype, name) in t0:
                    if (etype, name) in seen:
                        duplicates += 1
                        continue
                    seen.add((etype, name))
                    received += 1
                    latencies[etype].append(arrived - t0[(etype, name)])
                    if published is not None:
                        to_publish.append(published - t0[(etype, name)])
                        to_arrival.append(arrived - published)
                elif etype:
                    other_types[etype] = other_types.get(etype, 0) + 1
            if seqs:
                top = max(seqs)
                seq_gaps += sum(1 for s in range(base + 1, top + 1) if s not in seqs)
                tail_missing += max(0, final_seq - top)
            else:
                tail_missing += max(0, final_seq - base)
        lost = expected - received
        all_lat = latencies["vm.created"] + latencies["vm.gone"]
        ms = [x * 1000 for x in all_lat]
        p99 = common.percentile(ms, 99) if ms else float("inf")

        print()
        print("=" * 100)
        print(f"EVENTS BENCHMARK — {bench.describe()}")
        print("=" * 100)
        print(
            f"{args.subscribers} WebSocket subscribers (team member session, group {group}) on daphne; "
            f"hostd watching {common.SYSTEM_URI}; {args.domains} domains defined then undefined."
        )
        for phase in ("define", "undefine"):
            ph, fg = phases[phase], figures[phase]
            print(
                f"  {phase:8s}: burst {ph['burst_s'] * 1000:.0f} ms, all delivered after {ph['settled_s']:.2f} s "
                f"({'complete' if ph['complete'] else 'INCOMPLETE'}); CPU daphne {fg['daphne_cpu']:.2f} s, "
                f"hostd {fg['hostd_cpu']:.2f} s; RSS daphne {fg['daphne_rss']:.0f} MB (peak {fg['daphne_peak']:.0f}), "
                f"hostd {fg['hostd_rss']:.0f} MB (peak {fg['hostd_peak']:.0f})"
            )
        for etype, values in latencies.items():
            print(f"  latency {etype:10s}: {common.summary_ms(values)}")
        print(f"  libvirt call -> published by hostd: {common.summary_ms(to_publish)}")
        print(f"  published -> arrived at subscriber: {common.summary_ms(to_arrival)}")
        print(
            f"  latency ALL       : {common.summary_ms(all_lat)} -> p99 target <= {TARGET_P99_MS:.0f} ms "
            f"{common.verdict(p99 <= TARGET_P99_MS)}"
        )
        print(
            f"  messages: expected {expected} (subscriber, event) pairs, received {received}, lost {lost}, "
            f"duplicates {duplicates}; sequence gaps in {group}: {seq_gaps}, missing at the tail "
            f"(final seq {final_seq}): {tail_missing}"
        )
        print(f"  other events received (all subscribers): {other_types}")
        if worker_errors:
            print(f"  subscriber errors ({len(worker_errors)}): {worker_errors[:5]}")
        ok = p99 <= TARGET_P99_MS and lost == 0 and seq_gaps == 0 and tail_missing == 0 and not worker_errors
        print(f"OVERALL: {common.verdict(ok)}")
        return 0 if ok else 1
    finally:
        stop.set()
        for p in workers:
            p.join(timeout=5)
            if p.is_alive():
                p.kill()
        common.teardown_environment(bench)


if __name__ == "__main__":
    sys.exit(main())
