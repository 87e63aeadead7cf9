#!/usr/bin/env python3
"""Scale-out benchmark (scripts/bench-scaleout.sh; docs/benchmarks.md "Scale-out"): the same
`fleethub bench register` and `fleethub bench telemetry` runs against

  sqlite      one node on SQLite (WAL, synchronous=NORMAL: a commit survives a process kill),
  pg1         one node on a throwaway PostgreSQL with fsync=off (a commit is written to the OS
              before the answer, not flushed: the same durability class as SQLite's NORMAL),
  pg3         three nodes on one such PostgreSQL (+ nats-server),
  pg1-fsync   pg1 with PostgreSQL's default fsync=on (every commit flushed to the disk),
  pg3-fsync   pg3 with fsync=on,

each behind the same HAProxy (TCP mode, on 127.0.0.1:8883/443/5671), in a network namespace of its
own (tests/scale_out/cluster.py). Per run it samples the CPU time of every node, of HAProxy and of
the PostgreSQL processes, PostgreSQL's committed transactions (pg_stat_database.xact_commit) and the
telemetry log's length, and reports per registration / per message: node CPU, PostgreSQL CPU,
HAProxy CPU, commits. The whole command is measured (device creation and connection set-up
included: a small share next to thousands of messages); the bench's own window figures are kept
in the JSON too.

Environment: FLEETHUB_BIN (default target/release/fleethub), FLEETHUB_BENCH_WORK (default
.ci-work/bench-scaleout), BENCH_CONFIGS (default "sqlite pg1 pg3 pg1-fsync pg3-fsync"),
BENCH_REGISTRATIONS (2000), BENCH_REG_CONCURRENCY (32), BENCH_DEVICES (100), BENCH_INFLIGHT (8),
BENCH_DURATION (10 s): the telemetry settings of the earlier PostgreSQL vs SQLite figures.
Prints a table and writes results.json in the work directory.
"""

import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import cluster  # noqa: E402 (after the path)
from cluster import CLEAN_ENV, ROOT, log  # noqa: E402

FLEETHUB = os.environ.get("FLEETHUB_BIN", os.path.join(ROOT, "target", "release", "fleethub"))
WORK = os.path.abspath(os.environ.get("FLEETHUB_BENCH_WORK", os.path.join(ROOT, ".ci-work", "bench-scaleout")))
CONFIGS = os.environ.get("BENCH_CONFIGS", "sqlite pg1 pg3 pg1-fsync pg3-fsync").split()
REGISTRATIONS = int(os.environ.get("BENCH_REGISTRATIONS", "2000"))
REG_CONCURRENCY = int(os.environ.get("BENCH_REG_CONCURRENCY", "32"))
DEVICES = int(os.environ.get("BENCH_DEVICES", "100"))
INFLIGHT = int(os.environ.get("BENCH_INFLIGHT", "8"))
DURATION = int(os.environ.get("BENCH_DURATION", "10"))
TICK = os.sysconf("SC_CLK_TCK")


