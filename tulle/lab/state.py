"""A lab's state: /run/tulle/labs/<lab>/state.json and everything else of the lab's files.

Everything a lab keeps on disk lives under its state dir (store file, CNI
executables, per-node agent files, etcd data): `lab down` removes one directory.
state.json records what cannot be recomputed from the options: agent and etcd
pids, which nodes remain, and for each pod what its node's runtime knows (as a
kubelet and its container runtime do): the sandbox netns, the CNI container id
and result address, the server pids. The Pod objects themselves (labels, ports,
status) are in the store. It is written
atomically (temp file + rename) so a reader never sees half a file, and
every change is a read-modify-write under an flock (`update`), so two `tulle
lab` commands don't lose each other's updates.

Three flocks order the lab's commands (always taken in this order, and a
killed command's locks go with it):
- the runtime lock (`runtime_locked`): shared by every `pod add`/`pod del`
  for its whole run, exclusive for commands that change the lab as a whole
  (apply, delete, node del, gc): those see no pod half-way;
- one lock per pod (`pod_locked`): one command at a time makes or unmakes a
  given pod, and a pod whose lock is free has no live command working on it;
- the state lock (`locked`): around each read-modify-write of state.json
  only, never across a CNI call.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import os
import threading
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Iterator, TypeVar

from tulle.errors import NotFoundError, TryAgain, TulleError
from tulle.lab import topology

STATE_FILE = "state.json"
LOCK_FILE = "lock"
RUNTIME_LOCK = "runtime.lock"
POD_LOCK_DIR = "locks"

T = TypeVar("T")


@dataclass
class PodState:
    """One pod's runtime side, keyed `namespace/name` in LabState.pods."""

    node: str
    ip: str
    container_id: str
    netns: str = ""                # the pod's netns name; "" for hostNetwork (it runs in the node's)
    servers: dict[str, int] = field(default_factory=dict)    # container -> server pid

    @property
    def host_network(self) -> bool:
        return not self.netns


@dataclass
class LabState:
    lab: str
    options: dict[str, Any]                    # the arguments of topology.plan()
    nodes: dict[str, int] = field(default_factory=dict)      # node -> agent pid (0: none)
    pods: dict[str, PodState] = field(default_factory=dict)  # "namespace/name" -> runtime side
    etcd_pid: int = 0
    phase: str = "starting"                    # starting | up

    def plan(self) -> topology.Plan:
        """The layout, limited to the nodes that are still there."""
        full = topology.plan(self.lab, **self.options)
        keep = tuple(n for n in full.nodes if n.name in self.nodes) if self.phase == "up" else full.nodes
        return dataclasses.replace(full, nodes=keep)

    def to_json(self) -> dict[str, Any]:
        body = asdict(self)
        body["options"] = {k: str(v) if k == "network" else v for k, v in self.options.items()}
        return body

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> "LabState":
        return cls(lab=body["lab"], options=dict(body["options"]), nodes=dict(body.get("nodes", {})),
                   pods={k: PodState(**v) for k, v in body.get("pods", {}).items()},
                   etcd_pid=int(body.get("etcd_pid", 0)), phase=body.get("phase", "starting"))


def require_root() -> None:
    """Labs create network namespaces and write /run/tulle: say so instead of a traceback."""
    if os.geteuid() != 0:
        raise TulleError("tulle lab needs root (it creates network namespaces and /run/tulle/labs)")


def path(lab: str, *parts: str) -> str:
    return os.path.join(topology.state_dir(lab), *parts)


def exists(lab: str) -> bool:
    return os.path.isdir(topology.state_dir(lab))


def _missing(lab: str) -> NotFoundError:
    return NotFoundError(f"lab {lab!r} does not exist (tulle lab up --lab {lab})")


def load(lab: str) -> LabState:
    topology.check_lab_name(lab)
    try:
        with open(path(lab, STATE_FILE)) as f:
            return LabState.from_json(json.load(f))
    except FileNotFoundError:
        raise _missing(lab) from None
    except (ValueError, KeyError, TypeError) as exc:
        raise TulleError(f"lab {lab!r}: unreadable {path(lab, STATE_FILE)}: {exc}") from None


