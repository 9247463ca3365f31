"""Malformed input gets the spec's code and a message, never 999 with a traceback
(issue 10, item 5): what the runtime sends on stdin, in CNI_* variables, in a
prevResult, or what a delegated plugin prints.

No test here can reach the kernel even if the check it covers regressed: the
decoding cases run before any plugin code, the plugins that would act on the
host are given a netns path that does not exist, and portmap is tested through
its pure config reader.
"""

from __future__ import annotations

import json
import os
import stat

import pytest

from tulle.cni import chained, forward, sandbox
from tulle.cni.conf import MAX_DEPTH, Fields, decode, load_json
from tulle.cni.env import Env, parse_env, validate_ifname
from tulle.cni.errors import CNIError
from tulle.cni.plugins import load
from tulle.cni.plugins.meta import portmap
from tulle.cni.skel import Call, Plugin, handle
from tulle.cni.types import Result
from tulle.errors import ConfigError
from tulle.kernel import netns

NO_NS = "/run/netns/tulle-unit-absent"  # never exists: a plugin that got past its checks stops at 3
ENV = {"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "c1", "CNI_NETNS": NO_NS, "CNI_IFNAME": "eth0",
       "CNI_PATH": "/nonexistent"}
BASE = {"cniVersion": "1.0.0", "name": "net", "type": "bridge"}
PREV = {"cniVersion": "1.0.0", "interfaces": [{"name": "eth0", "sandbox": "/x"}],
        "ips": [{"address": "10.9.0.2/24", "interface": 0}]}


def run(plugin_type: str, stdin: bytes | dict, **env) -> tuple[int, dict | None]:
    data = stdin if isinstance(stdin, bytes) else json.dumps(stdin).encode()
    out, code = handle(load(plugin_type), {**ENV, **env}, data)
    return code, (json.loads(out) if out else None)


def nested(depth: int, inner: bytes = b"1") -> bytes:
    return b'{"a":' * depth + inner + b"}" * depth


# --- stdin that does not decode: 6 -----------------------------------------------------

@pytest.mark.parametrize("stdin", [
    b"[" * 100_000,
    b'{"a":' * 100_000,
    b'{"cniVersion":"1.0.0","name":"n","type":"bridge","x":' + nested(MAX_DEPTH) + b"}",
    b'{"cniVersion":"1.0.0","name":"n","type":"bridge","x":NaN}',
    b'{"cniVersion":"1.0.0","name":"n","type":"bridge","x":-Infinity}',
    b'{"cniVersion":"1.0.0","name":"n\\ud800","type":"bridge"}',      # a lone surrogate escape
    b'{"cniVersion":"1.0.0","name":"n","type":"bridge","\\udc00":1}',  # ... in a key
    b'{"cniVersion":"1.0.0","name":"n\xff","type":"bridge"}',          # not UTF-8
], ids=["100k-brackets", "100k-objects", "too-deep", "nan", "infinity", "surrogate", "surrogate-key", "latin1"])
def test_undecodable_stdin_is_6(stdin):
    code, out = run("bridge", stdin)
    assert code == 1 and out["code"] == 6 and out["msg"].startswith("failed to decode"), out


def test_check_with_a_prev_result_5000_deep_is_6():
    stdin = b'{"cniVersion":"1.0.0","name":"n","type":"bridge","prevResult":' + nested(5000) + b"}"
    code, out = run("bridge", stdin, CNI_COMMAND="CHECK")
    assert out["code"] == 6 and "nested deeper" in out["msg"], out


def test_nesting_up_to_the_limit_decodes():
    assert isinstance(load_json(b"[" * MAX_DEPTH + b"]" * MAX_DEPTH), list)
    conf = decode(b'{"a":' + b"[" * (MAX_DEPTH - 1) + b"]" * (MAX_DEPTH - 1) + b"}")
    assert isinstance(conf["a"], list)
    with pytest.raises(CNIError):
        load_json(b"[" * (MAX_DEPTH + 1) + b"]" * (MAX_DEPTH + 1))


def test_executable_answers_6_without_a_traceback(cni):
    res = cni("bridge", "ADD", b"[" * 100_000, netns=NO_NS, env={"TULLE_STANDALONE": "1"})
    assert res.error_code == 6, res.out
    assert "Traceback" not in res.stderr


