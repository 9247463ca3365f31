"""The cgroups a sandboxed runtime's containers live in (cgroupfs, v1 or hybrid).

A sandbox gives its runtime a cgroup parent named after its netns; the runtime (runc)
makes one cgroup per container below it, in every hierarchy, and removes those — but
not the parent. These find the parent wherever it is, the processes still in it, and
remove it once empty (an empty cgroup is removed with rmdir).
"""

from __future__ import annotations

import os

CGROUP_ROOT = "/sys/fs/cgroup"


def paths(parent: str) -> list[str]:
    """The directories of cgroup `parent` (e.g. "/tulle-…-host") in every hierarchy."""
    name = parent.strip("/")
    tops = [CGROUP_ROOT] + [os.path.join(CGROUP_ROOT, d) for d in _listdir(CGROUP_ROOT)]
    return [os.path.join(top, name) for top in tops if os.path.isdir(os.path.join(top, name))]


def pids(parent: str) -> list[int]:
    """Processes in `parent` or any cgroup below it."""
    found: set[int] = set()
    for base in paths(parent):
        for dirpath, _dirs, files in os.walk(base):
            if "cgroup.procs" in files:
                try:
                    with open(os.path.join(dirpath, "cgroup.procs")) as f:
                        found.update(int(line) for line in f if line.strip())
                except OSError:
                    pass  # removed while we looked
    return sorted(found)


def remove(parent: str) -> None:
    """Remove `parent` and the cgroups below it, deepest first; busy ones are left."""
    for base in paths(parent):
        for dirpath, _dirs, _files in sorted(os.walk(base), key=lambda w: -len(w[0])):
            try:
                os.rmdir(dirpath)
            except OSError:
                pass


def _listdir(path: str) -> list[str]:
    try:
        return sorted(os.listdir(path))
    except OSError:
        return []
