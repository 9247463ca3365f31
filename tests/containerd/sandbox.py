"""A private containerd (Debian's 1.6, CRI plugin, runc shim), confined like the podman
sandbox: a sandbox netns of its own, all of its state in a workdir — and, because some of
its paths are compiled in, a private mount namespace.

containerd runs as

    nsenter --net=/run/netns/tulle-…  unshare --mount --propagation private --
        sh -c 'mount -t tmpfs … /run; mount -t tmpfs … /var/lib; exec containerd --config W/config.toml'

- the netns: every CNI plugin containerd runs inherits it, so bridges, veths, nft rules
  and qdiscs land in the sandbox (as with podman);
- /run: the shims' sockets live under a compile-time /run/containerd/s/…, runc's state
  under /run/containerd/runc, the pods' netns files under /run/netns — all in a tmpfs
  that only this mount namespace sees, gone with its last process;
- /var/lib: libcni's result cache (/var/lib/cni/results) and anything a default would
  put there stay private too; root, state, temp dir, sockets and conflists are in W.

The CRI config asks for cgroupfs (no systemd), `restrict_oom_score_adj` (this VM refuses
lowering a process's OOM score, and the CRI gives the pause container -998), no AppArmor
(no profile is loaded into the kernel), and a sandbox image imported with `ctr images
import` (nothing can be pulled). Plugins that would touch the machine are disabled
(aufs/btrfs/zfs/devmapper snapshotters probe kernel modules and devices; `opt` creates
/opt/containerd). Pods' cgroups sit under a parent named after the sandbox netns and are
removed afterwards, as podman's are.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
import types
from dataclasses import dataclass
from typing import Callable

from tests.containerd import cri
from tulle import procs
from tulle.demo import cgroups, image

IMAGE = "localhost/tulle-busybox:demo"
SANDBOX_CMD = ["sleep", "1000000"]          # the image's default command: the pause process
NAMESPACE = "k8s.io"                        # the containerd namespace the CRI plugin uses
# tool -> the Debian package that has it (scripts/bootstrap.sh installs them)
TOOLS = {"containerd": "containerd", "ctr": "containerd", "containerd-shim-runc-v2": "containerd",
         "runc": "runc", "nsenter": "util-linux", "unshare": "util-linux", "mount": "mount"}
DISABLED_PLUGINS = ("io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
                    "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper",
                    "io.containerd.internal.v1.opt", "io.containerd.internal.v1.tracing",
                    "io.containerd.tracing.processor.v1.otlp")
PRIVATE_MOUNTS = ("/run", "/var/lib")
START_TIMEOUT = 30.0


class ContainerdError(RuntimeError):
    """containerd did not start, or a step of its set-up failed (with its log)."""


def _toml(value: object) -> str:
    """A TOML scalar or list of strings (JSON's syntax is TOML's for these)."""
    return json.dumps(value)


@dataclass
class Containerd:
    """One private containerd whose pods attach to `conflist` inside netns `netns_path`."""

    netns_path: str
    workdir: str
    plugin_dir: str
    conflist: dict
    pid: int = 0
    client: cri.Client | None = None

    # --- paths -------------------------------------------------------------
    def _p(self, *parts: str) -> str:
        return os.path.join(self.workdir, *parts)

    @property
    def socket(self) -> str:
        return self._p("containerd.sock")

    @property
    def config_path(self) -> str:
        """containerd's --config: also the marker by which its processes are known."""
        return self._p("config.toml")

    @property
    def cgroup_parent(self) -> str:
        return "/" + os.path.basename(self.netns_path)

    @property
    def log_path(self) -> str:
        return self._p("containerd.log")

    # --- set up ------------------------------------------------------------
    def config(self) -> str:
        """config.toml (version 2): every path in the workdir, the CRI plugin on the sandbox's
        conflist and plugin dir."""
        cri_plugin = '[plugins."io.containerd.grpc.v1.cri"]'
        return "\n".join([
            "version = 2",
            f"root = {_toml(self._p('root'))}",
            f"state = {_toml(self._p('state'))}",
            f"temp = {_toml(self._p('tmp'))}",
            f"disabled_plugins = {_toml(list(DISABLED_PLUGINS))}",
            "[grpc]",
            f"  address = {_toml(self.socket)}",
            cri_plugin,
            f"  sandbox_image = {_toml(IMAGE)}",
            "  restrict_oom_score_adj = true",
            "  disable_apparmor = true",
            "  enable_selinux = false",
            '  stream_server_address = "127.0.0.1"',
            f"{cri_plugin[:-1]}.cni]",
            f"  bin_dir = {_toml(self.plugin_dir)}",
            f"  conf_dir = {_toml(self._p('net.d'))}",
            "  max_conf_num = 1",
            f"{cri_plugin[:-1]}.containerd]",
            '  snapshotter = "overlayfs"',
            '  default_runtime_name = "runc"',
            f"{cri_plugin[:-1]}.containerd.runtimes.runc]",
            '  runtime_type = "io.containerd.runc.v2"',
            f"{cri_plugin[:-1]}.containerd.runtimes.runc.options]",
            "  SystemdCgroup = false",
            "",
        ])

    def start(self, api: types.ModuleType) -> None:
        """Write the config and the conflist, start containerd, import the image; waits
        until the CRI (stubs `api`) answers and knows the image."""
        for d in ("root", "state", "tmp", "net.d"):
            os.makedirs(self._p(d), exist_ok=True)
        with open(self.config_path, "w") as f:
            f.write(self.config())
        with open(self._p("net.d", f"10-{self.conflist['name']}.conflist"), "w") as f:
            json.dump(self.conflist, f, indent=2)
        mounts = "; ".join(f"mount -t tmpfs -o mode=0755 tulle-containerd {p}" for p in PRIVATE_MOUNTS)
        cmd = ["unshare", "--mount", "--propagation", "private", "--",
               "sh", "-c", f'set -e; {mounts}; exec "$@"', "sh", "containerd", "--config", self.config_path]
        self.pid = procs.spawn(cmd, self.log_path, netns_path=self.netns_path,
                               env={"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"})
        self.client = cri.Client(api, self.socket)
        self._wait(lambda: self.client.version(timeout=2.0), "the CRI to answer")
        archive = image.write_oci_archive(self._p("image.tar"), IMAGE, SANDBOX_CMD)
        self.ctr("images", "import", archive)
        self._wait(lambda: self.client.image_present(IMAGE), f"the CRI to know {IMAGE}")

    def _wait(self, what: Callable[[], object], why: str) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if not procs.alive(self.pid):
                raise ContainerdError(f"containerd exited while waiting for {why}:\n{self.log_tail()}")
            try:
                if what():
                    return
            except Exception:  # noqa: BLE001 - not up yet: grpc raises until the socket answers
                pass
            if time.monotonic() > deadline:
                raise ContainerdError(f"timed out waiting for {why}:\n{self.log_tail()}")
            time.sleep(0.1)

    def ctr(self, *args: str) -> str:
        """`ctr` on this containerd's socket and the CRI's namespace (from outside its
        namespaces: the socket is a path in the workdir)."""
        proc = subprocess.run(["ctr", "--address", self.socket, "--namespace", NAMESPACE, *args],
                              capture_output=True, text=True, timeout=60, check=False)
        if proc.returncode != 0:
            raise ContainerdError(f"ctr {' '.join(args)} failed: {proc.stderr.strip()}")
        return proc.stdout

    def log_tail(self, lines: int = 40) -> str:
        try:
            with open(self.log_path, errors="replace") as f:
                return "".join(f.readlines()[-lines:])
        except OSError:
            return "(no log)"

    # --- tear down ---------------------------------------------------------
    def remove_pods(self) -> None:
        """Stop and remove every pod sandbox, as kubelet does when the pods are deleted."""
        assert self.client is not None
        for sid in self.client.pod_ids():
            self.client.stop_pod(sid)
            self.client.remove_pod(sid)

    def processes(self) -> list[int]:
        """pids of everything this containerd started or runs: itself, its shims (they name
        its socket), and the containers (in its cgroup parent)."""
        mine = set(procs.find(lambda args: self.config_path in args or self.socket in args))
        return sorted(mine | set(cgroups.pids(self.cgroup_parent)))

    def close(self) -> None:
        """Remove the pods (when containerd still answers), stop containerd, then end by pid
        whatever of ours is left; remove the cgroups and the workdir. Keeps going on errors."""
        try:
            if self.client is not None and procs.alive(self.pid):
                self.remove_pods()
        except Exception:  # noqa: BLE001 - teardown goes on: what follows needs no CRI
            pass
        if self.client is not None:
            self.client.close()
        if self.pid:
            procs.stop(self.pid, self.config_path)
        for pid in self.processes():   # ours by argv or cgroup: shims, pause and app processes
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 10.0
        while self.processes() and time.monotonic() < deadline:
            time.sleep(0.05)
        cgroups.remove(self.cgroup_parent)
        shutil.rmtree(self.workdir, ignore_errors=True)
