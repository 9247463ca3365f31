"""The nft seam: a Runner applies transactions and lists tables. `Libnft` is the
kernel through libnftables; `tulle.kernel.nft.fake.FakeNft` is the in-memory one.

The JSON goes to libnftables (the library the `nft` command is a thin wrapper
of, loaded with ctypes) rather than to an `nft -j -f -` child: the same
transactions and the same kernel commit, without ~10 ms of process start and
JSON set-up per call — an agent-mode CNI ADD makes two of these calls. Each
call uses a fresh context made on the calling thread, so its netlink socket
belongs to that thread's network namespace (see netns.run_in); one lock
serialises calls, as libnftables keeps some global state.
"""

from __future__ import annotations

import ctypes
import errno
import json
import threading
from typing import Protocol

from tulle.errors import KernelError
from tulle.kernel.nft.transaction import Transaction

LIBRARY = "libnftables.so.1"
OUTPUT_HANDLE = 1 << 3   # enum nft_output_flags (nftables/libnftables.h)
OUTPUT_JSON = 1 << 4     # JSON output; also makes the library read JSON input

# nft's messages carry strerror() (or, for checks nft makes itself, words of its own);
# callers get the errno back, as FakeNft gives it.
ERRNOS = {"File exists": errno.EEXIST, "No such file or directory": errno.ENOENT,
          "Device or resource busy": errno.EBUSY, "Operation not supported": errno.EOPNOTSUPP,
          "Invalid argument": errno.EINVAL, "interval overlaps": errno.EEXIST,
          "conflicting intervals": errno.EEXIST, "element does not exist": errno.ENOENT}


class Runner(Protocol):
    """Where transactions go: the kernel of the calling thread's netns, or a fake."""

    def run(self, tx: Transaction) -> None:
        """Apply all of tx or nothing; KernelError (with errno when known) on failure."""

    def list_table(self, family: str, table: str) -> list[dict] | None:
        """The table as `nft -j list table` gives it (metainfo first), None when it does not exist."""

    def list_tables(self) -> list[tuple[str, str]]:
        """(family, name) of every table."""

    def dump(self, family: str | None = None, table: str | None = None) -> str:
        """The text of `nft list ruleset` (or `nft list table FAMILY TABLE`)."""


def failure(what: str, message: str, details: str = "") -> KernelError:
    """A KernelError with the errno of the first failure nft reports."""
    found = sorted((message.find(text), n) for text, n in ERRNOS.items() if text in message)
    return KernelError(f"{what} failed: {message}", details=details, errno=found[0][1] if found else 0)


class _Lib:
    """The few libnftables calls tulle needs, bound once per process."""

    def __init__(self) -> None:
        try:
            lib = ctypes.CDLL(LIBRARY)
        except OSError as exc:
            raise KernelError(f"cannot load {LIBRARY} (Debian package libnftables1, installed with "
                              f"nftables): {exc}") from None
        vp = ctypes.c_void_p
        for name, res, args in (("nft_ctx_new", vp, [ctypes.c_uint32]), ("nft_ctx_free", None, [vp]),
                                ("nft_ctx_output_set_flags", None, [vp, ctypes.c_uint]),
                                ("nft_ctx_buffer_output", ctypes.c_int, [vp]),
                                ("nft_ctx_buffer_error", ctypes.c_int, [vp]),
                                ("nft_ctx_get_output_buffer", ctypes.c_char_p, [vp]),
                                ("nft_ctx_get_error_buffer", ctypes.c_char_p, [vp]),
                                ("nft_run_cmd_from_buffer", ctypes.c_int, [vp, ctypes.c_char_p])):
            fn = getattr(lib, name)
            fn.restype, fn.argtypes = res, args
        self.lib = lib

    def run(self, command: str, flags: int) -> tuple[int, str, str]:
        """(rc, output, error text) of one command or JSON batch in the calling thread's netns."""
        lib = self.lib
        ctx = lib.nft_ctx_new(0)
        if not ctx:
            raise KernelError("libnftables: cannot create a context")
        try:
            lib.nft_ctx_output_set_flags(ctx, flags)
            lib.nft_ctx_buffer_output(ctx)
            lib.nft_ctx_buffer_error(ctx)
            rc = lib.nft_run_cmd_from_buffer(ctx, command.encode())
            out = (lib.nft_ctx_get_output_buffer(ctx) or b"").decode()
            err = (lib.nft_ctx_get_error_buffer(ctx) or b"").decode()
            return rc, out, err
        finally:
            lib.nft_ctx_free(ctx)


class Libnft:
    """The kernel's nftables in the calling thread's netns, through libnftables."""

    _lib: _Lib | None = None
    _lock = threading.Lock()

    def _run(self, command: str, flags: int = OUTPUT_JSON | OUTPUT_HANDLE) -> tuple[int, str, str]:
        with Libnft._lock:
            if Libnft._lib is None:
                Libnft._lib = _Lib()
            return Libnft._lib.run(command, flags)

    def run(self, tx: Transaction) -> None:
        if tx.empty():
            return
        payload = json.dumps(tx.to_json())
        rc, out, err = self._run(payload)
        if rc != 0:
            raise failure(f"nftables transaction on {tx.family} {tx.table}", err.strip() or out.strip(), payload)

    def list_table(self, family: str, table: str) -> list[dict] | None:
        rc, out, err = self._run(f"list table {family} {table}")
        if rc != 0:
            if "No such file or directory" in err:
                return None
            raise failure(f"listing nft table {family} {table}", err.strip())
        return json.loads(out)["nftables"]

    def list_tables(self) -> list[tuple[str, str]]:
        rc, out, err = self._run("list tables")
        if rc != 0:
            raise failure("listing nft tables", err.strip())
        return [(o["table"]["family"], o["table"]["name"])
                for o in json.loads(out)["nftables"] if "table" in o]

    def dump(self, family: str | None = None, table: str | None = None) -> str:
        command = f"list table {family} {table}" if table else f"list ruleset {family or ''}".strip()
        rc, out, err = self._run(command, flags=0)
        if rc != 0:
            raise failure(f"nft {command}", err.strip())
        return out
