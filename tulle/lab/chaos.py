"""`tulle lab chaos`: random operations on a running lab, then the invariants a pod network
owes its users, checked against the kernel and the store.

Operations, drawn by a seeded random.Random (the same seed and lab shape, the same run):
  add        a pod on a random node
  del        a pod, running or half-made
  interrupt  `tulle lab pod add` SIGKILLed 50–300 ms in (a runtime dying mid-ADD); the
             name is then in doubt until a later del or add of it, which must finish or
             undo what was left
  restart    a node's agent, SIGTERM or SIGKILL, and started again
  outage     the store stopped, an agent SIGKILLed and restarted without it, the store back
  burst      4–8 `tulle lab pod add` processes at once
Invariants (`check`):
  every pod answers a ping from every node; on each node the CNI leases are exactly its
  pods' addresses and there is one host veth per pod (a half-made pod keeps its lease and
  veth until a del, an add of its name or `lab gc` undoes it). After the run every pod is deleted
  (`drain`) and nothing of them may be left: no pod netns, lease, veth, pod-tagged nft
  rule, saved CNI config or cached result, no Pod object. Lease checks apply to the
  host-local backends (host-gw, vxlan, udp); bgp pods take block addresses.
"""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable

from tulle.cluster.errors import AlreadyExists, NotFound
from tulle.errors import TulleError
from tulle.kernel import netns
from tulle.lab import checks, cluster, faults, inventory, pods, podspec, state, topology

KINDS = {"add": 30, "del": 22, "interrupt": 12, "restart": 8, "outage": 3, "burst": 5}
MAX_PODS = 24                 # adds give way to deletes above this many pods
CLI_TIMEOUT = 120.0


@dataclass
class Report:
    ops: dict[str, int] = field(default_factory=dict)       # kind -> how many ran
    failures: list[str] = field(default_factory=list)       # an operation that failed, an invariant broken
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.failures

    def to_json(self) -> dict:
        return {"ok": self.ok, "ops": self.ops, "total": sum(self.ops.values()), "failures": self.failures,
                "seconds": round(self.seconds, 1)}


@dataclass
class Model:
    """What the run believes: pods that must be running, names an interrupted add left in doubt."""
    nodes: list[str]
    running: set[str] = field(default_factory=set)
    doubtful: set[str] = field(default_factory=set)
    made: int = 0

    def new_name(self) -> str:
        self.made += 1
        return f"chaos-{self.made}"


def choose(rng: random.Random, model: Model) -> str:
    """The next operation's kind (pure): deletes only when there is something to delete,
    adds held back once the lab has MAX_PODS pods."""
    kinds = dict(KINDS)
    if not model.running and not model.doubtful:
        kinds.pop("del")
    if len(model.running) >= MAX_PODS:
        for k in ("add", "interrupt", "burst"):
            kinds.pop(k)
    names = sorted(kinds)
    return rng.choices(names, weights=[kinds[k] for k in names])[0]


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "tulle.cli.main", *args]


