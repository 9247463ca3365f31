"""Harness for the podman tests: a private podman (tulle.demo.podman.Sandbox) inside
sandbox netns named like conftest's; the views of the sandbox it shares with the
containerd tests (ip/tc/nft command-line tools, not tulle's own code) are in
tests/runtimes.py."""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import tempfile
from dataclasses import dataclass
from typing import Iterator

from tests import cnirun, runtimes
from tests.runtimes import REFERENCE, TULLE, links, tables, veths  # noqa: F401 - the tests' names
from tulle.demo import checks
from tulle.demo.podman import SUBNET, Container, Sandbox
from tulle.kernel import netns

NEEDED_TYPES = ("bridge", "host-local", "portmap", "firewall", "tuning")
NEEDED_TOOLS = ("podman", "runc", "conmon", "nsenter", "nft", "tc")
HTTPD = ("httpd", "-f", "-p", "80", "-h", "/www")
REQUEST = b"GET / HTTP/1.0\r\n\r\n"
# Where podman (or a plugin with a default data dir) would write outside the workdir.
HOST_WATCH = ("/run/runc", "/run/containers", "/run/libpod", "/var/lib/cni", "/var/lib/containers",
              "/etc/cni", "/dev/shm", "/var/tmp")


def missing_prerequisites(flavour: str) -> list[str]:
    """Why this flavour cannot run here (empty: it can)."""
    missing = [t for t in NEEDED_TOOLS if shutil.which(t) is None]
    if not os.path.isfile("/bin/busybox"):
        missing.append("/bin/busybox (busybox-static)")
    return missing + runtimes.missing_plugins(flavour, NEEDED_TYPES)


@dataclass
class World:
    """A running scenario: the sandbox "host", a client netns beside it, podman."""

    flavour: str
    host: str
    client: str
    sb: Sandbox
    a: Container | None = None
    b: Container | None = None
    calls_log: str | None = None

    def cni_calls(self, command: str, plugin: str = "bridge") -> list[str]:
        """Container IDs podman ran `plugin` for with CNI_COMMAND=`command`, in order
        (bridge, the first of the chain, runs once per attachment and verb)."""
        assert self.calls_log, "world(record_calls=True) records the plugin calls"
        with open(self.calls_log) as f:
            calls = [line.split() for line in f]  # SHIM's lines: command, container ID, plugin
        return [cid for cmd, cid, plug in calls if cmd == command and plug == plugin]

    def forget_calls(self) -> None:
        """Start the record afresh (call when podman is quiet)."""
        assert self.calls_log, "world(record_calls=True) records the plugin calls"
        open(self.calls_log, "w").close()


# Stands in for a plugin executable: notes the call, then becomes the real plugin
# (exec keeps stdin, the environment and the exit code).
SHIM = """#!/bin/sh
echo "$CNI_COMMAND ${{CNI_CONTAINERID:--}} {plugin}" >> {log}
exec {real} "$@"
"""


def recording_plugin_dir(plugin_dir: str, shim_dir: str, log: str) -> str:
    """A plugin dir whose executables log each call to `log` before running the real
    one in `plugin_dir`: what podman asked the plugins for, seen from outside them."""
    os.makedirs(shim_dir)
    open(log, "w").close()
    for name in sorted(os.listdir(plugin_dir)):
        real = os.path.join(plugin_dir, name)
        if os.path.isfile(real) and os.access(real, os.X_OK):
            path = os.path.join(shim_dir, name)
            with open(path, "w") as f:
                f.write(SHIM.format(plugin=name, log=shlex.quote(log), real=shlex.quote(real)))
            os.chmod(path, 0o755)
    return shim_dir


@contextlib.contextmanager
def world(flavour: str, subnet: str = SUBNET, record_calls: bool = False) -> Iterator[World]:
    """Sandbox + client netns, a private podman with the flavour's plugins (behind
    recording shims with `record_calls`: World.cni_calls); all removed after, and then
    nothing new may be found on the host (AssertionError otherwise)."""
    before = runtimes.host_paths(HOST_WATCH)
    with _world(flavour, subnet, record_calls) as w:
        yield w
    new = sorted(runtimes.host_paths(HOST_WATCH) - before) + runtimes.cgroups_of(w.host)
    assert not new, "the podman sandbox left files on the host: " + ", ".join(new)