def save(state: LabState) -> None:
    target = path(state.lab, STATE_FILE)
    tmp = f"{target}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(state.to_json(), f, indent=2, sort_keys=True)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, target)


def update(lab: str, change: Callable[[LabState], T]) -> tuple[LabState, T]:
    """Read state.json, apply `change`, write it back, all under the state lock; returns the
    new state and what `change` returned. An exception from `change` writes nothing."""
    with locked(lab):
        st = load(lab)
        out = change(st)
        save(st)
    return st, out


@dataclass
class _Held:
    fd: int
    shared: bool
    depth: int = 1


_held: dict[tuple[str, int], _Held] = {}    # (lock file, thread) -> the flock this thread holds


@contextlib.contextmanager
def _flock(lock_path: str, shared: bool = False, wait: bool = True, busy: str = "") -> Iterator[None]:
    """flock `lock_path`; re-entrant for the thread that holds it (a session that holds the
    lab's locks calls code that takes them too). Busy without `wait`: TryAgain(`busy`)."""
    key = (lock_path, threading.get_ident())
    held = _held.get(key)
    if held is not None:
        if held.shared and not shared:
            raise TulleError(f"{lock_path}: cannot upgrade a shared lock (release it first)")
        held.depth += 1
        try:
            yield
        finally:
            held.depth -= 1
        return
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | (0 if wait else fcntl.LOCK_NB))
    except BlockingIOError:
        os.close(fd)
        raise TryAgain(busy or f"{lock_path} is held by another command") from None
    except BaseException:
        os.close(fd)
        raise
    _held[key] = _Held(fd, shared)
    try:
        yield
    finally:
        del _held[key]
        os.close(fd)


def _lab_file(lab: str, *parts: str) -> str:
    """A lock file of an existing lab (a missing lab is the usual clear error)."""
    if not exists(lab):
        raise _missing(lab)
    return path(lab, *parts)


@contextlib.contextmanager
def locked(lab: str) -> Iterator[None]:
    """The state lock: serializes changes to state.json across processes (released when
    the process dies)."""
    with _flock(_lab_file(lab, LOCK_FILE)):
        yield


@contextlib.contextmanager
def runtime_locked(lab: str, exclusive: bool = False) -> Iterator[None]:
    """Shared: this command makes or unmakes pods alongside others. Exclusive: no pod is
    being made or unmade by anyone else while it is held."""
    with _flock(_lab_file(lab, RUNTIME_LOCK), shared=not exclusive):
        yield


def pod_lock_path(lab: str, namespace: str, name: str) -> str:
    # Never removed: unlinking a lock file another process waits on would let two hold it.
    folder = _lab_file(lab, POD_LOCK_DIR)
    os.makedirs(folder, mode=0o700, exist_ok=True)
    return os.path.join(folder, f"{namespace}_{name}")


@contextlib.contextmanager
def pod_locked(lab: str, namespace: str, name: str, wait: bool = True) -> Iterator[None]:
    """One command at a time makes or unmakes pod `namespace/name`; without `wait`, a pod
    another command is working on is TryAgain."""
    busy = f"pod {namespace}/{name} is being added or deleted by another command: try again when it is done"
    with _flock(pod_lock_path(lab, namespace, name), wait=wait, busy=busy):
        yield


def pod_busy(lab: str, namespace: str, name: str) -> bool:
    """Whether a live command (another process, or this thread) works on the pod now."""
    key = (pod_lock_path(lab, namespace, name), threading.get_ident())
    if key in _held:
        return True
    try:
        with pod_locked(lab, namespace, name, wait=False):
            return False
    except TryAgain:
        return True


def create_dir(lab: str) -> str:
    """Make the lab's state dir (0700: it holds the agents' root-only sockets)."""
    os.makedirs(topology.STATE_ROOT, exist_ok=True)
    d = topology.state_dir(lab)
    os.mkdir(d, 0o700)
    return d
