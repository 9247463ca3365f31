"""The etcd v3 store: a real etcd cluster through its JSON gateway (stdlib only).

etcd serves its gRPC API as JSON at `/v3/...` (grpc-gateway; etcd 3.4 also
answers the old `/v3beta/` prefix): keys and values are base64, 64-bit numbers
are strings, fields at their default value are left out. One persistent
HTTP/1.1 connection carries the unary calls; every `watch` call opens its own
streaming request and closes it when it returns, so an agent loop can call it
repeatedly.

`netns`: connections can be opened from inside another network namespace (a
socket stays in the namespace it was created in), so a process in the root
netns can use an etcd that listens only inside a lab or test namespace.
"""

from __future__ import annotations

import base64
import http.client
import json
import socket
import threading
import time
from typing import Any, Callable

from tulle.errors import ConfigError
from tulle.store.base import (
    KV,
    Compacted,
    Event,
    LeaseExpired,
    StoreError,
    StoreUnavailable,
    Value,
    prefix_end,
    to_bytes,
)

CONNECT_TIMEOUT = 3.0
REQUEST_TIMEOUT = 10.0
API = "/v3"

# How a kept-alive connection that the server closed while idle fails.
_STALE = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError)

Connector = Callable[[tuple[str, int], float], socket.socket]


def _b64(data: bytes | str) -> str:
    return base64.b64encode(to_bytes(data)).decode()


def _unb64(text: str | None) -> bytes:
    return base64.b64decode(text) if text else b""


def _kv(d: dict) -> KV:
    return KV(key=_unb64(d.get("key")).decode(), value=_unb64(d.get("value")),
              create_revision=int(d.get("create_revision", 0)), mod_revision=int(d.get("mod_revision", 0)),
              version=int(d.get("version", 0)), lease=int(d.get("lease", 0)))


def _range_of(prefix: str) -> dict:
    key = prefix.encode()
    return {"key": _b64(key or b"\0"), "range_end": _b64(prefix_end(key))}


def parse_endpoints(spec: str) -> list[tuple[str, int]]:
    """'h1:2379,h2:2379' -> [(h1, 2379), (h2, 2379)] (port defaults to 2379)."""
    out = []
    for part in filter(None, (p.strip() for p in spec.split(","))):
        host, sep, port = part.rpartition(":")
        if not sep or not port.isdigit():
            host, port = part, "2379"
        out.append((host.strip("[]"), int(port)))
    if not out:
        raise ConfigError(f"no etcd endpoint in store URL etcd://{spec}")
    return out


def netns_connector(path: str) -> Connector:
    """Open sockets from a thread inside the netns at `path`."""
    from tulle.kernel import netns

    def connect(addr: tuple[str, int], timeout: float) -> socket.socket:
        return netns.run_in(path, socket.create_connection, addr, timeout)

    return connect