class Run:
    """One chaos run on a lab: the operations, the model they keep, the report."""

    def __init__(self, lab: str, seed: int) -> None:
        self.lab = lab
        self.rng = random.Random(seed)
        self.model = Model(nodes=sorted(state.load(lab).nodes))   # the lab's own pods are not the run's
        self.report = Report()

    # -- operations ----------------------------------------------------------------

    def step(self) -> str:
        """Run one operation; returns what it did, in words."""
        kind = choose(self.rng, self.model)
        self.report.ops[kind] = self.report.ops.get(kind, 0) + 1
        try:
            return f"{kind} {getattr(self, f'_{kind}')()}"
        except TulleError as exc:
            self.report.failures.append(f"{kind}: {exc.msg}")
            return f"{kind} failed: {exc.msg}"

    def _add(self) -> str:
        name = self._reuse_doubtful() or self.model.new_name()
        node = self.rng.choice(self.model.nodes)
        try:
            pods.add(self.lab, node, name)
        except AlreadyExists:
            if not self._completed(name):
                raise
            return f"{name}: its interrupted add had finished"
        self._running(name)
        return f"{name} on {node}"

    def _running(self, name: str) -> None:
        self.model.doubtful.discard(name)
        self.model.running.add(name)

    def _completed(self, name: str) -> bool:
        """An add of a name in doubt met AlreadyExists: the interrupted add had got to the end
        before its SIGKILL (it is running, which is fine), or something else is wrong."""
        if name in self.model.doubtful and podspec.key(podspec.DEFAULT_NAMESPACE, name) in state.load(self.lab).pods:
            self._running(name)
            return True
        return False

    def _reuse_doubtful(self) -> str | None:
        """Half the adds after an interrupted one take its name: the add must undo what was left."""
        if self.model.doubtful and self.rng.random() < 0.5:
            return self.rng.choice(sorted(self.model.doubtful))
        return None

    def _del(self) -> str:
        name = self.rng.choice(sorted(self.model.running | self.model.doubtful))
        was = "running" if name in self.model.running else "in doubt"
        self.model.running.discard(name)       # gone or not, it is not the run's to expect any more
        self.model.doubtful.discard(name)
        try:
            pods.delete(self.lab, name)
        except NotFound:
            if was == "running":
                raise
            return f"{name} (in doubt: nothing was left)"
        return f"{name} ({was})"

    def _interrupt(self) -> str:
        name = self.model.new_name()
        node = self.rng.choice(self.model.nodes)
        proc = subprocess.Popen(_cli("lab", "pod", "add", "--lab", self.lab, node, name),
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        after = self.rng.uniform(0.05, 0.3)
        time.sleep(after)
        if proc.poll() is not None:               # done before it could be killed
            if proc.returncode == 0:
                self._running(name)
            return f"{name} on {node}: the add ended (exit {proc.returncode}) before {after * 1000:.0f} ms"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        self.model.doubtful.add(name)
        return f"{name} on {node}, SIGKILL after {after * 1000:.0f} ms"

    def _restart(self) -> str:
        node, kill = self.rng.choice(self.model.nodes), self.rng.random() < 0.5
        cluster.agent_restart(self.lab, node, kill=kill)
        return f"{node}'s agent ({'SIGKILL' if kill else 'SIGTERM'})"

    def _outage(self) -> str:
        node = self.rng.choice(self.model.nodes)
        faults.store(self.lab, "stop")
        try:
            cluster.agent_restart(self.lab, node, kill=True)
            time.sleep(self.rng.uniform(0.2, 1.0))
        finally:
            faults.store(self.lab, "start")
        return f"store stopped, {node}'s agent SIGKILLed and started, store back"

    def _burst(self) -> str:
        names = [self._reuse_doubtful() or self.model.new_name() for _ in range(self.rng.randint(4, 8))]
        names = list(dict.fromkeys(names))
        procs = [subprocess.Popen(_cli("lab", "pod", "add", "--lab", self.lab, self.rng.choice(self.model.nodes), n),
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for n in names]
        for name, proc in zip(names, procs):
            _, err = proc.communicate(timeout=CLI_TIMEOUT)
            if proc.returncode == 0 or ("(AlreadyExists)" in err and self._completed(name)):
                self._running(name)
                continue
            self.report.failures.append(f"burst: pod add {name}: {err.strip()}")
            self.model.doubtful.add(name)
        return " ".join(names)

    # -- invariants ---------------------------------------------------------------

    def check(self, when: str) -> None:
        """Every pod reachable from every node; leases and veths match the pods, per node."""
        st = state.load(self.lab)
        expected = {podspec.key(podspec.DEFAULT_NAMESPACE, n) for n in self.model.running}
        running = set(st.pods)
        if not expected <= running:
            self.report.failures.append(f"{when}: pods missing from the lab: {sorted(expected - running)}")
        targets = [(node, k, ps.ip) for k, ps in st.pods.items() for node in st.nodes]

        def reach(target: tuple[str, str, str]) -> str | None:
            node, k, ip = target
            path = netns.path_of(topology.node_netns(self.lab, node))
            ok = checks.until(time.monotonic() + 5, lambda: checks.ping_in(path, ip).returncode == 0)
            return None if ok else f"{when}: pod {k} ({ip}) unreachable from {node}"

        with ThreadPoolExecutor(max_workers=8) as pool:
            self.report.failures += [f for f in pool.map(reach, targets) if f]
        leases_kept = st.plan().backend != "bgp"
        # A half-made pod (an add that was killed) holds what it got until a del, an add of
        # its name or `lab gc` undoes it: its lease and veth are no leak yet.
        doubtful = {pods.container_id(self.lab, podspec.DEFAULT_NAMESPACE, n) for n in self.model.doubtful}
        for node in st.nodes:
            mine = {ps.ip: ps.container_id for ps in st.pods.values() if ps.node == node and ps.netns}
            held = inventory.leases(self.lab, node)
            extra = {ip: cid for ip, cid in held.items() if mine.get(ip) != cid}
            pending = sum(1 for cid in extra.values() if cid in doubtful)
            if leases_kept and (not mine.items() <= held.items() or pending != len(extra)):
                self.report.failures.append(f"{when}: {node}: leases {held} are not its pods' {mine}")
            veths = len(inventory.host_veths(self.lab, node))
            if not len(mine) <= veths <= len(mine) + pending:
                self.report.failures.append(f"{when}: {node}: {veths} host veths for {len(mine)} pods "
                                            f"(and {pending} half-made)")

    def drain(self, before: dict[str, dict]) -> None:
        """Delete every pod (half-made ones too); nothing of them may be left."""
        for name in sorted(self.model.running | self.model.doubtful):
            try:
                pods.delete(self.lab, name)
            except NotFound:
                if name in self.model.running:
                    self.report.failures.append(f"drain: pod {name} was running but is not found")
            except TulleError as exc:
                self.report.failures.append(f"drain: pod del {name}: {exc.msg}")
        self.model.running.clear()
        self.model.doubtful.clear()
        st = state.load(self.lab)
        if st.pods:
            self.report.failures.append(f"drain: pods left in the lab: {sorted(st.pods)}")
        left = [n for n in netns.list_names(f"tulle-{self.lab}-pod-")]
        if left:
            self.report.failures.append(f"drain: pod netns left: {left}")
        for node in st.nodes:
            after = inventory.node_view(self.lab, node)
            if after != before.get(node):
                self.report.failures.append(f"drain: {node}: left {after}, was {before.get(node)}")


def run(lab: str, ops: int, seed: int, check_every: int = 0, log: Callable[[str], None] = print,
        verbose: bool = False) -> Report:
    """`ops` random operations on `lab` (pods it had stay), invariants after the run (and
    every `check_every` operations), then every chaos pod deleted and nothing left of them."""
    started = time.monotonic()
    r = Run(lab, seed)
    before = {node: inventory.node_view(lab, node) for node in r.model.nodes}
    for i in range(1, ops + 1):
        said = r.step()
        if verbose:
            log(f"{i}: {said}")
        if check_every and i % check_every == 0:
            r.check(f"after {i} operations")
            log(f"{i}/{ops} operations, {len(r.model.running)} pods, {len(r.report.failures)} failures")
    r.check(f"after {ops} operations")
    r.drain(before)
    r.report.seconds = time.monotonic() - started
    return r.report
