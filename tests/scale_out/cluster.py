"""The pieces of a fleethub cluster for the scale-out test and benchmark (not a test itself).

- enter_namespace(): re-runs the calling script inside new network, mount and PID namespaces
  (`unshare`), brings the loopback up and gives it a private /etc/hosts naming dps.fleethub.test and
  hub.fleethub.test 127.0.0.1; every process started afterwards (PostgreSQL, nats-server, the nodes,
  HAProxy, the SDK clients) lives in there and dies with the script, and ports 443/8883/5671 of the
  machine stay free for other runs;
- Postgres: a throwaway PostgreSQL (scripts/pg-throwaway.sh: unix socket only);
- Nats: `nats-server` on 127.0.0.1:4222;
- Node: one `fleethub serve` on its own loopback address (ports 8883/443/5671 there), its CPU time
  from /proc; kill9();
- HaProxy: TCP mode on 127.0.0.1:8883, :443 and :5671 in front of the nodes, TCP health checks
  every second (docs/scale-out.md shows the same configuration), server states from its stats socket.
"""

import json
import os
import shutil
import socket
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
DPS_HOST, HUB_HOST = "dps.fleethub.test", "hub.fleethub.test"
PORTS = {"mqtt": 8883, "https": 443, "amqp": 5671}
NS_MARK = "FLEETHUB_SCALEOUT_IN_NAMESPACE"
# The environment of every fleethub process started here: without the FLEETHUB_* settings of the
# caller (scripts/test.sh exports its own server's connection strings, which the CLI would take).
CLEAN_ENV = {k: v for k, v in os.environ.items() if not k.startswith("FLEETHUB_")}


def log(msg):
    print("[%s] %s" % (time.strftime("%H:%M:%S"), msg), flush=True)


def need(program, package):
    if shutil.which(program) is None:
        raise SystemExit("ERROR: '%s' is not installed (Debian: apt-get install %s)" % (program, package))


def enter_namespace(work):
    """Re-executes this script in fresh namespaces (once); inside, sets up loopback and /etc/hosts."""
    if os.environ.get(NS_MARK) != "1":
        if os.geteuid() != 0:
            raise SystemExit("ERROR: needs root (unshare of the network namespace, ports 443/8883/5671 in it)")
        need("unshare", "util-linux")
        need("ip", "iproute2")
        env = dict(os.environ, **{NS_MARK: "1"})
        args = ["unshare", "--net", "--mount", "--pid", "--fork", "--mount-proc", "--", sys.executable] + sys.argv
        os.execvpe("unshare", args, env)
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    os.makedirs(work, exist_ok=True)
    hosts = os.path.join(work, "hosts")
    with open(hosts, "w") as f:
        f.write("127.0.0.1 localhost %s %s\n::1 localhost\n" % (DPS_HOST, HUB_HOST))
    # The mount namespace is private (unshare's default propagation): the machine's /etc/hosts is untouched.
    subprocess.run(["mount", "--bind", hosts, "/etc/hosts"], check=True)


def port_open(addr, port):
    try:
        socket.create_connection((addr, port), timeout=2).close()
        return True
    except OSError:
        return False


def wait_for(what, fn, timeout, proc=None, tail=None):
    deadline = time.monotonic() + timeout
    while True:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError("%s: the process exited (status %s)\n%s" % (what, proc.returncode, tail() if tail else ""))
        if fn():
            return
        if time.monotonic() > deadline:
            raise RuntimeError("%s: not ready after %d s\n%s" % (what, timeout, tail() if tail else ""))
        time.sleep(0.3)


def tail_of(path, n=40):
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-n:])
    except OSError:
        return ""