def test_version_never_fails_on_malformed_stdin(cni):
    res = cni("bridge", "VERSION", b"[" * 100_000, container_id="", ifname="", env={"TULLE_STANDALONE": "1"})
    assert res.ok and "1.1.0" in res.out["supportedVersions"], (res.out, res.stderr)


def test_forwarding_reads_agent_socket_of_a_deep_config_without_crashing():
    stdin = b'{"agentSocket":"/x.sock","a":' + b"[" * 100_000
    assert forward.socket_path(stdin) == forward.DEFAULT_SOCKET
    assert json.loads(forward.error_output(11, "m", stdin))["cniVersion"] == "1.1.0"


# --- config fields: 7 ----------------------------------------------------------------

def test_empty_subnet_is_7_not_an_assertion(tmp_path):
    c = {**BASE, "type": "host-local",
         "ipam": {"type": "host-local", "dataDir": str(tmp_path), "ranges": [[{"subnet": ""}]]}}
    code, out = run("host-local", c)
    assert out["code"] == 7 and "ipam.ranges[0][0].subnet" in out["msg"], out


def test_empty_legacy_subnet_is_7_not_skipped(tmp_path):
    c = {**BASE, "type": "host-local", "ipam": {"type": "host-local", "dataDir": str(tmp_path), "subnet": "",
                                                "ranges": [[{"subnet": "10.9.0.0/24"}]]}}
    assert run("host-local", c)[1]["code"] == 7
    assert not os.listdir(tmp_path)


def test_empty_required_address_is_7():
    c = {**BASE, "type": "static", "ipam": {"type": "static", "addresses": [{"address": ""}]}}
    code, out = run("static", c)
    assert out["code"] == 7 and "ipam.addresses[0].address" in out["msg"], out


@pytest.mark.parametrize("host_ip", [5, 167772161, True, ["10.0.0.1"], "fe80::1%eth0"])
def test_portmap_host_ip_must_be_an_address_string(host_ip):
    item = {"hostPort": 8080, "containerPort": 80, "hostIP": host_ip}
    with pytest.raises(ConfigError, match=r"portMappings\[0\]\.hostIP"):
        portmap.parse_mapping(item, "runtimeConfig.portMappings[0]")


def test_portmap_host_ip_string_still_works():
    m = portmap.parse_mapping({"hostPort": 8080, "containerPort": 80, "hostIP": "198.51.100.7"}, "m")
    assert str(m.host_ip) == "198.51.100.7"


@pytest.mark.parametrize("ipam, word", [
    ({"addresses": [{"address": "10.9.0.2/24", "gateway": 167772161}]}, "ipam.addresses[0].gateway"),
    ({"addresses": [{"address": "10.9.0.2/24"}], "dns": {"nameservers": [5]}}, "ipam.dns.nameservers[0]"),
    ({"addresses": [{"address": "10.9.0.2/24"}], "dns": {"domain": 5}}, "ipam.dns.domain"),
    ({"addresses": [{"address": "10.9.0.2/24"}], "routes": [{"dst": "0.0.0.0/0", "mtu": "1400"}]},
     "ipam.routes[0].mtu"),
    ({"addresses": [{"address": "10.9.0.2/24"}], "routes": [{"dst": "0.0.0.0/0", "gw": 5}]}, "ipam.routes[0].gw"),
    ({"addresses": [{"address": "10.9.0.2/24"}], "routes": [{"gw": "10.9.0.1"}]}, "ipam.routes[0].dst"),
])
def test_wrong_types_in_ipam_are_7_naming_the_field(ipam, word):
    code, out = run("static", {**BASE, "type": "static", "ipam": {"type": "static", **ipam}})
    assert out["code"] == 7 and word in out["msg"], out


def test_conf_dns_wrong_type_is_7():
    c = {**BASE, "dns": {"nameservers": [5]}, "ipam": {"type": "static", "addresses": [{"address": "10.9.0.2/24"}]}}
    code, out = run("bridge", c)
    assert out["code"] == 7 and "dns.nameservers[0]" in out["msg"], out


def test_nul_in_a_name_field_is_7():
    code, out = run("bridge", {**BASE, "bridge": "br\u0000x"})
    assert out["code"] == 7 and "bridge" in out["msg"], out


