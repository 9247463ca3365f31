"""The podman demo's pure parts: the image tarball, the conflist, the limits."""

from __future__ import annotations

import os
import resource
import tarfile

import pytest

from tulle.demo import image
from tulle.demo.podman import _ulimit, tulle_conflist
from tulle.errors import NotFoundError


def test_rootfs_has_busybox_applets_and_the_page(tmp_path):
    if not os.path.isfile(image.BUSYBOX):
        pytest.skip("busybox-static not installed")
    path = image.write_rootfs(str(tmp_path / "rootfs.tar"))
    with tarfile.open(path) as tar:
        names = set(tar.getnames())
        assert "bin/busybox" in names
        for applet in ("sh", "ping", "nc", "httpd", "sleep"):
            member = tar.getmember(f"bin/{applet}")
            assert member.issym() and member.linkname == "busybox"
        assert tar.extractfile("www/index.html").read() == image.PAGE


def test_rootfs_without_busybox_names_the_package(tmp_path):
    with pytest.raises(NotFoundError, match="busybox-static"):
        image.write_rootfs(str(tmp_path / "x.tar"), busybox=str(tmp_path / "missing"))


def test_conflist_keeps_plugin_state_in_the_given_dir():
    conf = tulle_conflist("net1", "10.88.7.0/24", "/tmp/state")
    assert [p["type"] for p in conf["plugins"]] == ["bridge", "portmap", "firewall", "tuning"]
    bridge = conf["plugins"][0]
    assert bridge["isGateway"] and bridge["ipMasq"]
    assert bridge["ipam"]["dataDir"] == "/tmp/state/ipam"
    assert bridge["ipam"]["ranges"] == [[{"subnet": "10.88.7.0/24"}]]
    assert conf["plugins"][1]["capabilities"] == {"portMappings": True}
    assert conf["plugins"][3]["dataDir"] == "/tmp/state/tuning"


def test_ulimit_never_exceeds_the_hard_limit():
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    name, values = _ulimit("nofile", resource.RLIMIT_NOFILE).split("=")
    soft_v, hard_v = (int(v) for v in values.split(":"))
    assert name == "nofile" and soft_v == hard_v <= 4096
    assert hard == resource.RLIM_INFINITY or hard_v <= hard
