"""Helpers shared by the bridge/ptp/macvlan netns tests: configs, and reading
what landed in a netns (links, addresses, routes, sysctls, nft rules)."""

from __future__ import annotations

import json
import re
import subprocess

from tests.cnirun import in_ns, ip_json  # noqa: F401 (in_ns re-exported for tests)

VERSIONS = ["0.3.1", "0.4.0", "1.0.0", "1.1.0"]


def static(address: str = "10.22.0.5/24", gateway: str | None = "10.22.0.1", routes=None) -> dict:
    entry = {"address": address}
    if gateway:
        entry["gateway"] = gateway
    out: dict = {"type": "static", "addresses": [entry]}
    if routes is not None:
        out["routes"] = routes
    return out


def host_local(data_dir: str, subnet: str = "10.22.0.0/24", **range_fields) -> dict:
    return {"type": "host-local", "dataDir": data_dir,
            "ranges": [[{"subnet": subnet, **range_fields}]], "routes": [{"dst": "0.0.0.0/0"}]}


def link_names(ns: str) -> set[str]:
    return {l["ifname"] for l in ip_json(ns, "link", "show")}


def link(ns: str, name: str) -> dict:
    return ip_json(ns, "-d", "link", "show", "dev", name)[0]


def addresses(ns: str, dev: str, family: str = "inet") -> list[str]:
    out = []
    for l in ip_json(ns, "addr", "show", "dev", dev):
        for a in l.get("addr_info", []):
            if a["family"] == family and a.get("scope") != "link":
                out.append(f"{a['local']}/{a['prefixlen']}")
    return sorted(out)


def routes(ns: str, *args: str) -> list[dict]:
    return ip_json(ns, "route", "show", *args)


def route_lines(ns: str, *args: str) -> list[str]:
    """`ip route` text, one line per route, without volatile bits ("linkdown"
    follows the bridge's carrier, which the kernel updates asynchronously)."""
    text = in_ns(ns, "ip", *args, "route", "show")
    return sorted(re.sub(r"\s+", " ", l.replace(" linkdown", "")).strip() for l in text.splitlines() if l.strip())


def sysctl(ns: str, key: str) -> str:
    return in_ns(ns, "cat", "/proc/sys/" + key.replace(".", "/") if "/" not in key else "/proc/sys/" + key).strip()


def nft_rules(ns: str) -> list[dict]:
    data = json.loads(in_ns(ns, "nft", "-j", "list", "ruleset") or '{"nftables": []}')
    return [o["rule"] for o in data["nftables"] if "rule" in o]


def delete_nft_rules(ns: str, comment_part: str) -> int:
    n = 0
    for r in nft_rules(ns):
        if comment_part in r.get("comment", ""):
            in_ns(ns, "nft", "delete", "rule", r["family"], r["table"], r["chain"], "handle", str(r["handle"]))
            n += 1
    return n


def ping(ns: str, ip: str) -> bool:
    proc = subprocess.run(["nsenter", f"--net={ns}", "ping", "-c1", "-W1", ip],
                          capture_output=True, text=True, check=False, timeout=10)
    return proc.returncode == 0


def veths(ns: str) -> list[str]:
    return sorted(n for n in link_names(ns) if n.startswith("veth"))


_MAC = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")


def normalise(result: dict) -> dict:
    """A result with its random parts (MACs, host veth names, sandbox paths) masked."""
    out = json.loads(json.dumps(result))
    for intf in out.get("interfaces", []):
        if _MAC.match(intf.get("mac", "")):
            intf["mac"] = "MAC"
        if re.match(r"^veth[0-9a-f]{8}$", intf["name"]):
            intf["name"] = "vethX"
        if "sandbox" in intf:
            intf["sandbox"] = "NETNS"
    return out
