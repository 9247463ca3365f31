"""The node's BIRD 2 daemon: started by the agent, reconfigured, queried, stopped.

BIRD runs in the foreground (`-f`) as a child of the agent, so it lives in the
agent's network namespace (the node's), with every file in the agent's state dir:
  bird.conf (the config), bird.ctl (control socket), bird.pid, bird.log (its output).
A BIRD left running by a previous agent (the agent was killed) is adopted when its
pid file names a live `bird` answering on our socket.

Changes never restart BIRD: a new config is first checked with `bird -p`, then
written in place and loaded with `birdc configure` (sessions whose definition did
not change stay up). `graceful_stop` shuts BIRD down with `birdc graceful restart`:
sessions close without a Cease notification, so the peers keep our routes as stale
for the graceful restart time, and the kernel keeps its routes (`persist`). A BIRD
that was killed leaves the same state (its sessions close without a Cease, its
kernel routes stay). Either way the next start uses `-R` (graceful restart
recovery): the kernel table is left alone until the sessions are back — BIRD waits
for a peer's End-of-RIB when the peer announced graceful restart and is not
restarting itself — or `graceful restart wait` passes, so nothing is flushed meanwhile.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from dataclasses import dataclass, field

from tulle.agent import log
from tulle.errors import ConfigError, KernelError, TulleError

BIRD = "bird"
BIRDC = "birdc"
CLI_TIMEOUT = 10.0


@dataclass(frozen=True)
class Protocol:
    name: str
    proto: str          # Device, Direct, Kernel, Static, BGP
    table: str
    state: str          # up, start, down, ...
    since: str
    info: str           # BGP: Established, Active, Connect, Idle ... (+ last error)

    @property
    def established(self) -> bool:
        return self.proto == "BGP" and self.info.split()[:1] == ["Established"]


@dataclass(frozen=True)
class RouteEntry:
    prefix: str
    kind: str                   # unicast, blackhole, unreachable ...
    protocol: str               # the BIRD protocol it came from
    primary: bool               # BIRD's best route for the prefix ("*")
    via: tuple[str, ...] = field(default=())   # next hop addresses
    dev: str = ""


def parse_protocols(text: str) -> list[Protocol]:
    """`birdc show protocols` → one Protocol per table row."""
    out: list[Protocol] = []
    for line in text.splitlines():
        if not line.strip() or line.startswith(("BIRD ", "Name ")):
            continue
        parts = line.split(None, 5)
        if len(parts) < 5:
            continue
        out.append(Protocol(parts[0], parts[1], parts[2], parts[3], parts[4],
                            parts[5].strip() if len(parts) > 5 else ""))
    return out


_ROUTE = re.compile(r"^(?P<prefix>\S+/\d+)?\s+(?P<kind>\w+)\s+\[(?P<proto>\S+)[^\]]*\]\s*(?P<star>\*)?")
_VIA = re.compile(r"^\s+via\s+(?P<via>\S+)\s+on\s+(?P<dev>\S+)")
_DEV = re.compile(r"^\s+dev\s+(?P<dev>\S+)")


def parse_routes(text: str) -> list[RouteEntry]:
    """`birdc show route` → entries (alternatives of a prefix repeat its prefix)."""
    out: list[RouteEntry] = []
    prefix = ""
    for line in text.splitlines():
        if line.startswith(("BIRD ", "Table ")) or not line.strip():
            continue
        m = _ROUTE.match(line)
        if m:
            prefix = m.group("prefix") or prefix
            out.append(RouteEntry(prefix, m.group("kind"), m.group("proto"), bool(m.group("star"))))
            continue
        if not out:
            continue
        last = out[-1]
        m = _VIA.match(line)
        if m:
            out[-1] = RouteEntry(last.prefix, last.kind, last.protocol, last.primary,
                                 last.via + (m.group("via"),), m.group("dev"))
            continue
        m = _DEV.match(line)
        if m:
            out[-1] = RouteEntry(last.prefix, last.kind, last.protocol, last.primary, last.via, m.group("dev"))
    return out


def check_config(text: str, path: str) -> None:
    """ConfigError (with BIRD's message) unless `bird -p` accepts `text` (written to `path`)."""
    with open(path, "w") as f:
        f.write(text)
    try:
        proc = subprocess.run([BIRD, "-p", "-c", path], capture_output=True, text=True, timeout=CLI_TIMEOUT)
    except FileNotFoundError:
        raise TulleError("bird is not installed (Debian package bird2)") from None
    if proc.returncode != 0:
        raise ConfigError(f"generated BIRD config rejected by `bird -p`: {(proc.stderr or proc.stdout).strip()}")


class Bird:
    """One BIRD daemon whose files live in `state_dir`."""

    def __init__(self, state_dir: str) -> None:
        self.dir = state_dir
        self.conf = os.path.join(state_dir, "bird.conf")
        self.ctl = os.path.join(state_dir, "bird.ctl")
        self.pidfile = os.path.join(state_dir, "bird.pid")
        self.logfile = os.path.join(state_dir, "bird.log")
        self.marker = os.path.join(state_dir, "bird.graceful")
        self._child: subprocess.Popen | None = None

    # -- state -----------------------------------------------------------------

    def pid(self) -> int | None:
        """The running BIRD's pid (ours or adopted), None when none runs."""
        if self._child is not None:
            if self._child.poll() is None:
                return self._child.pid
            self._child = None
        try:
            with open(self.pidfile) as f:
                pid = int(f.read().strip() or 0)
        except (OSError, ValueError):
            return None
        if pid <= 0:
            return None
        try:
            with open(f"/proc/{pid}/comm") as f:
                if f.read().strip() != BIRD:
                    return None
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if self.ctl.encode() not in f.read().split(b"\0"):
                    return None
        except OSError:
            return None
        return pid

    def running(self) -> bool:
        return self.pid() is not None

    def current_config(self) -> str | None:
        try:
            with open(self.conf) as f:
                return f.read()
        except OSError:
            return None

    # -- control -----------------------------------------------------------------

    def birdc(self, *args: str, timeout: float = CLI_TIMEOUT) -> str:
        try:
            proc = subprocess.run([BIRDC, "-s", self.ctl, *args], capture_output=True, text=True,
                                  timeout=timeout)
        except FileNotFoundError:
            raise TulleError("birdc is not installed (Debian package bird2)") from None
        except subprocess.TimeoutExpired:
            raise KernelError(f"birdc {' '.join(args)}: no answer within {timeout}s") from None
        if proc.returncode != 0:
            raise KernelError(f"birdc {' '.join(args)} failed: {(proc.stderr or proc.stdout).strip()}")
        return proc.stdout

    def apply(self, text: str, recover: bool = False) -> str:
        """Make BIRD run `text`: "unchanged", "configured" (birdc configure) or "started"
        (with `recover`, or after a graceful stop, in graceful restart recovery)."""
        os.makedirs(self.dir, exist_ok=True)
        running = self.running()
        if running and self.current_config() == text:
            return "unchanged"
        candidate = f"{self.conf}.new"
        check_config(text, candidate)
        os.replace(candidate, self.conf)
        if not running:
            self.start(recover)
            return "started"
        reply = self.birdc("configure")
        if "Reconfigured" not in reply and "Reconfiguration" not in reply:
            raise KernelError(f"birdc configure: {reply.strip()}")
        log.info("bird reconfigured", pid=self.pid())
        return "configured"

    def start(self, recover: bool = False) -> int:
        """Start BIRD on the config file (or adopt a running one); returns its pid.

        `-R` (recovery) when asked — the caller saw routes of a BIRD that died — or
        after a graceful stop (the marker): the routes it left stay until the sessions
        have brought them back."""
        pid = self.pid()
        if pid is not None:
            log.info("bird already running; adopted", pid=pid)
            return pid
        with_recovery = recover or os.path.exists(self.marker)
        cmd = [BIRD, "-f", "-c", self.conf, "-s", self.ctl, "-P", self.pidfile]
        if with_recovery:
            cmd.append("-R")
        with open(self.logfile, "ab") as out:
            try:
                self._child = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                                               close_fds=True)
            except FileNotFoundError:
                raise TulleError("bird is not installed (Debian package bird2)") from None
        if os.path.exists(self.marker):
            os.unlink(self.marker)
        deadline = time.monotonic() + 5.0
        while True:
            if self._child.poll() is not None:
                code = self._child.returncode
                self._child = None
                raise KernelError(f"bird exited at start (code {code}); see {self.logfile}")
            try:
                self.birdc("show", "status", timeout=2.0)
                break
            except KernelError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise KernelError(f"bird does not answer on {self.ctl}; see {self.logfile}") from None
                time.sleep(0.05)
        log.info("bird started", pid=self._child.pid, recovery=with_recovery)
        return self._child.pid

    def graceful_stop(self, timeout: float = 5.0) -> None:
        """Stop BIRD keeping its routes at the peers (stale) and in the kernel (persist)."""
        pid = self.pid()
        if pid is None:
            return
        try:
            self.birdc("graceful", "restart")
            with open(self.marker, "w"):
                pass
        except TulleError as exc:
            log.warning("bird graceful restart refused; stopping it", error=exc.msg)
        self._wait_or_kill(pid, timeout)

    def stop(self, timeout: float = 5.0) -> None:
        """Stop BIRD (SIGTERM: sessions close with a Cease, the peers withdraw our routes)."""
        pid = self.pid()
        if pid is None:
            return
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        self._wait_or_kill(pid, timeout)
        if os.path.exists(self.marker):
            os.unlink(self.marker)

    def _wait_or_kill(self, pid: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while self._alive(pid):
            if time.monotonic() > deadline:
                log.warning("bird did not stop in time; killing it", pid=pid)
                os.kill(pid, signal.SIGKILL)
                deadline = time.monotonic() + timeout
            time.sleep(0.05)
        self._child = None
        log.info("bird stopped", pid=pid)

    def _alive(self, pid: int) -> bool:
        if self._child is not None and self._child.pid == pid:
            return self._child.poll() is None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        try:  # a zombie we cannot reap counts as gone
            with open(f"/proc/{pid}/stat") as f:
                return f.read().rsplit(")", 1)[1].split()[0] != "Z"
        except OSError:
            return False

    # -- status ------------------------------------------------------------------

    def protocols(self) -> list[Protocol]:
        return parse_protocols(self.birdc("show", "protocols"))

    def routes(self) -> list[RouteEntry]:
        return parse_routes(self.birdc("show", "route"))
