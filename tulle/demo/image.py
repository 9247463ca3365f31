"""A tiny container image built locally from busybox-static: nothing is pulled.

The rootfs holds /bin/busybox, the applet links the demo uses and a web page
that identifies a real answer from a container (a published port whose DNAT is
missing would otherwise reach the runtime's port-reservation socket instead).
"""

from __future__ import annotations

import io
import os
import tarfile

from tulle.errors import NotFoundError

BUSYBOX = "/bin/busybox"
APPLETS = ("sh", "ping", "nc", "ip", "sleep", "httpd", "cat", "echo", "ls", "hostname", "wget")
PAGE = b"hello from a tulle pod\n"


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes, mode: int = 0o644) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode = len(data), mode
    tar.addfile(info, io.BytesIO(data))


def _add_dir(tar: tarfile.TarFile, name: str) -> None:
    info = tarfile.TarInfo(name)
    info.type, info.mode = tarfile.DIRTYPE, 0o755
    tar.addfile(info)


def write_rootfs(path: str, busybox: str = BUSYBOX) -> str:
    """Write the rootfs tarball for `podman import`; returns `path`."""
    if not os.path.isfile(busybox):
        raise NotFoundError(f"{busybox} is missing: install the busybox-static package")
    with tarfile.open(path, "w") as tar:
        for d in ("bin", "etc", "tmp", "www", "proc", "sys", "dev"):
            _add_dir(tar, d)
        tar.add(busybox, arcname="bin/busybox")
        for applet in APPLETS:
            link = tarfile.TarInfo(f"bin/{applet}")
            link.type, link.linkname = tarfile.SYMTYPE, "busybox"
            tar.addfile(link)
        _add_bytes(tar, "etc/passwd", b"root:x:0:0:root:/:/bin/sh\n")
        _add_bytes(tar, "etc/group", b"root:x:0:\n")
        _add_bytes(tar, "www/index.html", PAGE)
    return path
