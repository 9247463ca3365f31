"""Wake-ups for "a file in this directory was touched", through Linux inotify.

Why: the SQLite store's watchers live in other processes (one agent per node
netns, all sharing one database file) and must learn of a commit at once
without polling the database. The writer touches the WAL file after each
commit (`touch`); every watcher blocks on an inotify descriptor that reports
attribute changes in the database's directory (`DirWatch`). The directory,
not the file, is watched, so a WAL that SQLite deletes and recreates is still
seen. inotify_init1/inotify_add_watch come from libc through ctypes: no
dependency. `DirWatch` raises OSError when inotify is unavailable (another OS,
or the per-user instance limit fs.inotify.max_user_instances reached); the
caller then falls back to polling.
"""

from __future__ import annotations

import ctypes
import errno
import os
import select
import struct
import time

IN_ATTRIB = 0x00000004
IN_Q_OVERFLOW = 0x00004000      # events were lost: report a change to be safe
_EVENT = struct.Struct("iIII")  # struct inotify_event: wd, mask, cookie, len (then the name)

_libc: ctypes.CDLL | None = None


def _lib() -> ctypes.CDLL:
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)  # libc is already loaded in every Python process
    return _libc


def touch(path: str) -> None:
    """Tell every DirWatch on path's directory that `path` changed (an mtime update: IN_ATTRIB)."""
    try:
        os.utime(path)
    except OSError:
        pass  # not there (yet): nobody can be waiting for it


class DirWatch:
    """Reports IN_ATTRIB on any of `names` in `directory`; use as a context manager."""

    def __init__(self, directory: str, names: set[str]) -> None:
        lib = _lib()
        fd = lib.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if fd < 0:
            err = ctypes.get_errno()
            raise OSError(err, f"inotify_init1: {os.strerror(err)}")
        if lib.inotify_add_watch(fd, os.fsencode(directory), IN_ATTRIB) < 0:
            err = ctypes.get_errno()
            os.close(fd)
            raise OSError(err, f"inotify_add_watch {directory}: {os.strerror(err)}")
        self._fd = fd
        self._names = {os.fsencode(n) for n in names}
        self._poll = select.poll()
        self._poll.register(fd, select.POLLIN)

    def wait(self, timeout: float) -> bool:
        """Block until one of the names is touched (True) or `timeout` seconds pass (False)."""
        deadline = time.monotonic() + max(0.0, timeout)
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            if self._poll.poll(left * 1000) and self._drain():
                return True

    def _drain(self) -> bool:
        """Read every pending event; True when one concerns our names (or some were lost)."""
        hit = False
        while True:
            try:
                data = os.read(self._fd, 4096)
            except OSError as exc:
                if exc.errno in (errno.EAGAIN, errno.EWOULDBLOCK):
                    return hit
                raise
            off = 0
            while off < len(data):
                _, mask, _, length = _EVENT.unpack_from(data, off)
                name = data[off + _EVENT.size: off + _EVENT.size + length].rstrip(b"\0")
                off += _EVENT.size + length
                hit = hit or bool(mask & IN_Q_OVERFLOW) or name in self._names

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> "DirWatch":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