class Postgres:
    def __init__(self, work):
        self.dir = os.path.join(work, "pg")
        script = os.path.join(ROOT, "scripts", "pg-throwaway.sh")
        subprocess.run([script, "stop", self.dir], capture_output=True)
        shutil.rmtree(self.dir, ignore_errors=True)
        r = subprocess.run([script, "start", self.dir], capture_output=True, text=True)
        if r.returncode != 0:
            raise SystemExit("ERROR: cannot start a throwaway PostgreSQL (Debian: apt-get install postgresql-15)\n"
                             + r.stderr)
        self.url = r.stdout.strip()
        self._script = script
        bins = sorted(os.listdir("/usr/lib/postgresql")) if os.path.isdir("/usr/lib/postgresql") else []
        default_bin = "/usr/lib/postgresql/%s/bin" % bins[-1] if bins else ""
        self._psql = os.path.join(os.environ.get("FLEETHUB_PG_BIN", default_bin), "psql")

    def sql(self, query):
        """One query as the superuser -> its rows as lists of strings."""
        r = subprocess.run([self._psql, "-h", self.dir, "-U", "postgres", "-d", "fleethub", "-At", "-F", "\t",
                            "-c", query], capture_output=True, text=True, check=True)
        return [line.split("\t") for line in r.stdout.splitlines() if line]

    def set(self, name, value):
        """A server setting that a reload applies (ALTER SYSTEM + pg_reload_conf)."""
        self.sql("ALTER SYSTEM SET %s = '%s'" % (name, value))
        self.sql("SELECT pg_reload_conf()")
        wait_for("PostgreSQL %s = %s" % (name, value), lambda: self.sql("SHOW %s" % name)[0][0] == value, 10)

    def xact_commit(self):
        """Transactions committed in the fleethub database so far (pg_stat_database)."""
        return int(self.sql("SELECT xact_commit FROM pg_stat_database WHERE datname = 'fleethub'")[0][0])

    def stop(self):
        subprocess.run([self._script, "stop", self.dir], capture_output=True)


class Nats:
    URL = "nats://127.0.0.1:4222"

    def __init__(self, work):
        need("nats-server", "nats-server")
        self.log_path = os.path.join(work, "nats.log")
        self.proc = subprocess.Popen(["nats-server", "-a", "127.0.0.1", "-p", "4222"],
                                     stdout=open(self.log_path, "w"), stderr=subprocess.STDOUT)
        wait_for("nats-server", lambda: port_open("127.0.0.1", 4222), 20, self.proc, lambda: tail_of(self.log_path))

    def stop(self):
        stop_process(self.proc)


def stop_process(proc, grace=20):
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def serve_flags(fleethub):
    """The long options `fleethub serve --help` lists (to pass --nats-url only where it exists)."""
    out = subprocess.run([fleethub, "serve", "--help"], capture_output=True, text=True, env=CLEAN_ENV).stdout
    return {w.rstrip(",") for w in out.split() if w.startswith("--")}