def test_gc_attachments_are_typed():
    c = {**BASE, "cniVersion": "1.1.0", "type": "static",
         "cni.dev/valid-attachments": [{"containerID": 5, "ifname": "eth0"}]}
    code, out = run("static", c, CNI_COMMAND="GC")
    assert out["code"] == 7 and "containerID" in out["msg"], out


def test_fields_readers():
    f = Fields({"n": 5, "e": "", "s": "x", "l": ["a", 1], "z": "a\u0000b"}, "o")
    for read in (f.ip, f.cidr, f.net):
        with pytest.raises(ConfigError, match="o.n"):
            read("n")
        assert read("e") is None and read("missing") is None
        with pytest.raises(ConfigError, match="o.e is required"):
            read("e", required=True)
    with pytest.raises(ConfigError, match="must not be empty"):
        f.str("e", required=True)
    with pytest.raises(ConfigError, match=r"o.l\[1\] must be a string"):
        f.strs("l")
    with pytest.raises(ConfigError, match="NUL"):
        f.str("z")
    with pytest.raises(ConfigError) as exc:  # a huge value is not echoed whole
        Fields({"big": list(range(100_000))}, "o").str("big")
    assert len(exc.value.msg) < 200


def test_blocks_pools_refuse_integers(tmp_path):
    from tulle.cni.plugins.ipam import blocks

    c = {**BASE, "cniVersion": "1.1.0", "type": "tulle-blocks",
         "ipam": {"type": "tulle-blocks", "store": "sqlite:///nonexistent", "node": "n1", "pools": [5],
                  "blockSize": 28}}
    call = Call(env=parse_env(ENV), conf=c, stdin=b"", version="1.1.0")
    with pytest.raises(ConfigError, match=r"ipam.pools\[0\]"):
        blocks.load_conf(call, store=None)


# --- the environment: 4 and 3 -------------------------------------------------------

def test_ifname_counts_bytes_not_characters():
    assert validate_ifname("e" * 15) is None
    assert validate_ifname("é" * 7) is None              # 14 bytes
    assert "15 bytes" in validate_ifname("é" * 8)        # 8 characters, 16 bytes
    with pytest.raises(CNIError) as exc:
        parse_env({**ENV, "CNI_IFNAME": "é" * 8})
    assert exc.value.code == 4 and "CNI_IFNAME" in exc.value.msg


def test_ifname_of_undecodable_bytes_is_4():
    with pytest.raises(CNIError) as exc:
        parse_env({**ENV, "CNI_IFNAME": "eth\udcff"})  # how os.environ shows the byte 0xff
    assert exc.value.code == 4


def test_ifname_field_in_config_counts_bytes_too():
    code, out = run("bridge", {**BASE, "bridge": "é" * 8})
    assert out["code"] == 7 and "bridge" in out["msg"], out


def test_container_id_with_a_trailing_newline_is_4():
    with pytest.raises(CNIError) as exc:
        parse_env({**ENV, "CNI_CONTAINERID": "abc\n"})
    assert exc.value.code == 4


@pytest.mark.parametrize("kind", ["mnt", "uts", "pid", "user", "ipc"])
def test_a_namespace_of_another_kind_is_not_a_netns(kind):
    path = f"/proc/self/ns/{kind}"
    assert not netns.is_netns(path)
    with pytest.raises(CNIError) as exc:
        sandbox.require_netns(path)
    assert exc.value.code == 3 and "is not a network namespace" in exc.value.msg


def test_the_own_netns_is_a_netns(tmp_path):
    assert netns.is_netns("/proc/self/ns/net")
    regular = tmp_path / "f"
    regular.write_text("")
    assert not netns.is_netns(str(regular)) and not netns.is_netns("/proc/self/ns/net\0x")
    with pytest.raises(CNIError) as exc:
        sandbox.require_netns(NO_NS)
    assert exc.value.code == 3 and "does not exist" in exc.value.msg


# --- prevResult ----------------------------------------------------------------------

ECHO = Plugin(name="echo", add=chained.pass_through, delete=lambda c: None, check=lambda c: None)


def run_prev(prev: object) -> dict:
    out, code = handle(ECHO, ENV, json.dumps({**BASE, "type": "echo", "prevResult": prev}).encode())
    return json.loads(out)


