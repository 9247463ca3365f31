"""A private podman, confined to one sandbox network namespace.

Podman (with runc and its CNI backend) runs as `nsenter --net=SANDBOX podman`,
so every host-side change the CNI plugins make (bridge, veths, nft rules)
lands in the sandbox, never in the machine's root namespace. `nsenter` keeps
the root mount namespace, which podman needs for cgroups and /run/netns.

All of podman's own state is private: storage, run root, tmp dir, locks and
events live under `workdir`; the configuration comes from files there named by
CONTAINERS_CONF / CONTAINERS_STORAGE_CONF / CONTAINERS_REGISTRIES_CONF (empty:
nothing can be pulled). A few paths podman 4.3 hard-codes cannot be moved —
runc's state dir, libcni's result cache, containers/image's blob-info cache —
so `close()` removes the ones this sandbox created, plus the container cgroups
(under a cgroup parent named after the sandbox) and any netns podman left.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import time
from dataclasses import dataclass, field

from tulle.demo import cgroups, image
from tulle.errors import TulleError
from tulle.kernel import netns

IMAGE = "localhost/tulle-busybox:demo"
NETWORK = "tulle-demo"
SUBNET = "10.88.7.0/24"
PODMAN_NETNS_PREFIX = "netns-"  # podman 4 names the container namespaces /run/netns/netns-<uuid>

# Paths podman writes no matter the configuration; removed by close() when we created them.
HOST_PATHS = (
    "/var/lib/containers/cache/blob-info-cache-v1.boltdb",
    "/var/lib/containers/cache",
    "/var/lib/containers",
    "/var/lib/cni/results",
    "/var/lib/cni",
    "/run/runc",
)
CNI_RESULTS = "/var/lib/cni/results"


class PodmanError(TulleError):
    """A podman command failed (the message carries its stderr)."""


@dataclass
class Container:
    """A container; `ip` is its address on the sandbox network (a pod member's or a
    container:<id> joiner's is the one of the netns it shares), "" for none and host."""

    name: str
    ip: str
    id: str


def tulle_conflist(network: str, subnet: str, state_dir: str, bridge: str = "tulle0") -> dict:
    """The demo network: bridge + host-local, then portmap, firewall and tuning;
    the plugins that keep files (host-local, tuning) keep them under `state_dir`."""
    return {
        "cniVersion": "1.0.0",
        "name": network,
        "plugins": [
            {
                "type": "bridge",
                "bridge": bridge,
                "isGateway": True,
                "ipMasq": True,
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "dataDir": os.path.join(state_dir, "ipam"),
                    "ranges": [[{"subnet": subnet}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": True}},
            {"type": "firewall"},
            {"type": "tuning", "dataDir": os.path.join(state_dir, "tuning")},
        ],
    }


def _ulimit(name: str, which: int, cap: int = 4096) -> str:
    """A limit runc may set without CAP_SYS_RESOURCE (which a sandbox may lack).

    Podman asks for huge ones by default (and lowers its own nproc to 32768), so
    ask for a modest value under every hard limit in the chain instead.
    """
    _soft, hard = resource.getrlimit(which)
    value = cap if hard == resource.RLIM_INFINITY else min(hard, cap)
    return f"{name}={value}:{value}"


def _toml_list(items: list[str]) -> str:
    return "[" + ", ".join(json.dumps(i) for i in items) + "]"


@dataclass
class Sandbox:
    """One private podman whose containers attach to `network` in netns `netns_path`."""

    netns_path: str
    workdir: str
    plugin_dir: str
    network: str = NETWORK
    subnet: str = SUBNET
    timeout: float = 30.0
    containers: list[str] = field(default_factory=list)
    pods: list[str] = field(default_factory=list)
    _existing: set[str] = field(default_factory=set)
    _netns_before: set[str] = field(default_factory=set)

    # --- paths -------------------------------------------------------------
    @property
    def state_dir(self) -> str:
        """Where the plugins keep files (host-local leases, tuning's saved settings)."""
        return os.path.join(self.workdir, "cni-state")

    @property
    def lease_dir(self) -> str:
        """host-local's directory for this network (one file per leased IP)."""
        return os.path.join(self.state_dir, "ipam", self.network)

    @property
    def cgroup_parent(self) -> str:
        return "/" + os.path.basename(self.netns_path)

    def _p(self, *parts: str) -> str:
        return os.path.join(self.workdir, *parts)

    # --- set up ------------------------------------------------------------
    def setup(self, conflist: dict | None = None) -> None:
        """Write the private configuration and import the busybox image."""
        self._existing = {p for p in HOST_PATHS if os.path.lexists(p)}
        self._netns_before = set(netns.list_names(PODMAN_NETNS_PREFIX))
        for d in ("storage", "run", "tmp", "net", "cni-state"):
            os.makedirs(self._p(d), exist_ok=True)
        conflist = conflist or tulle_conflist(self.network, self.subnet, self.state_dir)
        with open(self._p("net", f"{self.network}.conflist"), "w") as f:
            json.dump(conflist, f, indent=2)
        with open(self._p("storage.conf"), "w") as f:
            f.write(f'[storage]\ndriver = "vfs"\ngraphroot = {json.dumps(self._p("storage"))}\n'
                    f'runroot = {json.dumps(self._p("run"))}\n')
        open(self._p("registries.conf"), "w").close()
        ulimits = [_ulimit("nofile", resource.RLIMIT_NOFILE), _ulimit("nproc", resource.RLIMIT_NPROC)]
        with open(self._p("containers.conf"), "w") as f:
            f.write(
                "[containers]\n"
                f"default_ulimits = {_toml_list(ulimits)}\n"
                'cgroups = "no-conmon"\n'
                "[network]\n"
                'network_backend = "cni"\n'
                f"cni_plugin_dirs = {_toml_list([self.plugin_dir])}\n"
                f"network_config_dir = {json.dumps(self._p('net'))}\n"
                f"default_network = {json.dumps(self.network)}\n"
                "[engine]\n"
                'cgroup_manager = "cgroupfs"\n'
                'events_logger = "file"\n'
                f"events_logfile_path = {json.dumps(self._p('tmp', 'events.log'))}\n"
                f"tmp_dir = {json.dumps(self._p('tmp'))}\n"
                f"image_copy_tmp_dir = {json.dumps(self._p('tmp'))}\n"
                'lock_type = "file"\n'
                'runtime = "runc"\n'
            )
        tar = image.write_rootfs(self._p("rootfs.tar"))
        self.podman("import", tar, IMAGE)

    # --- podman ------------------------------------------------------------
    def env(self) -> dict[str, str]:
        return {
            "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "HOME": self.workdir,
            "TMPDIR": self._p("tmp"),
            "CONTAINERS_CONF": self._p("containers.conf"),
            "CONTAINERS_STORAGE_CONF": self._p("storage.conf"),
            "CONTAINERS_REGISTRIES_CONF": self._p("registries.conf"),
        }

    def podman(self, *args: str, input: bytes | None = None, check: bool = True,
               timeout: float | None = None) -> subprocess.CompletedProcess:
        """Run podman inside the sandbox netns; bounded by `timeout`."""
        cmd = ["nsenter", f"--net={self.netns_path}", "podman", "--runtime", "runc", *args]
        try:
            proc = subprocess.run(cmd, input=input, env=self.env(), capture_output=True,
                                  timeout=timeout or self.timeout, check=False)
        except subprocess.TimeoutExpired:
            raise PodmanError(f"podman {' '.join(args)} timed out") from None
        if check and proc.returncode != 0:
            raise PodmanError(f"podman {' '.join(args)} failed ({proc.returncode}): "
                              f"{proc.stderr.decode(errors='replace').strip()}")
        return proc

    def run(self, name: str, *cmd: str, publish: tuple[str, ...] = (), network: str | None = None,
            pod: str | None = None) -> Container:
        """`podman run -d` on the sandbox network, or on `network` (any podman network
        mode: none, host, container:<id>), or in `pod` (which owns the network and the
        cgroup parent); returns the container and its IP on the sandbox network."""
        self.containers.append(name)
        args = ["run", "-d", "--name", name]
        if pod is not None:
            args += ["--pod", pod]
        else:
            args += ["--network", network or self.network, "--cgroup-parent", self.cgroup_parent]
        for p in publish:
            args += ["-p", p]
        cid = self.podman(*args, IMAGE, *cmd).stdout.decode().strip()
        info = self.inspect(name)
        ip = (info["NetworkSettings"].get("Networks") or {}).get(self.network, {}).get("IPAddress", "")
        return Container(name=name, ip=ip, id=cid or info["Id"])

    def pod_create(self, name: str, *options: str, network: str | None = None) -> str:
        """`podman pod create` on the sandbox network (or `network`); returns the pod's id.

        Unless `options` name an --infra-image, the infra container's image is the one
        podman 4 builds locally from catatonit (localhost/podman-pause): nothing is pulled.
        """
        self.pods.append(name)
        args = ["pod", "create", "--name", name, "--network", network or self.network,
                "--cgroup-parent", self.cgroup_parent, *options]
        return self.podman(*args).stdout.decode().strip()

    def inspect(self, name: str, kind: str = "container") -> dict:
        """`podman inspect` (or `podman pod inspect` with kind="pod") of one object."""
        args = ("pod", "inspect", name) if kind == "pod" else ("inspect", name)
        info = json.loads(self.podman(*args).stdout)
        return info[0] if isinstance(info, list) else info

    def exec(self, name: str, *cmd: str, input: bytes | None = None,
             timeout: float = 10.0) -> subprocess.CompletedProcess:
        """`podman exec` (with -i when input is given); never raises on the command's status."""
        args = ["exec", "-i", name, *cmd] if input is not None else ["exec", name, *cmd]
        return self.podman(*args, input=input, check=False, timeout=timeout)

    def remove(self, *names: str) -> None:
        """`podman rm -f` without a grace period (the demo's processes need none), with
        the containers that joined their netns (`--depend`: podman refuses to remove a
        netns owner before them); names that do not exist (a failed `run`) are ignored."""
        if names:
            self.podman("rm", "-f", "--depend", "--ignore", "-t", "0", *names)
            self.containers = [c for c in self.containers if c not in names]

    def remove_pods(self, *names: str) -> None:
        """`podman pod rm -f` (with its containers) without a grace period; absent ones ignored."""
        if names:
            self.podman("pod", "rm", "-f", "--ignore", "-t", "0", *names)
            self.pods = [p for p in self.pods if p not in names]

    # --- tear down ---------------------------------------------------------
    def remove_all(self) -> None:
        """Remove every pod and container this sandbox started; keeps going on errors."""
        for remove, names in ((self.remove_pods, self.pods), (self.remove, self.containers)):
            try:
                remove(*names)
            except PodmanError:
                pass  # keep cleaning: what follows a failed remove does not need podman
        self.wait_quiet()

    def wait_quiet(self, timeout: float = 10.0) -> None:
        """Wait for the conmon and `podman container cleanup` processes of this sandbox's
        stopped or removed containers to end; those of running containers stay, so this
        returns at once when one container of several was removed."""
        if not self._helpers(set()):
            return  # nothing of ours runs: no need to ask podman what does
        ps = self.podman("ps", "-q", "--no-trunc", check=False)
        running = set(ps.stdout.decode().split()) if ps.returncode == 0 else set()
        deadline = time.monotonic() + timeout
        while self._helpers(running) and time.monotonic() < deadline:
            time.sleep(0.05)

    def _helpers(self, running: set[str]) -> list[int]:
        """pids of podman/conmon processes that use this sandbox's workdir, except the
        conmons of the `running` container IDs."""
        marker = self.workdir.encode()
        pids = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    cmdline = f.read()
            except OSError:
                continue
            if marker in cmdline and (b"conmon" in cmdline or b"podman" in cmdline) \
                    and _conmon_of(cmdline) not in running:
                pids.append(int(entry))
        return pids

    def new_podman_netns(self) -> list[str]:
        """Container namespaces podman made during this sandbox's life that still exist."""
        return sorted(set(netns.list_names(PODMAN_NETNS_PREFIX)) - self._netns_before)

    def cni_results(self) -> list[str]:
        """libcni result-cache files of this network still on disk."""
        try:
            return sorted(n for n in os.listdir(CNI_RESULTS) if n.startswith(self.network + "-"))
        except FileNotFoundError:
            return []

    def close(self) -> None:
        """Remove every pod and container, then everything podman left on the host for us."""
        self.remove_all()
        for name in self.new_podman_netns():
            netns.remove(name)
        for name in self.cni_results():
            os.unlink(os.path.join(CNI_RESULTS, name))
        cgroups.remove(self.cgroup_parent)
        self._remove_host_paths()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def _remove_host_paths(self) -> None:
        for path in HOST_PATHS:
            if path in self._existing or not os.path.lexists(path):
                continue
            try:
                if os.path.isdir(path) and not os.path.islink(path):
                    os.rmdir(path)  # only when empty: never another user's state
                else:
                    os.unlink(path)
            except OSError:
                pass


def _conmon_of(cmdline: bytes) -> str | None:
    """The container ID a conmon process monitors (its `-c` argument); None for others."""
    argv = cmdline.split(b"\0")
    if not argv[0].endswith(b"conmon") or b"-c" not in argv[:-1]:
        return None
    return argv[argv.index(b"-c") + 1].decode()
