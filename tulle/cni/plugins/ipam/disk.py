"""host-local's on-disk store, byte-for-byte the reference's layout.

`<dataDir>/<network>/` holds one file per reserved address, named by the
address and containing "<containerID>\\r\\n<ifname>"; `last_reserved_ip.<N>`
with the last address handed out from range set N; and `lock`, held with
flock for the whole call so that concurrent executions never share an address.
"""

from __future__ import annotations

import fcntl
import ipaddress
import os
from contextlib import contextmanager
from typing import Iterator

from tulle.cni.plugins.ipam.allocator import Owner
from tulle.cni.types import IPAddress

DEFAULT_DATA_DIR = "/var/lib/cni/networks"
LAST_IP_PREFIX = "last_reserved_ip."
LOCK_NAME = "lock"
LINE_BREAK = "\r\n"


def network_dir(data_dir: str, network: str) -> str:
    return os.path.join(data_dir or DEFAULT_DATA_DIR, network)


def exists(data_dir: str, network: str) -> bool:
    """Whether anything was ever allocated in `network` (CHECK and GC create nothing)."""
    return os.path.isdir(network_dir(data_dir, network))


@contextmanager
def locked(data_dir: str, network: str) -> Iterator["DiskStore"]:
    """The network's store (created as the reference does) with its lock held."""
    path = network_dir(data_dir, network)
    os.makedirs(path, mode=0o755, exist_ok=True)
    fd = os.open(os.path.join(path, LOCK_NAME), os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC, 0o750)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield DiskStore(path)
    finally:
        os.close(fd)  # closing drops the flock


def parse_owner(text: str) -> Owner:
    text = text.strip()
    cid, sep, ifname = text.partition(LINE_BREAK)
    return (cid, ifname) if sep else (text, None)


class DiskStore:
    """A Store over one network directory; use it only while `locked`."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._names: dict[IPAddress, str] = {}

    def allocations(self) -> dict[IPAddress, Owner]:
        out: dict[IPAddress, Owner] = {}
        with os.scandir(self.path) as entries:
            for entry in entries:
                try:
                    ip = ipaddress.ip_address(entry.name)
                except ValueError:
                    continue  # lock, last_reserved_ip.N, anything else
                try:
                    if not entry.is_file(follow_symlinks=False):
                        continue
                    with open(entry.path, encoding="utf-8", errors="replace", newline="") as f:
                        out[ip] = parse_owner(f.read())
                except OSError:
                    continue
                self._names[ip] = entry.name
        return out

    def reserve(self, ip: IPAddress, container_id: str, ifname: str, set_index: int) -> bool:
        name = os.path.join(self.path, str(ip))
        try:
            fd = os.open(name, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        except FileExistsError:
            return False
        try:
            with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
                f.write(container_id.strip() + LINE_BREAK + ifname)
        except BaseException:
            os.unlink(name)
            raise
        self._names[ip] = str(ip)
        self._write(LAST_IP_PREFIX + str(set_index), str(ip))
        return True

    def release(self, ip: IPAddress) -> None:
        try:
            os.unlink(os.path.join(self.path, self._names.pop(ip, str(ip))))
        except FileNotFoundError:
            pass

    def last_reserved(self, set_index: int) -> IPAddress | None:
        try:
            with open(os.path.join(self.path, LAST_IP_PREFIX + str(set_index)), encoding="utf-8") as f:
                return ipaddress.ip_address(f.read().strip())
        except (OSError, ValueError):
            return None  # we only lose round robin this once, as in the reference

    def _write(self, name: str, text: str) -> None:
        fd = os.open(os.path.join(self.path, name), os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            f.write(text)
