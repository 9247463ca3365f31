"""The rtnetlink socket of the calling thread, and netlink error translation.

One IPRoute per thread: a thread lives in exactly one network namespace (see
netns.run_in), so a thread-local socket is a namespace-local socket. This is the
only module that creates pyroute2 sockets.
"""

from __future__ import annotations

import errno
import threading
from contextlib import contextmanager
from typing import Iterator

from pyroute2.iproute.linux import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from tulle.errors import ExistsError, KernelError, NotFoundError

_local = threading.local()


def ipr() -> IPRoute:
    sock = getattr(_local, "ipr", None)
    if sock is None:
        sock = IPRoute()
        _local.ipr = sock
    return sock


def close() -> None:
    sock = getattr(_local, "ipr", None)
    if sock is not None:
        _local.ipr = None
        sock.close()


@contextmanager
def errors(what: str) -> Iterator[None]:
    """Translate netlink failures of `what` into tulle's error classes."""
    try:
        yield
    except NetlinkError as exc:
        msg = f"{what}: {exc.args[1] if len(exc.args) > 1 else errno.errorcode.get(exc.code, exc.code)}"
        if exc.code == errno.EEXIST:
            raise ExistsError(msg) from None
        if exc.code in (errno.ENODEV, errno.ENOENT, errno.ESRCH):
            raise NotFoundError(msg) from None
        raise KernelError(msg, errno=exc.code) from None
