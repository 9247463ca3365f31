"""Shared fixtures: private network namespaces, installed plugin executables,
and the session-wide leak check the safety rules ask for."""

from __future__ import annotations

import itertools
import os
import subprocess

import pytest

from tests import cnirun
from tulle.kernel import netns

RUN_ID = f"{os.getpid() % 100000:05d}"
_counter = itertools.count()


def _root_snapshot() -> dict[str, str]:
    """What the root netns holds that tests could change by mistake."""
    def out(*cmd: str) -> str:
        return subprocess.run(cmd, capture_output=True, text=True, check=False).stdout

    return {
        "links": out("ip", "-br", "link"),
        "addresses": out("ip", "-br", "addr"),
        "routes": out("ip", "route", "show", "table", "all"),
        "nft tables": out("nft", "list", "tables"),
        "qdiscs": out("tc", "qdisc", "show"),
    }


def _leftovers() -> list[str]:
    left = [f"netns {n}" for n in netns.list_names("tulle-")]
    for d in ("/run/tulle", "/var/lib/cni/networks"):
        if os.path.isdir(d):
            left += [f"state {d}/{n}" for n in os.listdir(d) if n.startswith("tulle-")]
    left += _lab_leftovers()
    return left


def _lab_leftovers() -> list[str]:
    """Anything under /run/tulle/labs, and any process still running from a lab dir there."""
    from tulle import procs

    labs = "/run/tulle/labs"
    left = [f"lab state {labs}/{n}" for n in (os.listdir(labs) if os.path.isdir(labs) else [])]
    pids = procs.find(lambda args: any(a.startswith(labs + "/") for a in args))
    left += [f"lab process {pid}: {' '.join(procs.cmdline(pid))[:120]}" for pid in pids]
    return left


def pytest_sessionstart(session: pytest.Session) -> None:
    if os.geteuid() == 0:
        session.config._tulle_root_before = _root_snapshot()  # type: ignore[attr-defined]
        session.config._tulle_left_before = set(_leftovers())  # type: ignore[attr-defined]


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    before = getattr(session.config, "_tulle_root_before", None)
    if before is None:
        return
    problems = [x for x in _leftovers() if x not in session.config._tulle_left_before]  # type: ignore[attr-defined]
    after = _root_snapshot()
    for key, text in before.items():
        if after[key] != text:
            problems.append(f"root netns {key} changed:\n--- before\n{text}--- after\n{after[key]}")
    if problems:
        tr = session.config.pluginmanager.get_plugin("terminalreporter")
        msg = "LEAK CHECK FAILED: the tests left something behind:\n  " + "\n  ".join(problems)
        if tr:
            tr.write_line(msg, red=True)
        else:
            print(msg)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.geteuid() == 0:
        return
    skip = pytest.mark.skip(reason="needs root (creates network namespaces)")
    for item in items:
        if "netns" in item.keywords or "podman" in item.keywords or "containerd" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def make_netns():
    """Factory for private namespaces named tulle-t<run>-<n>; all removed afterwards."""
    made: list[str] = []

    def make(tag: str = "") -> str:
        name = f"tulle-t{RUN_ID}-{next(_counter)}{('-' + tag) if tag else ''}"[:40]
        path = netns.create(name)
        made.append(name)
        return path

    yield make
    for name in reversed(made):
        netns.remove(name)


@pytest.fixture
def pod_ns(make_netns) -> str:
    return make_netns("pod")


@pytest.fixture
def host_ns(make_netns) -> str:
    """A netns standing in for the host: the plugins' host side runs in it."""
    return make_netns("host")


@pytest.fixture(scope="session")
def cni_bin(tmp_path_factory) -> str:
    """tulle's plugin executables, installed as `tulle cni install` does."""
    from tulle.cni.install import install

    bin_dir = str(tmp_path_factory.mktemp("cni-bin"))
    install(bin_dir)
    return bin_dir


@pytest.fixture
def cni(cni_bin, tmp_path):
    """Run tulle's plugins like a runtime: cni(type, command, conf, ...) -> CNIOutcome."""
    return cnirun.Runner([cni_bin], data_dir=str(tmp_path / "ipam"))


@pytest.fixture
def ref_cni(tmp_path):
    """The same for Debian's reference plugins in /usr/lib/cni."""
    if not os.path.isdir(cnirun.REFERENCE_DIR):
        pytest.skip("reference plugins (containernetworking-plugins) not installed")
    return cnirun.Runner([cnirun.REFERENCE_DIR], data_dir=str(tmp_path / "ref-ipam"))
