"""Harness for the containerd tests: a private containerd (sandbox.Containerd) in a
sandbox netns beside a client netns, pods made over CRI as kubelet makes them, and what
the tests look at (shared with the podman tests in tests/runtimes.py)."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import types
from dataclasses import dataclass, field
from typing import Iterator

from tests import cnirun, runtimes
from tests.containerd import cri
from tests.containerd.sandbox import IMAGE, TOOLS, Containerd
from tulle.demo import checks
from tulle.demo.podman import tulle_conflist
from tulle.kernel import links, netns

NETWORK = "tulle-ctd"
SUBNET = "10.88.9.0/24"
GATEWAY = "10.88.9.1"
NEEDED_TYPES = ("loopback", "bridge", "host-local", "portmap", "bandwidth", "firewall", "tuning")
HTTP_PORT = 8080
HTTPD = ["httpd", "-f", "-p", str(HTTP_PORT), "-h", "/www"]
# Where containerd (or a plugin with a default data dir) would write outside the workdir.
HOST_WATCH = ("/run/containerd", "/var/lib/containerd", "/etc/containerd", "/opt/containerd", "/run/netns",
              "/run/runc", "/var/lib/cni", "/etc/cni")


def missing_prerequisites(flavour: str) -> list[str]:
    """Why this flavour cannot run here (empty: it can)."""
    missing = [f"{tool} (apt-get install {package})" for tool, package in TOOLS.items() if shutil.which(tool) is None]
    if not os.path.isfile("/bin/busybox"):
        missing.append("/bin/busybox (busybox-static)")
    missing += [f"Python package {p} (pip install -e '.[test]')" for p in cri.missing()]
    return missing + runtimes.missing_plugins(flavour, NEEDED_TYPES)


def conflist(state_dir: str) -> dict:
    """The podman demo's network (bridge + host-local, portmap, firewall, tuning; state
    under `state_dir`) with bandwidth, whose capability containerd fills from pod annotations."""
    out = tulle_conflist(NETWORK, SUBNET, state_dir)
    out["plugins"].insert(2, {"type": "bandwidth", "capabilities": {"bandwidth": True}})
    return out


@dataclass
class Pod:
    """A pod as kubelet makes it: a sandbox, then one container (a web server) in it."""

    sandbox: cri.Sandbox
    config: object          # its PodSandboxConfig (CreateContainer wants it again)
    container: str

    @property
    def attached(self) -> checks.Attached:
        """The CNI attachment: containerd runs the conflist with the sandbox's ID."""
        return checks.Attached(self.sandbox.id, self.sandbox.ip)


@dataclass
class World:
    """A running scenario: the sandbox "host", a client netns beside it, containerd."""

    flavour: str
    host: str
    client: str
    ctd: Containerd
    state_dir: str
    pods: dict[str, Pod] = field(default_factory=dict)

    @property
    def cri(self) -> cri.Client:
        assert self.ctd.client is not None
        return self.ctd.client

    @property
    def lease_dir(self) -> str:
        return os.path.join(self.state_dir, "ipam", NETWORK)

    def run_pod(self, name: str, host_ports: dict[int, int] | None = None,
                annotations: dict[str, str] | None = None) -> Pod:
        """RunPodSandbox (the CNI ADD happens here), then a web server in the pod."""
        config = self.cri.sandbox_config(name, self.ctd.cgroup_parent, host_ports, annotations)
        sandbox = self.cri.run_pod(config)
        pod = Pod(sandbox, config, "")
        self.pods[name] = pod
        pod.container = self.cri.start_container(sandbox, config, IMAGE, HTTPD)
        return pod

    def exec(self, pod: Pod, *cmd: str) -> subprocess.CompletedProcess:
        """ExecSync in the pod's container (kubectl exec), as a CompletedProcess."""
        out = self.cri.exec_sync(pod.container, list(cmd))
        return subprocess.CompletedProcess(list(cmd), out.exit_code, out.stdout, out.stderr)

    def private(self, path: str) -> list[str]:
        """Entries of `path` as containerd sees it (its private /run and /var/lib); none
        when `path` does not exist there."""
        proc = subprocess.run(["nsenter", f"--mount=/proc/{self.ctd.pid}/ns/mnt", "ls", "-A", path],
                              capture_output=True, text=True, check=False)
        if proc.returncode != 0 and "No such file" not in proc.stderr:
            raise AssertionError(f"cannot list {path} in containerd's mount namespace: {proc.stderr}")
        return sorted(proc.stdout.split())


@contextlib.contextmanager
def world(flavour: str, api: types.ModuleType) -> Iterator[World]:
    """Sandbox + client netns and a private containerd on the flavour's plugins (CRI
    stubs `api`); all removed after, and then nothing new may be found on the host."""
    before = runtimes.host_paths(HOST_WATCH)
    with contextlib.ExitStack() as stack:
        root = tempfile.mkdtemp(prefix="tulle-ctd-test-")
        stack.callback(shutil.rmtree, root, True)
        paths = []
        for tag in ("ctd-host", "ctd-client"):
            name = runtimes.netns_name(tag)
            paths.append(netns.create(name))
            stack.callback(netns.remove, name)
        host, client = paths
        netns.run_in(host, links.set_up, "lo")   # a host's lo is up: the CRI's stream server binds 127.0.0.1
        checks.wire_client(host, client)
        state_dir = os.path.join(root, "cni-state")
        ctd = Containerd(host, os.path.join(root, "containerd"), runtimes.plugin_dir(flavour, root),
                         conflist(state_dir))
        stack.callback(ctd.close)
        ctd.start(api)
        w = World(flavour, host, client, ctd, state_dir)
        yield w
    new = sorted(p for p in runtimes.host_paths(HOST_WATCH) - before
                 if not p.startswith("/run/netns/tulle-"))   # conftest's leak check has those
    new += runtimes.cgroups_of(w.host)
    assert not new, "the containerd sandbox left files on the host: " + ", ".join(new)


# --- what the tests look at ------------------------------------------------------------------

def addresses(ns: str, ifname: str) -> list[str]:
    """"address/len" of every IPv4 address on `ifname` in netns `ns` (ip's view)."""
    return sorted(f"{a['local']}/{a['prefixlen']}" for link in cnirun.ip_json(ns, "addr", "show", ifname)
                  for a in link.get("addr_info", []) if a.get("family") == "inet")


def host_veth(w: World, pod: Pod) -> str:
    """The host end of the pod's eth0 in the sandbox (its peer's ifindex, found by ip)."""
    peer = cnirun.ip_json(pod.sandbox.netns, "link", "show", checks.POD_IFNAME)[0]["link_index"]
    return next(link["ifname"] for link in runtimes.links(w.host) if link["ifindex"] == peer)
