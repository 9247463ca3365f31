"""A lab's state: /run/tulle/labs/<lab>/state.json and everything else of the lab's files.

Everything a lab keeps on disk lives under its state dir (store file, CNI
executables, per-node agent files, etcd data): `lab down` removes one directory.
state.json records what cannot be recomputed from the options: agent and etcd
pids, which nodes remain, and for each pod what its node's runtime knows (as a
kubelet and its container runtime do): the sandbox netns, the CNI container id
and result address, the server pids. The Pod objects themselves (labels, ports,
status) are in the store. It is written
atomically (temp file + rename) so a reader never sees half a file, and
changes happen under an flock so two `tulle lab` commands don't lose updates.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import os
from dataclasses import asdict, dataclass, field
from typing import Any, Iterator

from tulle.errors import NotFoundError, TulleError
from tulle.lab import topology

STATE_FILE = "state.json"
LOCK_FILE = "lock"


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


def load(lab: str) -> LabState:
    topology.check_lab_name(lab)
    try:
        with open(path(lab, STATE_FILE)) as f:
            return LabState.from_json(json.load(f))
    except FileNotFoundError:
        raise NotFoundError(f"lab {lab!r} does not exist (tulle lab up --lab {lab})") from None
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


@contextlib.contextmanager
def locked(lab: str) -> Iterator[None]:
    """Serialize changes to one lab across processes (released when the process dies)."""
    fd = os.open(path(lab, LOCK_FILE), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def create_dir(lab: str) -> str:
    """Make the lab's state dir (0700: it holds the agents' root-only sockets)."""
    os.makedirs(topology.STATE_ROOT, exist_ok=True)
    d = topology.state_dir(lab)
    os.mkdir(d, 0o700)
    return d
