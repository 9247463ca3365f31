"""A `tulle lab pod add` SIGKILLed at any moment (as a kubelet dies: OOM, restart) leaves a pod
that the next `pod del` or `pod add` of the same name finishes or undoes — object only, object +
netns, a CNI ADD half done, some servers running — and nothing is left after it: no netns,
veth, host-local lease, saved config, nft rule, server process or Pod object (issue 10, item 1).

On the code before the fix this test fails: after a kill half-way, `pod add` of the name answers
AlreadyExists (or "netns already exists") and `pod del` deletes the object, or answers NotFound,
and leaves the netns, lease, veth and servers."""

from __future__ import annotations

import collections
import random
import signal
import subprocess
import sys
import time

import pytest

from tests.lab import pod_traces
from tests.lab.conftest import cli, lab_up, needs_agent
from tulle.lab import pods, state

pytestmark = [pytest.mark.netns, needs_agent]

KILLS = 30
SEED = 10
NODE = "n1"
MIDWAY = {"object", "netns", "cni", "servers"}   # the moments that leave a half-made pod


@pytest.fixture(scope="module")
def lab():
    with lab_up(nodes_count=2, backend="host-gw") as name:
        yield name


def add_process(lab: str, name: str) -> subprocess.Popen:
    """The CLI in a process of its own, as a user (or a kubelet) runs it."""
    return subprocess.Popen([sys.executable, "-m", "tulle.cli.main", "lab", "pod", "add", "--lab", lab,
                             "--port", "8080", NODE, name], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def kill_after(proc: subprocess.Popen, delay: float) -> None:
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)


def test_killed_pod_adds_are_finished_or_undone_by_the_next_del_or_add(lab):
    pods.add(lab, "n2", "client")
    before = {n: pod_traces.node_view(lab, n) for n in (NODE, "n2")}

    # One whole add here, to spread the kills over it (and a little past its end).
    start = time.monotonic()
    timing = add_process(lab, "timing")
    assert timing.wait(60) == 0, timing.stderr.read()
    span = max(0.6, 1.2 * (time.monotonic() - start))
    assert cli("lab", "pod", "del", "--lab", lab, "timing")[0] == 0

    rnd = random.Random(SEED)
    delays = [(i + rnd.random()) * span / KILLS for i in range(KILLS)]
    rnd.shuffle(delays)
    stages: collections.Counter[str] = collections.Counter()
    for i, delay in enumerate(delays):
        name = f"k{i}"
        kill_after(add_process(lab, name), delay)
        stage = pod_traces.stage(lab, "default", name, NODE)
        stages[stage] += 1
        if i % 2:                                        # the same name added again: it works
            code, out, err = cli("lab", "pod", "add", "--lab", lab, "--port", "8080", NODE, name)
            assert (code, stage == "running") in ((0, False), (1, True)), (stage, err)   # killed once done: it runs
            assert cli("lab", "probe", "--lab", lab, "client", f"{name}:8080") == \
                (0, f"default/{name} (container {name})\n", ""), stage
            ip = state.load(lab).pods[f"default/{name}"].ip
            assert pod_traces.leases(lab, NODE)[ip] == pods.container_id(lab, "default", name)
        code, out, err = cli("lab", "pod", "del", "--lab", lab, name)
        assert (code, out) == (0, f'pod "{name}" deleted\n') or \
            (stage == "nothing" and err.strip() == f'Error from server (NotFound): pods "{name}" not found'), \
            (stage, code, err)
        assert pod_traces.of_pod(lab, "default", name) == [], (stage, delay)

    after = {n: pod_traces.node_view(lab, n) for n in (NODE, "n2")}
    assert after == before, stages
    assert len(stages) >= 3 and MIDWAY & set(stages), f"the kills missed the add's middle: {dict(stages)}"