@pytest.mark.parametrize("version", ["7.0.0", "0.2.0", "x", 5, ["1.0.0"]])
def test_prev_result_of_an_unknown_version_is_refused(version):
    out = run_prev({**PREV, "cniVersion": version})
    assert out["code"] == 1 and "prevResult.cniVersion" in out["msg"], out


def test_prev_result_without_a_version_is_read_as_the_reference_does():
    out = run_prev({k: v for k, v in PREV.items() if k != "cniVersion"})
    assert "code" not in out and out["ips"][0]["address"] == "10.9.0.2/24"


@pytest.mark.parametrize("change, word", [
    ({"interfaces": [{"name": 5}]}, "prevResult.interfaces[0].name"),
    ({"interfaces": [{"name": "eth0", "sandbox": ["/x"]}]}, "prevResult.interfaces[0].sandbox"),
    ({"interfaces": [{"name": "eth0", "mtu": "1500"}]}, "prevResult.interfaces[0].mtu"),
    ({"interfaces": ["eth0"]}, "prevResult.interfaces[0]"),
    ({"ips": [{"address": "10.9.0.2/24", "interface": "0"}]}, "prevResult.ips[0].interface"),
    ({"ips": [{"address": "10.9.0.2/24", "interface": True}]}, "prevResult.ips[0].interface"),
    ({"ips": [{"address": "10.9.0.2/24", "interface": -1}]}, "prevResult.ips[0].interface"),
    ({"ips": [{"address": "10.9.0.2/24", "gateway": 5}]}, "prevResult.ips[0].gateway"),
    ({"ips": [{"gateway": "10.9.0.1"}]}, "prevResult.ips[0].address"),
    ({"ips": {"address": "10.9.0.2/24"}}, "prevResult.ips"),
    ({"routes": [{"dst": "0.0.0.0/0", "table": "5"}]}, "prevResult.routes[0].table"),
    ({"dns": {"nameservers": [5]}}, "prevResult.dns.nameservers[0]"),
    ({"dns": {"nameservers": "1.1.1.1"}}, "prevResult.dns.nameservers"),
    ({"dns": []}, "prevResult.dns"),
])
def test_prev_result_fields_are_typed(change, word):
    out = run_prev({**PREV, **change})
    assert out["code"] == 7 and word in out["msg"], out


def test_a_well_formed_prev_result_still_reads_in_every_version():
    for version in ("0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"):
        r = Result.from_dict({**PREV, "cniVersion": version, "ips": [{"version": "4", "address": "10.9.0.2/24",
                              "gateway": "", "interface": 0}], "routes": [{"dst": "0.0.0.0/0", "gw": "10.9.0.1",
                              "table": 5}], "dns": {"nameservers": ["10.0.0.10"], "search": ["a"]}})
        assert r.ips[0].gateway is None and r.routes[0].table == 5 and r.dns.nameservers == ["10.0.0.10"]


# --- what a delegated plugin prints --------------------------------------------------

@pytest.mark.parametrize("printed, exit_code, command", [
    ('{"code": [1], "msg": "x"}', 1, "DEL"),
    ('{"code": true}', 1, "DEL"),
    ('"oops"', 1, "DEL"),
    ("[" * 100_000, 1, "DEL"),
    ("[" * 100_000, 0, "ADD"),
])
def test_a_delegate_printing_garbage_is_reported_not_a_crash(tmp_path, printed, exit_code, command):
    from tulle.cni import delegate

    (tmp_path / "out").write_text(printed)
    exe = tmp_path / "junk-ipam"
    exe.write_text(f"#!/bin/sh\ncat {tmp_path / 'out'}\nexit {exit_code}\n")
    exe.chmod(exe.stat().st_mode | stat.S_IXUSR)
    env = Env(command=command, container_id="c1", netns=NO_NS, ifname="eth0", path=[str(tmp_path)])
    call = Call(env=env, conf={**BASE, "ipam": {"type": "junk-ipam"}}, stdin=b"{}", version="1.0.0")
    with pytest.raises(CNIError) as exc:
        delegate.invoke(call, "junk-ipam", command)
    assert exc.value.code == 999 and "junk-ipam" in exc.value.msg
