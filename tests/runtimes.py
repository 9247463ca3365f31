"""What the real-runtime tests (tests/podman, tests/containerd) share: names for their
sandbox netns, the flavours of plugins they run, independent views of a sandbox taken
with the ip/tc/nft command-line tools (not with tulle's own code), and what a runtime
left behind — in the sandbox after its pods are gone, or on the host after it is."""

from __future__ import annotations

import importlib.util
import json
import os
from typing import Iterable

from tests import cnirun
from tests.conftest import RUN_ID, _counter
from tulle.cni import attachment, plugins
from tulle.demo import cgroups, checks

REFERENCE = "reference"
TULLE = "tulle"
FLAVOURS = (TULLE, REFERENCE)


def netns_name(tag: str) -> str:
    """A sandbox netns name in conftest's scheme (so the session's leak check sees it)."""
    return f"tulle-t{RUN_ID}-{next(_counter)}-{tag}"[:40]


def missing_plugins(flavour: str, types: Iterable[str]) -> list[str]:
    """The plugin types of `flavour` that are not there (empty: all are)."""
    if flavour == REFERENCE:
        return [f"{cnirun.REFERENCE_DIR}/{t}" for t in types
                if not os.path.exists(os.path.join(cnirun.REFERENCE_DIR, t))]
    return [f"tulle plugin {t}" for t in types if importlib.util.find_spec(plugins.PLUGINS[t]) is None]


def plugin_dir(flavour: str, workdir: str) -> str:
    """Where the runtime finds the flavour's executables: tulle's installed into
    `workdir` as `tulle cni install` does, or Debian's reference plugins."""
    if flavour == REFERENCE:
        return cnirun.REFERENCE_DIR
    from tulle.cni.install import install

    path = os.path.join(workdir, "cni-bin")
    install(path)
    return path


# --- the host, outside every sandbox ---------------------------------------------------------

def host_paths(watch: Iterable[str]) -> set[str]:
    """Files and dirs under the `watch` dirs (3 levels), to prove a sandbox wrote nothing there."""
    found = set()
    for top in watch:
        for dirpath, dirs, files in os.walk(top):
            depth = dirpath[len(top):].count("/")
            found.add(dirpath)
            found.update(os.path.join(dirpath, f) for f in files)
            if depth >= 2:
                dirs.clear()
    return found


def cgroups_of(sandbox_path: str) -> list[str]:
    """The cgroup dirs named after a sandbox netns (its runtime's cgroup parent) still there."""
    return cgroups.paths(os.path.basename(sandbox_path))


# --- independent views of a sandbox netns (command-line tools) ------------------------------

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


def veths(ns: str) -> list[str]:
    """The pods' host-side veths in the sandbox (the client's link left out)."""
    return sorted(link["ifname"] for link in links(ns)
                  if link.get("linkinfo", {}).get("info_kind") == "veth" and link["ifname"] != checks.CLIENT_LINK)


def leases(lease_dir: str) -> list[str]:
    """The addresses host-local has handed out from `lease_dir` (its files)."""
    try:
        names = os.listdir(lease_dir)
    except FileNotFoundError:  # no ADD yet on this network
        return []
    return sorted(n for n in names if n != "lock" and not n.startswith("last_reserved_ip"))


def sandbox_leftovers(host: str, network: str, lease_dir: str, attached: list[checks.Attached]) -> list[str]:
    """What is left in sandbox netns `host` once every pod of `network` is gone, seen by
    host-local's files, the ip/tc/nft tools and tulle's own checks (empty: clean).
    `attached` names the attachments that were made (container ID, IP)."""
    left = [f"lease {ip}" for ip in leases(lease_dir)]
    left += [f"{link['linkinfo']['info_kind']} {link['ifname']}" for link in links(host)
             if link.get("linkinfo", {}).get("info_kind") in ("veth", "ifb") and link["ifname"] != checks.CLIENT_LINK]
    left += [f"qdisc {q}" for q in qdisc_kinds(host)]
    needles = [n for a in attached for n in (a.container_id, a.ip) if n]
    needles += [attachment.digest(network, a.container_id, checks.POD_IFNAME) for a in attached]
    left += [f"nft {hit}" for hit in nft_mentions(host, needles)]
    return left + [f"(tulle's view) {x}" for x in checks.leftovers(host, network, lease_dir, attached)]
