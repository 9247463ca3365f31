"""Network namespaces: run code inside one, create and remove named ones.

Kernel work in tulle always applies to "the network namespace of the calling
thread". `run_in` runs a function on a fresh thread that first enters the target
namespace; the thread ends with the function, so no thread ever has to find its
way back and the caller's namespace is never touched (the same idea as the
reference plugins' ns.Do, without the risk of a thread left in the wrong netns).
Netlink sockets, /proc/sys files and child processes (nft, tc) opened by that
thread all belong to the target namespace.
"""

from __future__ import annotations

import ctypes
import fcntl
import os
import socket
import struct
import subprocess
import sys
import threading
from typing import Callable, TypeVar

from tulle.errors import KernelError, NotFoundError

T = TypeVar("T")

CLONE_NEWNET = 0x40000000
NSFS_MAGIC = 0x6E736673
NS_GET_NSTYPE = 0xB703  # _IO(0xb7, 0x3), Linux 4.11: the CLONE_NEW* type of a namespace file
RUN_DIR = "/run/netns"
SIOCGIFFLAGS, SIOCSIFFLAGS, IFF_UP = 0x8913, 0x8914, 0x1
IFREQ = "16sH22x"       # struct ifreq: the name, then ifr_flags in a 24-byte union

_libc = ctypes.CDLL(None, use_errno=True)


def path_of(name: str) -> str:
    """The bind-mount path of a named namespace (as `ip netns` makes them)."""
    return name if name.startswith("/") else os.path.join(RUN_DIR, name)


def is_netns(path: str) -> bool:
    """True when `path` is a network namespace file: nsfs, and of type net. Every kind of
    namespace lives on nsfs (/proc/self/ns/mnt too), and handing a mount namespace to
    netlink as a netns fails half-way through a plugin's work instead of up front."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except (OSError, ValueError):  # ValueError: an embedded NUL
        return False
    try:
        buf = ctypes.create_string_buffer(128)  # struct statfs: f_type comes first
        if _libc.fstatfs(fd, buf) != 0 or struct.unpack_from("l", buf.raw)[0] != NSFS_MAGIC:
            return False
        try:
            return fcntl.ioctl(fd, NS_GET_NSTYPE) == CLONE_NEWNET
        except OSError:
            return False
    finally:
        os.close(fd)


def _enter(path: str) -> None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise NotFoundError(f"network namespace {path} does not exist") from None
    except OSError as exc:
        raise KernelError(f"cannot open network namespace {path}: {exc.strerror}", errno=exc.errno) from None
    try:
        if _libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise NotFoundError(f"{path} is not a network namespace ({os.strerror(err)})")
    finally:
        os.close(fd)


def run_in(path: str | None, fn: Callable[..., T], *args, **kwargs) -> T:
    """Call fn(*args) inside the network namespace at `path` (None: right here)."""
    if path is None:
        return fn(*args, **kwargs)
    box: dict = {}

    def target() -> None:
        try:
            _enter(path)
            box["value"] = fn(*args, **kwargs)
        except BaseException as exc:  # handed to the caller's thread below
            box["error"] = exc
        finally:
            rtnl = sys.modules.get("tulle.kernel.rtnl")   # loaded only by callers that use netlink
            if rtnl is not None:
                rtnl.close()

    thread = threading.Thread(target=target, name=f"netns:{path}")
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box["value"]


def exists(name: str) -> bool:
    return is_netns(path_of(name))


def create(name: str) -> str:
    """Create a named namespace (like `ip netns add`); returns its path."""
    if not name.startswith("tulle-") and not os.environ.get("TULLE_ANY_NETNS_NAME"):
        # Safety: everything tulle makes carries the prefix, so it can always be found and cleaned.
        raise KernelError(f"refusing to create netns {name!r}: tulle's namespaces are named tulle-*")
    _ip("netns", "add", name)
    return path_of(name)


def create_sandbox(name: str) -> str:
    """A pod's namespace as a container runtime makes it: created, its loopback up."""
    path = create(name)
    try:
        run_in(path, loopback_up)
    except BaseException:
        remove(name)
        raise
    return path


def loopback_up() -> None:
    """`lo` of the calling thread's namespace up, with two ioctls rather than netlink: the
    pod-add path stays free of pyroute2, whose import costs more than the whole add."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        flags = struct.unpack(IFREQ, fcntl.ioctl(s, SIOCGIFFLAGS, struct.pack(IFREQ, b"lo", 0)))[1]
        fcntl.ioctl(s, SIOCSIFFLAGS, struct.pack(IFREQ, b"lo", flags | IFF_UP))


def remove(name: str) -> None:
    """Remove a named namespace; a missing one is not an error."""
    if os.path.exists(path_of(name)):
        _ip("netns", "delete", name)


def list_names(prefix: str = "tulle-") -> list[str]:
    try:
        return sorted(n for n in os.listdir(RUN_DIR) if n.startswith(prefix))
    except FileNotFoundError:
        return []


def _ip(*args: str) -> None:
    proc = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise KernelError(f"ip {' '.join(args)} failed: {proc.stderr.strip()}")
