"""Harness for the real-runtime tests: a private podman (tulle.demo.podman.Sandbox)
inside sandbox netns named like conftest's, plus independent views of the
sandbox taken with the ip/tc/nft command-line tools (not with tulle's own code)."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from typing import Iterator

from tests import cnirun
from tests.conftest import RUN_ID, _counter
from tulle.cni import plugins
from tulle.demo import checks
from tulle.demo.podman import SUBNET, Container, Sandbox
from tulle.kernel import netns

REFERENCE = "reference"
TULLE = "tulle"
NEEDED_TYPES = ("bridge", "host-local", "portmap", "firewall", "tuning")
NEEDED_TOOLS = ("podman", "runc", "conmon", "nsenter", "nft", "tc")
HTTPD = ("httpd", "-f", "-p", "80", "-h", "/www")
# Where podman (or a plugin with a default data dir) would write outside the workdir.
HOST_WATCH = ("/run/runc", "/run/containers", "/run/libpod", "/var/lib/cni", "/var/lib/containers",
              "/etc/cni", "/dev/shm", "/var/tmp")


def missing_prerequisites(flavour: str) -> list[str]:
    """Why this flavour cannot run here (empty: it can)."""
    missing = [t for t in NEEDED_TOOLS if shutil.which(t) is None]
    if not os.path.isfile("/bin/busybox"):
        missing.append("/bin/busybox (busybox-static)")
    if flavour == REFERENCE:
        missing += [f"{cnirun.REFERENCE_DIR}/{t}" for t in NEEDED_TYPES
                    if not os.path.exists(os.path.join(cnirun.REFERENCE_DIR, t))]
    else:
        missing += [f"tulle plugin {t}" for t in NEEDED_TYPES
                    if importlib.util.find_spec(plugins.PLUGINS[t]) is None]
    return missing


def _netns_name(tag: str) -> str:
    return f"tulle-t{RUN_ID}-{next(_counter)}-{tag}"[:40]


@dataclass
class World:
    """A running scenario: the sandbox "host", a client netns beside it, podman."""

    flavour: str
    host: str
    client: str
    sb: Sandbox
    a: Container | None = None
    b: Container | None = None


def host_paths() -> set[str]:
    """Files and dirs under HOST_WATCH (3 levels), to prove the sandbox wrote nothing there."""
    found = set()
    for top in HOST_WATCH:
        for dirpath, dirs, files in os.walk(top):
            depth = dirpath[len(top):].count("/")
            found.add(dirpath)
            found.update(os.path.join(dirpath, f) for f in files)
            if depth >= 2:
                dirs.clear()
    return found


def cgroups_of(sandbox_path: str) -> list[str]:
    name = os.path.basename(sandbox_path)
    return [os.path.join(root, name) for root in ["/sys/fs/cgroup", *(
        os.path.join("/sys/fs/cgroup", d) for d in os.listdir("/sys/fs/cgroup"))]
        if os.path.isdir(os.path.join(root, name))]


@contextlib.contextmanager
def world(flavour: str, subnet: str = SUBNET) -> Iterator[World]:
    """Sandbox + client netns, a private podman with the flavour's plugins; all removed
    after, and then nothing new may be found on the host (AssertionError otherwise)."""
    before = host_paths()
    with _world(flavour, subnet) as w:
        yield w
    new = sorted(host_paths() - before) + cgroups_of(w.host)
    assert not new, "the podman sandbox left files on the host: " + ", ".join(new)


@contextlib.contextmanager
def _world(flavour: str, subnet: str) -> Iterator[World]:
    with contextlib.ExitStack() as stack:
        root = tempfile.mkdtemp(prefix="tulle-podman-test-")
        stack.callback(shutil.rmtree, root, True)
        names = [_netns_name("pm-host"), _netns_name("pm-client")]
        paths = []
        for name in names:
            paths.append(netns.create(name))
            stack.callback(netns.remove, name)
        if flavour == TULLE:
            from tulle.cni.install import install

            plugin_dir = os.path.join(root, "cni-bin")
            install(plugin_dir)
        else:
            plugin_dir = cnirun.REFERENCE_DIR
        sb = Sandbox(paths[0], os.path.join(root, "podman"), plugin_dir, subnet=subnet)
        stack.callback(sb.close)
        sb.setup()
        checks.wire_client(paths[0], paths[1])
        yield World(flavour, paths[0], paths[1], sb)


# --- independent views of the sandbox (command-line tools) -----------------

def links(ns: str) -> list[dict]:
    return cnirun.ip_json(ns, "-d", "link", "show")


def qdisc_kinds(ns: str) -> list[str]:
    """Non-default qdiscs (tbf, ingress, clsact...) on any device of the netns."""
    out = json.loads(cnirun.in_ns(ns, "tc", "-j", "qdisc", "show") or "[]")
    return [f"{q['kind']} on {q.get('dev')}" for q in out
            if q["kind"] not in ("noqueue", "pfifo_fast", "fq_codel", "mq", "pfifo", "fq")]


def ruleset(ns: str) -> list[dict]:
    return json.loads(cnirun.in_ns(ns, "nft", "-j", "list", "ruleset"))["nftables"]


def nft_mentions(ns: str, needles: list[str]) -> list[str]:
    """Rules and chains whose text mentions any needle (container IDs, pod IPs, chain digests)."""
    hits = []
    for obj in ruleset(ns):
        kind, body = next(iter(obj.items()))
        if kind in ("rule", "chain", "set", "map", "element"):
            text = json.dumps(body)
            if any(n in text for n in needles):
                hits.append(f"{kind} {body.get('family')} {body.get('table')} "
                            f"{body.get('chain', body.get('name'))}")
    return hits


def tables(ns: str) -> list[str]:
    return [f"{o['table']['family']} {o['table']['name']}" for o in ruleset(ns) if "table" in o]
