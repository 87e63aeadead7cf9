"""A private Podman for the edge end-to-end test (docs/edge.md, "Podman in a container or CI"):
its Docker-compatible API (`podman system service`) on a socket in the work directory, with its own
storage (vfs), networks, cgroupfs, file events, runc and ulimits within this process's hard limits;
and a module image made without a registry: `podman import` of a root file system holding the
module Python (interpreter, standard library, the venv with the official SDK, their shared
libraries) and the module scripts, each at the path it has on the host."""

import os
import resource
import shutil
import subprocess
import tarfile
import time

SKIP_DIRS = {"__pycache__", "test", "tests", "idlelib", "tkinter", "turtledemo", "ensurepip", "lib2to3", "pip",
             "setuptools", "uamqp", "pydoc_data"}


class Podman:
    def __init__(self, work):
        self.dir = os.path.join(work, "podman")
        self.socket = os.path.join(self.dir, "podman.sock")
        self.proc = None
        os.makedirs(self.dir, exist_ok=True)
        nofile = min(resource.getrlimit(resource.RLIMIT_NOFILE)[1], 65536)
        with open(os.path.join(self.dir, "containers.conf"), "w") as f:
            f.write('[containers]\ndefault_ulimits = ["nofile=%d:%d", "nproc=4096:4096"]\nlog_driver = "k8s-file"\n'
                    '[engine]\ncgroup_manager = "cgroupfs"\nevents_logger = "file"\nruntime = "runc"\n'
                    '[network]\nnetwork_config_dir = "%s/networks"\n' % (nofile, nofile, self.dir))
        with open(os.path.join(self.dir, "storage.conf"), "w") as f:
            f.write('[storage]\ndriver = "vfs"\ngraphroot = "%s/root"\nrunroot = "%s/run"\n' % (self.dir, self.dir))
        self.env = dict(os.environ, CONTAINERS_CONF=os.path.join(self.dir, "containers.conf"),
                        CONTAINERS_STORAGE_CONF=os.path.join(self.dir, "storage.conf"))

    @property
    def uri(self):
        return "unix://%s" % self.socket

    def start(self):
        self.proc = subprocess.Popen(["podman", "system", "service", "--time=0", self.uri],
                                     stdout=open(os.path.join(self.dir, "service.log"), "a"),
                                     stderr=subprocess.STDOUT, env=self.env)
        deadline = time.monotonic() + 30
        while not os.path.exists(self.socket):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("podman system service did not start (see %s/service.log)" % self.dir)
            time.sleep(0.1)

    def cli(self, *args, check=True):
        r = subprocess.run(["podman", *args], capture_output=True, text=True, env=self.env, timeout=300)
        if check and r.returncode != 0:
            raise RuntimeError("podman %s: %s" % (" ".join(args[:3]), r.stderr[-1000:]))
        return r.stdout

    def container_id(self, name):
        r = subprocess.run(["podman", "inspect", "--format", "{{.Id}}", name], capture_output=True, text=True,
                           env=self.env, timeout=60)
        return r.stdout.strip() if r.returncode == 0 else None

    def stop(self):
        # the API first (fleetedge is stopped by then), then whatever is left, straight on the storage
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        subprocess.run(["podman", "rm", "--all", "--force", "--time", "0"], capture_output=True, env=self.env,
                       timeout=120)

    def import_python_image(self, tag, python, extra):
        """An image with `python` (a venv's interpreter) and `extra` host files at their host paths."""
        info = subprocess.run([python, "-c", "import sys, sysconfig, json; print(json.dumps({"
                               "'exe': sys.executable, 'real': __import__('os').path.realpath(sys.executable),"
                               "'prefix': sys.prefix, 'stdlib': sysconfig.get_paths()['stdlib'],"
                               "'site': sysconfig.get_paths()['purelib']}))"],
                              capture_output=True, text=True, check=True).stdout
        import json
        info = json.loads(info)
        root = os.path.join(self.dir, "rootfs")
        shutil.rmtree(root, ignore_errors=True)
        libs = set()

        def put(src, dst=None):
            dst = os.path.join(root, (dst or src).lstrip("/"))
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            shutil.copy2(src, dst)  # follows symlinks: the content at the requested path
            if src.endswith(".so") or ".so." in src or os.access(src, os.X_OK):
                libs.add(src)

        def put_tree(top):
            for d, dirs, files in os.walk(top):
                dirs[:] = [x for x in dirs if x not in SKIP_DIRS and not x.endswith(".dist-info")
                           and not (d == info["stdlib"] and x == "site-packages")]
                for f in files:
                    p = os.path.join(d, f)
                    if os.path.isfile(p):
                        put(p)

        put(info["real"])
        put(info["real"], info["exe"])  # the venv's bin/python, as a file
        put(os.path.join(info["prefix"], "pyvenv.cfg"))
        put_tree(info["stdlib"])
        put_tree(info["site"])
        for p in extra:
            put(p)
        for lib in sorted(libs):
            out = subprocess.run(["ldd", lib], capture_output=True, text=True).stdout
            for line in out.splitlines():
                path = line.split("=>")[-1].split()[0] if line.split() else ""
                if path.startswith("/") and os.path.exists(path):
                    dst = os.path.join(root, path.lstrip("/"))
                    if not os.path.exists(dst):
                        os.makedirs(os.path.dirname(dst), exist_ok=True)
                        shutil.copy2(path, dst)
        os.makedirs(os.path.join(root, "tmp"), exist_ok=True)
        tar = os.path.join(self.dir, "image.tar")
        with tarfile.open(tar, "w") as t:
            t.add(root, arcname=".")
        self.cli("import", tar, tag)
        size = os.path.getsize(tar)
        os.remove(tar)
        shutil.rmtree(root, ignore_errors=True)
        return "%s (%.0f MB root file system)" % (tag, size / 1e6)


def available():
    return shutil.which("podman") is not None and shutil.which("runc") is not None