@contextlib.contextmanager
def scenario(w: World) -> Iterator[World]:
    """One scenario on a shared world: the plugin calls are recorded from here, and
    whatever it left running (a failed test) is removed after, so the next one starts
    from an empty podman."""
    w.forget_calls()
    try:
        yield w
    finally:
        w.sb.remove_all()


@contextlib.contextmanager
def _world(flavour: str, subnet: str, record_calls: bool) -> Iterator[World]:
    with contextlib.ExitStack() as stack:
        root = tempfile.mkdtemp(prefix="tulle-podman-test-")
        stack.callback(shutil.rmtree, root, True)
        names = [runtimes.netns_name("pm-host"), runtimes.netns_name("pm-client")]
        paths = []
        for name in names:
            paths.append(netns.create(name))
            stack.callback(netns.remove, name)
        plugin_dir = runtimes.plugin_dir(flavour, root)
        log = os.path.join(root, "cni-calls.log") if record_calls else None
        if log:
            plugin_dir = recording_plugin_dir(plugin_dir, os.path.join(root, "cni-shim"), log)
        sb = Sandbox(paths[0], os.path.join(root, "podman"), plugin_dir, subnet=subnet)
        stack.callback(sb.close)
        sb.setup()
        checks.wire_client(paths[0], paths[1])
        yield World(flavour, paths[0], paths[1], sb, calls_log=log)


# --- what podman and the plugins left -------------------------------------------

def ps(sb: Sandbox) -> list[dict]:
    """`podman ps -a` as podman reports it (infra containers included)."""
    return json.loads(sb.podman("ps", "-a", "--format", "json").stdout or "[]")


def leases(sb: Sandbox) -> list[str]:
    """The addresses host-local has handed out on the sandbox network (its files)."""
    return runtimes.leases(sb.lease_dir)


def leftovers(w: World, attached: list[checks.Attached]) -> list[str]:
    """What is left once every container is gone, seen by podman, host-local's files,
    the ip/tc/nft tools and tulle's own checks (empty: clean). `attached` names the
    attachments that were made (container ID, IP), to find rules tagged for them."""
    sb = w.sb
    left = [f"container {c['Names'][0]}" for c in ps(sb)]
    left += runtimes.sandbox_leftovers(w.host, sb.network, sb.lease_dir, attached)
    left += [f"netns {n}" for n in sb.new_podman_netns()]
    return left + [f"cni result {n}" for n in sb.cni_results()]


# --- a container's network namespace, seen from outside and from inside -----

def container_netns(sb: Sandbox, name: str) -> str:
    """A path that names the container's netns (its main process's), for nsenter/stat."""
    return f"/proc/{sb.inspect(name)['State']['Pid']}/ns/net"


def netns_id(path: str) -> int:
    """The identity of the netns a path names (the nsfs inode, as `ls -l` shows it)."""
    return os.stat(path).st_ino


def links_seen(sb: Sandbox, name: str) -> list[str]:
    """Interface names as the container's own busybox `ip -o link` lists them."""
    out = sb.exec(name, "ip", "-o", "link").stdout.decode()
    return sorted(line.split(":")[1].strip().split("@")[0] for line in out.splitlines() if line.strip())


def addresses_seen(sb: Sandbox, name: str) -> list[str]:
    """"ifname family address/len" for every address the container's `ip -o addr` lists
    (flags such as IPv6's `tentative` left out: they change while we look)."""
    out = sb.exec(name, "ip", "-o", "addr").stdout.decode()
    return sorted(" ".join(line.split()[1:4]) for line in out.splitlines() if line.strip())


def container_http_get(sb: Sandbox, name: str, host: str, port: int, timeout: float = 5.0) -> bytes:
    """GET / from inside a container (busybox nc); retried until an HTTP 200 comes back
    within `timeout`, since a server started by `podman run -d` may not listen yet."""
    def once() -> bytes | None:
        out = sb.exec(name, "nc", "-w", "2", host, str(port), input=REQUEST).stdout
        head, _, body = out.partition(b"\r\n\r\n")
        return body if head.startswith(b"HTTP/1.") and b" 200 " in head.split(b"\r\n")[0] else None

    return cnirun.wait_for(f"HTTP 200 from {host}:{port} inside {name}", once, timeout=timeout)