class Node:
    def __init__(self, fleethub, work, name, addr, store_url=None, node_id=None, nats_url=None, extra=()):
        self.fleethub, self.name, self.addr = fleethub, name, addr
        self.data = os.path.join(work, name)
        shutil.rmtree(self.data, ignore_errors=True)
        self.log_path = os.path.join(work, name + ".log")
        args = [fleethub, "serve", "--data-dir", self.data, "--dps-hostname", DPS_HOST, "--hub-hostname", HUB_HOST,
                "--bind", addr]
        if store_url:
            args += ["--store-url", store_url]
        if node_id:
            args += ["--node-id", node_id]
        if nats_url:
            args += ["--nats-url", nats_url]
        args += list(extra)
        self.proc = subprocess.Popen(args, stdout=open(self.log_path, "w"), stderr=subprocess.STDOUT, env=CLEAN_ENV)
        self.info = None

        def ready():
            r = subprocess.run([fleethub, "info", "--data-dir", self.data, "--output", "json"], capture_output=True,
                               env=CLEAN_ENV)
            if r.returncode == 0 and all(port_open(addr, p) for p in PORTS.values()):
                self.info = json.loads(r.stdout)
                return True
            return False

        wait_for("node %s" % name, ready, 90, self.proc, self.tail)

    @property
    def pid(self):
        return self.proc.pid

    def alive(self):
        return self.proc.poll() is None

    def tail(self, n=40):
        return tail_of(self.log_path, n)

    def cpu_seconds(self):
        """User + system CPU time of the node process so far."""
        with open("/proc/%d/stat" % self.pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def kill9(self):
        self.proc.kill()
        self.proc.wait()

    def stop(self):
        stop_process(self.proc)


HAPROXY_CFG = """# fleethub scale-out test: TCP pass-through (TLS ends at the nodes), TCP health checks
global
    maxconn 4000
    stats socket {sock} mode 600 level admin

defaults
    mode tcp
    timeout connect 2s
    timeout client 1h
    timeout server 1h
    default-server check inter 1s fall 2 rise 2 on-marked-down shutdown-sessions
{sections}"""

HAPROXY_SECTION = """
frontend {name}
    bind 127.0.0.1:{port}
    default_backend {name}_nodes

backend {name}_nodes
    balance roundrobin
{servers}"""


class HaProxy:
    def __init__(self, work, nodes):
        need("haproxy", "haproxy")
        self.sock = os.path.join(work, "haproxy.sock")
        self.cfg = os.path.join(work, "haproxy.cfg")
        self.log_path = os.path.join(work, "haproxy.log")
        sections = ""
        for name, port in PORTS.items():
            servers = "".join("    server %s %s:%d\n" % (n.name, n.addr, port) for n in nodes)
            sections += HAPROXY_SECTION.format(name=name, port=port, servers=servers)
        with open(self.cfg, "w") as f:
            f.write(HAPROXY_CFG.format(sock=self.sock, sections=sections))
        self.proc = subprocess.Popen(["haproxy", "-db", "-f", self.cfg], stdout=open(self.log_path, "w"),
                                     stderr=subprocess.STDOUT)
        wait_for("haproxy", lambda: all(port_open("127.0.0.1", p) for p in PORTS.values()) and self.all_up(nodes),
                 30, self.proc, lambda: tail_of(self.log_path))

    def command(self, line):
        """One command on the runtime API (the stats socket) -> its answer."""
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(5)
        s.connect(self.sock)
        s.sendall(line.encode() + b"\n")
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        s.close()
        return data.decode()

    def stats(self):
        """`show stat` -> a list of dicts (pxname, svname, status, scur, stot, ...)."""
        lines = self.command("show stat").splitlines()
        header = lines[0].lstrip("# ").split(",")
        return [dict(zip(header, line.split(","))) for line in lines[1:] if line]

    def server_states(self, node):
        return {r["pxname"]: r["status"] for r in self.stats() if r["svname"] == node.name}

    def all_up(self, nodes):
        try:
            return all(set(self.server_states(n).values()) == {"UP"} for n in nodes)
        except OSError:
            return False

    def connections(self, node, backend="mqtt_nodes"):
        """Current sessions of one node in one backend."""
        for r in self.stats():
            if r["svname"] == node.name and r["pxname"] == backend:
                return int(r["scur"] or 0)
        return 0

    def pin(self, keep, nodes):
        """New connections only to `keep`: the other nodes drained (their connections stay)."""
        for n in nodes:
            for backend in PORTS:
                self.command("set server %s_nodes/%s state %s" % (backend, n.name, "ready" if n is keep else "drain"))

    def unpin(self, nodes):
        for n in nodes:
            for backend in PORTS:
                self.command("set server %s_nodes/%s state ready" % (backend, n.name))

    def stop(self):
        stop_process(self.proc)


class Cluster:
    """PostgreSQL + nats-server + N nodes (127.0.0.11, .12, ...) + HAProxy on 127.0.0.1."""

    def __init__(self, fleethub, work, count=3):
        self.work = work
        self.pg = self.nats = self.haproxy = None
        self.nodes = []
        try:
            self.pg = Postgres(work)
            log("PostgreSQL: %s" % self.pg.url)
            self.nats = Nats(work)
            nats_url = Nats.URL if "--nats-url" in serve_flags(fleethub) else None
            log("nats-server: %s (%s)" % (Nats.URL, "passed to the nodes" if nats_url
                                          else "this fleethub has no --nats-url: no cross-node delivery"))
            self.cross_node = nats_url is not None
            # The first node initialises the shared identity; the others read it.
            for i in range(count):
                node = Node(fleethub, work, "node%d" % (i + 1), "127.0.0.%d" % (11 + i), self.pg.url,
                            "node-%d" % (i + 1), nats_url)
                log("%s: pid %d on %s" % (node.name, node.pid, node.addr))
                self.nodes.append(node)
            scopes = {n.info["idScope"] for n in self.nodes}
            if len(scopes) != 1:
                raise RuntimeError("the nodes disagree on the ID scope: %s" % scopes)
            self.haproxy = HaProxy(work, self.nodes)
            log("HAProxy: 127.0.0.1:8883/443/5671 -> %s" % ", ".join(n.addr for n in self.nodes))
        except BaseException:
            self.stop()
            raise

    @property
    def info(self):
        return self.nodes[0].info

    def stop(self):
        for part in [self.haproxy, *self.nodes, self.nats, self.pg]:
            if part is not None:
                try:
                    part.stop()
                except Exception as e:  # noqa: BLE001 (stop everything, report each)
                    log("stopping %s: %s" % (type(part).__name__, e))