class _Connection(http.client.HTTPConnection):
    """HTTPConnection whose sockets (also on an automatic reconnect) come from a Connector."""

    def __init__(self, host: str, port: int, timeout: float, connector: Connector,
                 connect_timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self.connector = connector
        self.connect_timeout = connect_timeout

    def connect(self) -> None:
        self.sock = self.connector((self.host, self.port), self.connect_timeout)
        self.sock.settimeout(self.timeout)


class EtcdStore:
    """Store on an etcd v3 cluster (see the module docstring)."""

    def __init__(self, endpoints: list[tuple[str, int]], netns: str | None = None,
                 connect_timeout: float = CONNECT_TIMEOUT, request_timeout: float = REQUEST_TIMEOUT) -> None:
        self.endpoints = endpoints
        self.url = "etcd://" + ",".join(f"{h}:{p}" for h, p in endpoints)
        self._connect_timeout = connect_timeout
        self._request_timeout = request_timeout
        self._connector: Connector = netns_connector(netns) if netns else socket.create_connection
        self._lock = threading.Lock()
        self._conn: http.client.HTTPConnection | None = None
        self._current = 0  # index of the endpoint in use
        self.server_version = self._call("/maintenance/status", {}).get("version", "")

    # -- transport ----------------------------------------------------------

    def _open(self, index: int, timeout: float) -> http.client.HTTPConnection:
        host, port = self.endpoints[index]
        conn = _Connection(host, port, timeout, self._connector, self._connect_timeout)
        conn.connect()
        return conn

    def _post(self, conn: http.client.HTTPConnection, path: str, body: dict) -> http.client.HTTPResponse:
        conn.request("POST", API + path, body=json.dumps(body).encode(),
                     headers={"Content-Type": "application/json"})
        return conn.getresponse()

    def _call(self, path: str, body: dict) -> dict[str, Any]:
        """One unary call; tries each endpoint once, starting with the one that worked.

        A kept-alive connection the server has closed meanwhile (idle timeout)
        fails before the request is read: that one case is retried at once on a
        fresh connection to the same endpoint.
        """
        errors = []
        with self._lock:
            for attempt in range(len(self.endpoints)):
                index = (self._current + attempt) % len(self.endpoints)
                for fresh in (False, True):
                    reused = self._conn is not None and index == self._current and not fresh
                    try:
                        if not reused:
                            self._drop()
                            self._conn = self._open(index, self._request_timeout)
                            self._current = index
                        resp = self._post(self._conn, path, body)
                        status, data = resp.status, resp.read()
                    except (OSError, http.client.HTTPException) as exc:
                        self._drop()
                        if reused and isinstance(exc, _STALE):
                            continue
                        host, port = self.endpoints[index]
                        errors.append(f"{host}:{port}: {exc or type(exc).__name__}")
                        break
                    return self._decode(path, status, data)
        raise StoreUnavailable(f"cannot reach etcd at {self.url}: " + "; ".join(errors))

    def _decode(self, path: str, status: int, data: bytes) -> dict[str, Any]:
        try:
            doc = json.loads(data or b"{}")
        except ValueError:
            raise StoreError(f"etcd {self.url}{API}{path}: HTTP {status}, not JSON: {data[:200]!r}") from None
        if status != 200 or "error" in doc:
            msg = doc.get("message") or doc.get("error") or f"HTTP {status}"
            if "lease not found" in msg:
                raise LeaseExpired(f"{msg} (etcd {self.url})")
            if "compacted" in msg:
                raise Compacted(f"{msg} (etcd {self.url})", 0)
            raise StoreError(f"etcd {self.url}{API}{path}: {msg}")
        return doc

    def _drop(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    # -- keys ---------------------------------------------------------------

    def get(self, key: str) -> KV | None:
        kvs = self._call("/kv/range", {"key": _b64(key)}).get("kvs", [])
        return _kv(kvs[0]) if kvs else None

    def list(self, prefix: str) -> tuple[list[KV], int]:
        doc = self._call("/kv/range", {**_range_of(prefix), "sort_order": "ASCEND", "sort_target": "KEY"})
        return [_kv(d) for d in doc.get("kvs", [])], int(doc["header"]["revision"])

    def _txn(self, compare: list[dict], success: list[dict]) -> dict | None:
        doc = self._call("/kv/txn", {"compare": compare, "success": success, "failure": []})
        return doc if doc.get("succeeded") else None

    def _write_if(self, compare: list[dict], key: str, value: Value, lease: int) -> KV | None:
        """Put under a condition and read the result back in the same transaction."""
        put = {"key": _b64(key), "value": _b64(value), "lease": str(lease)}
        doc = self._txn(compare, [{"request_put": put}, {"request_range": {"key": _b64(key)}}])
        if doc is None:
            return None
        return _kv(doc["responses"][1]["response_range"]["kvs"][0])

    def put(self, key: str, value: Value, lease: int = 0) -> KV:
        kv = self._write_if([], key, value, lease)
        assert kv is not None  # a transaction without conditions always succeeds
        return kv

    def create(self, key: str, value: Value, lease: int = 0) -> KV | None:
        return self._write_if([{"key": _b64(key), "target": "VERSION", "result": "EQUAL", "version": "0"}],
                              key, value, lease)

    def compare_and_swap(self, key: str, value: Value, mod_revision: int, lease: int = 0) -> KV | None:
        return self._write_if([{"key": _b64(key), "target": "MOD", "result": "EQUAL",
                                "mod_revision": str(mod_revision)}], key, value, lease)

    def delete(self, key: str, mod_revision: int | None = None) -> bool:
        if mod_revision is None:
            doc = self._call("/kv/deleterange", {"key": _b64(key)})
            return int(doc.get("deleted", 0)) > 0
        doc = self._txn([{"key": _b64(key), "target": "MOD", "result": "EQUAL",
                          "mod_revision": str(mod_revision)}], [{"request_delete_range": {"key": _b64(key)}}])
        return doc is not None and int(doc["responses"][0]["response_delete_range"].get("deleted", 0)) > 0

    # -- leases -------------------------------------------------------------

    def grant(self, ttl: int) -> int:
        if ttl <= 0:
            raise StoreError(f"lease TTL must be positive, got {ttl}")
        return int(self._call("/lease/grant", {"TTL": str(ttl)})["ID"])

    def keep_alive(self, lease: int) -> int:
        # The gateway serves the keep-alive stream as a request/response; one message each way.
        doc = self._call("/lease/keepalive", {"ID": str(lease)})
        ttl = int(doc.get("result", {}).get("TTL", 0))
        if ttl <= 0:
            raise LeaseExpired(f"lease {lease:x} not found (expired or revoked) (etcd {self.url})")
        return ttl

    def revoke(self, lease: int) -> None:
        try:
            self._call("/lease/revoke", {"ID": str(lease)})
        except LeaseExpired:
            pass

    # -- history ------------------------------------------------------------

    def compact(self, revision: int) -> None:
        try:
            self._call("/kv/compaction", {"revision": str(revision), "physical": True})
        except Compacted:
            pass  # already compacted at or after it

    def watch(self, prefix: str, start_revision: int, timeout: float) -> list[Event]:
        deadline = time.monotonic() + max(0.0, timeout)
        request = {"create_request": {**_range_of(prefix), "start_revision": str(start_revision)}}
        conn = self._open_watch()
        try:
            resp = self._post(conn, "/watch", request)
            if resp.status != 200:
                self._decode("/watch", resp.status, resp.read())
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    return []
                conn.sock.settimeout(left)
                try:
                    line = resp.readline()
                except (TimeoutError, socket.timeout):
                    return []
                if not line:
                    raise StoreUnavailable(f"etcd {self.url} closed the watch stream")
                if not line.strip():
                    continue
                try:
                    result = json.loads(line).get("result", {})
                except ValueError:
                    raise StoreError(f"etcd {self.url}: unreadable watch message {line[:200]!r}") from None
                if "compact_revision" in result and int(result["compact_revision"]) > 0:
                    rev = int(result["compact_revision"])
                    raise Compacted(f"revision {start_revision} is compacted (history starts at {rev})", rev)
                if result.get("canceled"):
                    raise StoreError(f"etcd {self.url} cancelled the watch: {result.get('cancel_reason', '')}")
                events = [self._event(e) for e in result.get("events", [])]
                if events:
                    return events
        except (OSError, http.client.HTTPException) as exc:
            raise StoreUnavailable(f"etcd {self.url}: watch failed: {exc}") from None
        finally:
            conn.close()

    def _open_watch(self) -> http.client.HTTPConnection:
        errors = []
        for attempt in range(len(self.endpoints)):
            index = (self._current + attempt) % len(self.endpoints)
            try:
                return self._open(index, self._request_timeout)
            except OSError as exc:
                host, port = self.endpoints[index]
                errors.append(f"{host}:{port}: {exc}")
        raise StoreUnavailable(f"cannot reach etcd at {self.url}: " + "; ".join(errors))

    @staticmethod
    def _event(e: dict) -> Event:
        kv = _kv(e.get("kv", {}))
        return Event("delete" if e.get("type") == "DELETE" else "put", kv, kv.mod_revision)

    def close(self) -> None:
        with self._lock:
            self._drop()

    def __repr__(self) -> str:
        return f"EtcdStore({self.url!r})"