def cpu_of(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICK
    except OSError:
        return 0.0


def cpu_by_name(name):
    """CPU seconds of every live process whose comm is `name` ({pid: seconds})."""
    out = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open("/proc/%s/comm" % d) as f:
                    if f.read().strip() == name:
                        out[int(d)] = cpu_of(int(d))
            except OSError:
                pass
    return out


def log_length(rest):
    """Messages in the telemetry log: the sum over partitions of lastSequenceNumber + 1."""
    parts = rest.ok("GET", "/messages/events/partitions")
    return sum(int(p["lastEnqueuedSequenceNumber"]) + 1 for p in parts["partitions"])


# PostgreSQL's backends publish their counters (pg_stat_database) when idle, at the latest 10 s
# later: the commits are read after this pause, and the idle commits (node leases) of one pause,
# measured before each run, are subtracted.
STATS_SETTLE = 11


class Sample:
    def __init__(self, nodes, haproxy, pg, rest, before=True):
        if before and pg:
            c0 = pg.xact_commit()
            time.sleep(STATS_SETTLE)
            self.commits = pg.xact_commit()
            self.idle_commits = self.commits - c0
        self.nodes = {n.name: n.cpu_seconds() for n in nodes}
        self.haproxy = cpu_of(haproxy.proc.pid)
        self.pg_procs = cpu_by_name("postgres") if pg else {}
        self.log = log_length(rest)
        self.t = time.monotonic()
        if not before and pg:
            time.sleep(STATS_SETTLE)
            self.commits = pg.xact_commit()
        if not pg:
            self.commits = self.idle_commits = 0


def delta(before, after):
    pg_cpu = 0.0
    for pid, secs in after.pg_procs.items():
        pg_cpu += secs - before.pg_procs.get(pid, 0.0)
    return {
        "seconds": after.t - before.t,
        "node_cpu": {n: after.nodes[n] - before.nodes[n] for n in after.nodes},
        "haproxy_cpu": after.haproxy - before.haproxy,
        "pg_cpu": pg_cpu,
        "pg_commits": max(0, after.commits - before.commits - before.idle_commits),
        "pg_idle_commits_per_settle": before.idle_commits,
        "log_messages": after.log - before.log,
    }


def fleethub_json(args):
    r = subprocess.run([FLEETHUB, *args, "--output", "json"], capture_output=True, text=True, env=CLEAN_ENV,
                       timeout=900)
    if r.returncode != 0:
        raise RuntimeError("fleethub %s: %s" % (" ".join(args[:2]), r.stderr[-1500:]))
    return json.loads(r.stdout)


def run_config(name):
    from load import HUB_API, Rest

    pg = nats = haproxy = None
    nodes = []
    base, _, variant = name.partition("-")
    if base not in ("sqlite", "pg1", "pg3") or variant not in ("", "fsync") or (base == "sqlite" and variant):
        raise SystemExit("unknown configuration %s: sqlite, pg1, pg3, pg1-fsync or pg3-fsync" % name)
    try:
        if base != "sqlite":
            pg = cluster.Postgres(WORK)
            pg.set("fsync", "on" if variant == "fsync" else "off")
        if base == "sqlite":
            nodes = [cluster.Node(FLEETHUB, WORK, "sqlite", "127.0.0.11")]
        elif base == "pg1":
            nodes = [cluster.Node(FLEETHUB, WORK, "pg1", "127.0.0.11", pg.url, "node-1")]
        else:
            nats = cluster.Nats(WORK)
            nats_url = cluster.Nats.URL if "--nats-url" in cluster.serve_flags(FLEETHUB) else None
            for i in range(3):
                nodes.append(cluster.Node(FLEETHUB, WORK, "pg3-node%d" % (i + 1), "127.0.0.%d" % (11 + i), pg.url,
                                          "node-%d" % (i + 1), nats_url))
        haproxy = cluster.HaProxy(WORK, nodes)
        info = nodes[0].info
        rest = Rest(info["hubServiceConnectionString"], info["caCertPath"], HUB_API)
        data = nodes[0].data
        result = {"config": name, "nodes": len(nodes)}

        log("%s: bench register --count %d --concurrency %d" % (name, REGISTRATIONS, REG_CONCURRENCY))
        before = Sample(nodes, haproxy, pg, rest)
        reg = fleethub_json(["bench", "register", "--count", str(REGISTRATIONS), "--concurrency",
                             str(REG_CONCURRENCY), "--handshakes", "50", "--data-dir", data])
        result["register"] = {"report": reg, **delta(before, Sample(nodes, haproxy, pg, rest, before=False))}

        log("%s: bench telemetry --devices %d --max --inflight %d --duration %d"
            % (name, DEVICES, INFLIGHT, DURATION))
        before = Sample(nodes, haproxy, pg, rest)
        tel = fleethub_json(["bench", "telemetry", "--devices", str(DEVICES), "--max", "--inflight", str(INFLIGHT),
                             "--duration", str(DURATION), "--warmup", "3", "--data-dir", data,
                             "--dial", "127.0.0.1", "--server-pid", str(nodes[0].pid)])
        result["telemetry"] = {"report": tel, **delta(before, Sample(nodes, haproxy, pg, rest, before=False))}
        return result
    finally:
        for part in [haproxy, *nodes, nats, pg]:
            if part is not None:
                part.stop()


def per(x, n, scale=1e6):
    return x * scale / n if n else float("nan")


def table(results):
    rows = ["| config | registrations/s | node CPU ms/registration | PG commits/registration | "
            "telemetry msg/s (p50 ms) | node CPU us/msg (per node) | PG CPU us/msg | HAProxy CPU us/msg | "
            "PG commits/msg |", "|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        reg, tel = r["register"], r["telemetry"]
        registered = reg["report"].get("registered", 0)
        msgs = tel["log_messages"]
        node_total = sum(tel["node_cpu"].values())
        split = " / ".join("%.0f" % per(v, msgs) for v in tel["node_cpu"].values())
        rows.append("| %s | %.0f | %.2f | %s | %.0f (%.1f) | %.0f (%s) | %s | %.0f | %s |" % (
            r["config"], reg["report"].get("registrationsPerSec", 0),
            per(sum(reg["node_cpu"].values()), registered, 1e3),
            "%.2f" % (reg["pg_commits"] / registered) if r["config"] != "sqlite" and registered else "-",
            tel["report"].get("messagesPerSec", 0), tel["report"].get("p50Ms", 0),
            per(node_total, msgs), split,
            "%.0f" % per(tel["pg_cpu"], msgs) if r["config"] != "sqlite" else "-",
            per(tel["haproxy_cpu"], msgs),
            "%.3f" % (tel["pg_commits"] / msgs) if r["config"] != "sqlite" and msgs else "-"))
    return "\n".join(rows)


def main():
    cluster.enter_namespace(WORK)
    if not os.path.exists(FLEETHUB):
        raise SystemExit("no fleethub binary at %s (FLEETHUB_BIN)" % FLEETHUB)
    results = []
    for name in CONFIGS:
        results.append(run_config(name))
        with open(os.path.join(WORK, "results.json"), "w") as f:
            json.dump(results, f, indent=1)
    print(table(results))
    print("(full figures: %s)" % os.path.join(WORK, "results.json"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
