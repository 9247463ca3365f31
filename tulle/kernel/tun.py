"""File descriptors of TUN devices: how a user-space data plane (the udp backend)
reads the IP packets the kernel routes into a TUN and writes packets back.

The device itself is made persistent by links.add_tun, so its address and routes
survive the process that moves packets; `attach` opens /dev/net/tun and binds the
descriptor to that existing device (TUNSETIFF). The device is looked up in the
network namespace of the calling thread, like everything in kernel/.
"""

from __future__ import annotations

import fcntl
import os
import struct

from tulle.errors import KernelError, NotFoundError

TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000
IFNAMSIZ = 16
CLONE_DEVICE = "/dev/net/tun"


def attach(name: str, nonblocking: bool = True) -> int:
    """An O_RDWR descriptor bound to the existing TUN `name`, without the packet-info
    header (each read returns one bare IP packet). The caller owns (closes) it."""
    if len(name.encode()) >= IFNAMSIZ:
        raise KernelError(f"tun name {name!r} is longer than {IFNAMSIZ - 1} bytes")
    flags = os.O_RDWR | os.O_CLOEXEC | (os.O_NONBLOCK if nonblocking else 0)
    try:
        fd = os.open(CLONE_DEVICE, flags)
    except OSError as exc:
        raise KernelError(f"cannot open {CLONE_DEVICE}: {exc.strerror}", errno=exc.errno) from None
    try:
        ifr = struct.pack(f"{IFNAMSIZ}sH22x", name.encode(), IFF_TUN | IFF_NO_PI)
        fcntl.ioctl(fd, TUNSETIFF, ifr)
    except OSError as exc:
        os.close(fd)
        if exc.errno == 19:  # ENODEV: no such device (or not a tun)
            raise NotFoundError(f"tun device {name!r} not found") from None
        raise KernelError(f"cannot attach to tun {name!r}: {exc.strerror}", errno=exc.errno) from None
    return fd
