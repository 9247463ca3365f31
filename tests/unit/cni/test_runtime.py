"""The runtime client (libcni's role) against a recording fake plugin."""

from __future__ import annotations

import json
import os
import stat

import pytest

from tulle.cni.errors import CNIError
from tulle.cni.runtime import Attachment, Runtime, effective_version

RECORDER = """#!/bin/sh
# Records env + stdin per call; answers ADD with its prevResult (or a fresh result).
n=$(( $(ls "{log}" | wc -l) / 2 ))
cat > "{log}/$n.json"
env | grep ^CNI_ > "{log}/$n.env"
if [ "$CNI_COMMAND" = ADD ]; then
  python3 -c 'import json,sys; c=json.load(open(sys.argv[1])); r=c.get("prevResult") or {{"cniVersion":c["cniVersion"],"ips":[]}}; r.setdefault("seen",[]).append(c["type"]); print(json.dumps(r))' "{log}/$n.json"
fi
"""


@pytest.fixture
def rt(tmp_path):
    bin_dir, log = tmp_path / "bin", tmp_path / "log"
    bin_dir.mkdir()
    log.mkdir()
    for name in ("one", "two"):
        p = bin_dir / name
        p.write_text(RECORDER.format(log=log))
        p.chmod(p.stat().st_mode | stat.S_IEXEC)
    runtime = Runtime([str(bin_dir)], cache_dir=str(tmp_path / "cache"))
    runtime.log = log  # type: ignore[attr-defined]
    return runtime


def calls(rt) -> list[tuple[dict, str]]:
    out = []
    for i in range(len(os.listdir(rt.log)) // 2):
        out.append((json.loads((rt.log / f"{i}.json").read_text()), (rt.log / f"{i}.env").read_text()))
    return out


CONFLIST = {"cniVersion": "1.0.0", "name": "net", "plugins": [
    {"type": "one"}, {"type": "two", "capabilities": {"portMappings": True}}]}
ATT = Attachment(container_id="c1", netns="/run/netns/x", ifname="eth0",
                 capability_args={"portMappings": [{"hostPort": 1, "containerPort": 2, "protocol": "tcp"}],
                                  "bandwidth": {"ingressRate": 1}})


def test_add_chains_prev_result_and_filters_capabilities(rt):
    result = rt.add(CONFLIST, ATT)
    assert result["seen"] == ["one", "two"]
    (c1, e1), (c2, _) = calls(rt)
    assert "prevResult" not in c1 and "runtimeConfig" not in c1
    assert c2["prevResult"]["seen"] == ["one"]
    assert c2["runtimeConfig"] == {"portMappings": ATT.capability_args["portMappings"]}
    assert c1["name"] == "net" and c1["cniVersion"] == "1.0.0"
    assert "CNI_NETNS=/run/netns/x" in e1 and "CNI_IFNAME=eth0" in e1


def test_del_runs_in_reverse_with_cached_result(rt):
    rt.add(CONFLIST, ATT)
    rt.delete(CONFLIST, ATT)
    dels = [c for c, e in calls(rt) if "CNI_COMMAND=DEL" in e]
    assert [c["type"] for c in dels] == ["two", "one"]
    assert all(c["prevResult"]["seen"] == ["one", "two"] for c in dels)


def test_gc_passes_valid_attachments_and_honours_disable(rt):
    rt.gc(CONFLIST, [("c1", "eth0")])
    gcs = calls(rt)
    assert len(gcs) == 2
    assert gcs[0][0]["cni.dev/valid-attachments"] == [{"containerID": "c1", "ifname": "eth0"}]
    rt.gc({**CONFLIST, "disableGC": True}, [])
    rt.check({**CONFLIST, "disableCheck": True}, ATT)
    assert len(calls(rt)) == 2


@pytest.mark.parametrize("conflist,want", [
    ({"cniVersion": "0.4.0"}, "0.4.0"),
    ({"cniVersion": "0.4.0", "cniVersions": ["0.3.1", "1.1.0", "9.0.0"]}, "1.1.0"),
    ({"cniVersions": ["1.0.0", "0.4.0"]}, "1.0.0"),
])
def test_effective_version(conflist, want):
    assert effective_version({"name": "n", "plugins": [], **conflist}) == want


@pytest.mark.parametrize("bad", [{}, {"name": "n", "cniVersion": "1.0.0"},
                                 {"name": "n", "cniVersion": "1.0.0", "plugins": [{}]}])
def test_invalid_conflists(rt, bad):
    with pytest.raises(CNIError) as exc:
        rt.add(bad, ATT)
    assert exc.value.code == 7
