"""The agent's last known state, kept in its state dir: what it needs to (re)start and keep
the data plane while the store is out of reach.

One JSON file, written atomically: the network config, this node's lease, and the keys
the data-plane controllers read (remote leases, IPAM blocks) with the revision they were
read at. Written when they change (at most every MIN_INTERVAL seconds), read only when
the store cannot be reached at start.
"""

from __future__ import annotations

import base64
import ipaddress
import json
import os
import time
from dataclasses import dataclass
from typing import Callable, Iterable

from tulle.cluster.lease import Lease, decode, encode, subnet_key
from tulle.errors import ConfigError
from tulle.store.base import KV

FILE = "last-known.json"
MIN_INTERVAL = 5.0


@dataclass
class LastKnown:
    config: str                  # the network config JSON as stored
    own: Lease | None
    kvs: dict[str, KV]
    revision: int


def _kv_json(kv: KV) -> dict:
    return {"key": kv.key, "value": base64.b64encode(kv.value).decode(), "create": kv.create_revision,
            "mod": kv.mod_revision, "version": kv.version}


def _kv_of(body: dict) -> KV:
    return KV(body["key"], base64.b64decode(body["value"]), int(body["create"]), int(body["mod"]),
              int(body["version"]))


def load(state_dir: str, prefix: str) -> LastKnown | None:
    """What the last run saved; None when nothing (usable) was saved."""
    try:
        with open(os.path.join(state_dir, FILE)) as f:
            body = json.load(f)
        own = None
        if body.get("own"):
            own = decode(subnet_key(prefix, ipaddress.IPv4Network(body["own"]["subnet"])),
                         base64.b64decode(body["own"]["value"]))
        return LastKnown(str(body["config"]), own, {kv.key: kv for kv in map(_kv_of, body["kvs"])},
                         int(body["revision"]))
    except (OSError, ValueError, KeyError, TypeError, ConfigError):
        return None


class Saver:
    """Writes the file when what it holds changed, at most every MIN_INTERVAL seconds."""

    def __init__(self, state_dir: str, clock: Callable[[], float] = time.monotonic) -> None:
        self.path = os.path.join(state_dir, FILE)
        self.clock = clock
        self._written_rev = -1
        self._at = float("-inf")

    def save(self, config: str, own: Lease | None, kvs: Iterable[KV], revision: int, force: bool = False) -> bool:
        if not force and (revision == self._written_rev or self.clock() - self._at < MIN_INTERVAL):
            return False
        body = {"config": config, "revision": revision, "kvs": [_kv_json(kv) for kv in kvs],
                "own": {"subnet": str(own.subnet), "value": base64.b64encode(encode(own)).decode()} if own else None}
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        tmp = f"{self.path}.tmp{os.getpid()}"
        with open(tmp, "w") as f:
            json.dump(body, f)
        os.replace(tmp, self.path)
        self._written_rev, self._at = revision, self.clock()
        return True
