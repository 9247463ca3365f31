"""`tulle demo podman`: podman on tulle's CNI plugins, inside a sandbox netns.

Two busybox containers get their network from tulle (bridge + host-local,
portmap, firewall, tuning), ping each other, talk TCP, and one publishes a port
that answers from the sandbox host and from a client netns beside it. Then
`podman rm -f` must leave nothing of them behind. Every step prints what it
showed; the root network namespace is never touched.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from typing import Callable

from tulle.cni.install import install
from tulle.demo import checks, image
from tulle.demo.podman import Container, Sandbox
from tulle.errors import TulleError
from tulle.kernel import netns

HTTPD = ("httpd", "-f", "-p", "80", "-h", "/www")
REQUEST = b"GET / HTTP/1.0\r\n\r\n"


class DemoFailed(TulleError):
    """A demo step did not show what it should."""


def _ping(sb: Sandbox, src: Container, dst: Container) -> str:
    proc = sb.exec(src.name, "ping", "-c", "2", "-W", "2", dst.ip)
    if proc.returncode != 0:
        raise DemoFailed(f"{src.name} cannot ping {dst.name} ({dst.ip}): {proc.stdout.decode()[-200:]}")
    lines = proc.stdout.decode().splitlines()
    return next((line for line in lines if "packets transmitted" in line), lines[-1]).strip()


def _tcp(sb: Sandbox, src: Container, dst: Container) -> str:
    proc = sb.exec(src.name, "nc", "-w", "3", dst.ip, "80", input=REQUEST)
    body = proc.stdout.partition(b"\r\n\r\n")[2]
    if body != image.PAGE:
        raise DemoFailed(f"{src.name} -> {dst.name}:80 over TCP gave {proc.stdout[:120]!r}")
    return body.decode().strip()


def _published(ns: str, host: str, port: int) -> str:
    try:
        body = checks.http_get(ns, host, port)
    except OSError as exc:
        raise DemoFailed(f"published port {host}:{port} did not answer: {exc}") from None
    if body != image.PAGE:
        raise DemoFailed(f"published port {host}:{port} answered {body[:80]!r}")
    return body.decode().strip()


def run_demo(plugin_dir: str | None = None, say: Callable[[str], None] = print) -> int:
    """Run the demo; 0 when every step showed what it should. `plugin_dir`
    defaults to tulle's executables, freshly installed in a temp dir."""
    tag = f"{os.getpid() % 100000:05d}"
    with contextlib.ExitStack() as stack:
        root = tempfile.mkdtemp(prefix="tulle-demo-")
        stack.callback(shutil.rmtree, root, True)
        host_name, client_name = f"tulle-demo{tag}-host", f"tulle-demo{tag}-client"
        host = netns.create(host_name)
        stack.callback(netns.remove, host_name)
        client = netns.create(client_name)
        stack.callback(netns.remove, client_name)
        if plugin_dir is None:
            plugin_dir = os.path.join(root, "cni-bin")
            install(plugin_dir)
        sb = Sandbox(host, os.path.join(root, "podman"), plugin_dir)
        stack.callback(sb.close)

        say("tulle podman demo")
        say(f"  sandbox host netns  {host} (podman runs here; the root netns is untouched)")
        say(f"  client netns        {client} ({checks.CLIENT_ADDR}, linked to the sandbox)")
        say(f"  CNI plugins         {plugin_dir}")
        say(f"  network             {sb.network} {sb.subnet}: bridge + host-local, portmap, firewall, tuning")
        try:
            sb.setup()
            checks.wire_client(host, client)
            a = sb.run("web-a", *HTTPD)
            say(f"[1] podman run -d web-a (busybox httpd)             -> {a.ip}")
            b = sb.run("web-b", *HTTPD, publish=("8080:80",))
            say(f"[2] podman run -d -p 8080:80 web-b (busybox httpd)  -> {b.ip}")
            say(f"[3] web-a ping web-b: {_ping(sb, a, b)}")
            say(f"[4] web-b ping web-a: {_ping(sb, b, a)}")
            say(f"[5] web-a -> web-b:80 over TCP (busybox nc): {_tcp(sb, a, b)!r}")
            say(f"[6] web-b -> web-a:80 over TCP (busybox nc): {_tcp(sb, b, a)!r}")
            gateway = sb.subnet.rsplit(".", 1)[0] + ".1"
            say(f"[7] sandbox host -> {gateway}:8080 (published port): {_published(host, gateway, 8080)!r}")
            outside = checks.SANDBOX_ADDR.split("/")[0]
            say(f"[8] client netns -> {outside}:8080 (published port): {_published(client, outside, 8080)!r}")
            sb.remove(a.name, b.name)
            sb.wait_quiet()
            say("[9] podman rm -f web-a web-b")
            pods = [checks.Attached(c.id, c.ip) for c in (a, b)]
            left = checks.leftovers(host, sb.network, sb.lease_dir, pods)
            left += [f"netns /run/netns/{n}" for n in sb.new_podman_netns()]
            left += [f"CNI result cache {n}" for n in sb.cni_results()]
            if left:
                raise DemoFailed("left behind after podman rm -f:\n    " + "\n    ".join(left))
            say("[10] nothing left of the pods: no lease, veth, qdisc, nft rule or chain, podman netns")
            for line in checks.nft_summary(host):
                say(f"     nft table kept in the sandbox (shared by the network): {line}")
        except TulleError as exc:
            say(f"DEMO FAILED: {exc.msg}")
            return 1
    say("DEMO OK (sandbox, podman state and temp files removed)")
    return 0
