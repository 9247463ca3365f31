"""A tiny container image built locally from busybox-static: nothing is pulled.

The rootfs holds /bin/busybox, the applet links the demo uses and a web page
that identifies a real answer from a container (a published port whose DNAT is
missing would otherwise reach the runtime's port-reservation socket instead).
podman imports the rootfs tarball itself; containerd (`ctr images import`) takes an
OCI image archive, which `write_oci_archive` wraps around the same rootfs.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import platform
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


# platform.machine() -> the OCI architecture name (the image must match the host's)
OCI_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "ppc64le": "ppc64le", "s390x": "s390x"}


def _blob(tar: tarfile.TarFile, data: bytes, media_type: str) -> dict:
    """Add `data` under blobs/sha256/ and return its OCI descriptor."""
    digest = hashlib.sha256(data).hexdigest()
    _add_bytes(tar, f"blobs/sha256/{digest}", data)
    return {"mediaType": media_type, "digest": f"sha256:{digest}", "size": len(data)}


def write_oci_archive(path: str, name: str, cmd: list[str], busybox: str = BUSYBOX) -> str:
    """An OCI image layout in one tar (what `ctr images import` reads): the rootfs of
    `write_rootfs` as its single layer, `cmd` as the default command, tagged `name`
    (e.g. localhost/tulle-busybox:demo). Returns `path`."""
    rootfs = write_rootfs(f"{path}.rootfs", busybox)
    try:
        with open(rootfs, "rb") as f:
            layer = f.read()
    finally:
        os.unlink(rootfs)
    diff_id = "sha256:" + hashlib.sha256(layer).hexdigest()
    config = {"architecture": OCI_ARCH.get(platform.machine(), platform.machine()), "os": "linux",
              "config": {"Cmd": cmd, "Env": ["PATH=/bin"], "WorkingDir": "/"},
              "rootfs": {"type": "layers", "diff_ids": [diff_id]}}
    with tarfile.open(path, "w") as tar:
        manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "config": _blob(tar, json.dumps(config).encode(), "application/vnd.oci.image.config.v1+json"),
                    "layers": [_blob(tar, layer, "application/vnd.oci.image.layer.v1.tar")]}
        descriptor = _blob(tar, json.dumps(manifest).encode(), manifest["mediaType"])
        descriptor["annotations"] = {"io.containerd.image.name": name,
                                     "org.opencontainers.image.ref.name": name.rsplit(":", 1)[-1]}
        _add_bytes(tar, "index.json", json.dumps({"schemaVersion": 2, "manifests": [descriptor]}).encode())
        _add_bytes(tar, "oci-layout", json.dumps({"imageLayoutVersion": "1.0.0"}).encode())
    return path
