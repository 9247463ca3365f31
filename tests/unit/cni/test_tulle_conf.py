"""The fabric plugin's pure parts: subnet.env parsing and the generated
delegate config (no kernel, no root)."""

from __future__ import annotations

import ipaddress
import json

import pytest

from tulle.cni.env import Env
from tulle.cni.plugins.main import tulle
from tulle.cni.skel import Call, handle
from tulle.errors import ConfigError

GOOD = "FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.1.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n"


def call_of(conf: dict, command: str = "ADD") -> Call:
    env = Env(command=command, container_id="c1", netns="/run/netns/x", ifname="eth0", path=["/opt/cni/bin"])
    return Call(env=env, conf=conf, stdin=json.dumps(conf).encode(), version=conf["cniVersion"])


def base(**fields) -> dict:
    return {"cniVersion": "1.0.0", "name": "tn", "type": "tulle", "dataDir": "/d", **fields}


def test_parse_subnet_env():
    env = tulle.parse_subnet_env(GOOD)
    assert env.network == ipaddress.ip_network("10.244.0.0/16")
    assert env.subnet == ipaddress.ip_interface("10.244.1.1/24")
    assert env.mtu == 1450 and env.ipmasq is True


def test_parse_subnet_env_tolerates_comments_quotes_and_extra_keys():
    text = "# written by tulle\n\nFLANNEL_NETWORK='10.244.0.0/16'\nFLANNEL_SUBNET=\"10.244.7.1/24\"\n" \
           "FLANNEL_MTU=1400\nFLANNEL_IPMASQ=False\nFLANNEL_IPV6_NETWORK=fd00::/48\n"
    env = tulle.parse_subnet_env(text)
    assert str(env.subnet.network) == "10.244.7.0/24" and env.ipmasq is False and env.mtu == 1400


@pytest.mark.parametrize("replace, needle", [
    (("FLANNEL_MTU=1450\n", ""), "missing FLANNEL_MTU"),
    (("FLANNEL_NETWORK=10.244.0.0/16", "FLANNEL_NETWORK=ten"), "FLANNEL_NETWORK"),
    (("FLANNEL_SUBNET=10.244.1.1/24", "FLANNEL_SUBNET=10.9.1.1/24"), "not inside"),
    (("FLANNEL_SUBNET=10.244.1.1/24", "FLANNEL_SUBNET=fd00::1/64"), "not inside"),
    (("FLANNEL_MTU=1450", "FLANNEL_MTU=20"), "FLANNEL_MTU"),
    (("FLANNEL_IPMASQ=true", "FLANNEL_IPMASQ=yes"), "FLANNEL_IPMASQ"),
    (("FLANNEL_MTU=1450", "FLANNEL_MTU 1450"), "line 3"),
])
def test_parse_subnet_env_errors_name_the_key(replace, needle):
    with pytest.raises(ConfigError) as err:
        tulle.parse_subnet_env(GOOD.replace(*replace))
    assert needle in err.value.msg


def test_build_delegate_defaults():
    call = call_of(base())
    d = tulle.build_delegate(tulle.load_conf(call), tulle.parse_subnet_env(GOOD), call)
    assert d == {
        "cniVersion": "1.0.0", "name": "tn", "type": "bridge", "bridge": "tulle0", "isGateway": True,
        "mtu": 1450, "ipMasq": False,
        "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.244.1.0/24"}]],
                 "routes": [{"dst": "10.244.0.0/16"}], "dataDir": "/d/networks"},
    }


def test_build_delegate_overrides_win_and_capabilities_pass_through():
    conf = base(delegate={"bridge": "br9", "hairpinMode": True, "mtu": 1400, "ipMasq": True,
                          "ipam": {"dataDir": "/elsewhere"}},
                runtimeConfig={"portMappings": [{"hostPort": 80, "containerPort": 8080, "protocol": "tcp"}]})
    call = call_of(conf)
    d = tulle.build_delegate(tulle.load_conf(call), tulle.parse_subnet_env(GOOD.replace("true", "false")), call)
    assert d["bridge"] == "br9" and d["hairpinMode"] is True and d["mtu"] == 1400 and d["ipMasq"] is True
    assert d["ipam"]["dataDir"] == "/elsewhere" and d["ipam"]["type"] == "host-local"
    assert d["runtimeConfig"] == conf["runtimeConfig"]


def test_build_delegate_other_type_gets_no_bridge_fields():
    call = call_of(base(delegate={"type": "ptp"}))
    d = tulle.build_delegate(tulle.load_conf(call), tulle.parse_subnet_env(GOOD), call)
    assert d["type"] == "ptp" and "bridge" not in d and "isGateway" not in d
    assert d["mtu"] == 1450 and d["ipam"]["ranges"] == [[{"subnet": "10.244.1.0/24"}]]


@pytest.mark.parametrize("fields, needle", [
    ({"delegate": "bridge"}, "delegate"),
    ({"delegate": {"type": 3}}, "delegate.type"),
    ({"delegate": {"ipam": []}}, "delegate.ipam"),
    ({"subnetFile": 5}, "subnetFile"),
])
def test_bad_config_is_code_7(fields, needle):
    conf = base(**fields)
    out, code = handle(tulle.PLUGIN, {"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "c1",
                                      "CNI_NETNS": "/run/netns/x", "CNI_IFNAME": "eth0"},
                       json.dumps(conf).encode())
    err = json.loads(out)
    assert code == 1 and err["code"] == 7 and needle in err["msg"]


def test_missing_subnet_file_is_code_11_and_status_50(tmp_path):
    conf = base(subnetFile=str(tmp_path / "nope.env"), dataDir=str(tmp_path / "d"), cniVersion="1.1.0")
    out, code = handle(tulle.PLUGIN, {"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "c1",
                                      "CNI_NETNS": "/run/netns/x", "CNI_IFNAME": "eth0"},
                       json.dumps(conf).encode())
    assert code == 1 and json.loads(out)["code"] == 11
    out, code = handle(tulle.PLUGIN, {"CNI_COMMAND": "STATUS"}, json.dumps(conf).encode())
    assert code == 1 and json.loads(out)["code"] == 50
    assert not (tmp_path / "d").exists()


def test_del_with_nothing_saved_and_no_subnet_file_succeeds(tmp_path):
    conf = base(subnetFile=str(tmp_path / "nope.env"), dataDir=str(tmp_path / "d"))
    out, code = handle(tulle.PLUGIN, {"CNI_COMMAND": "DEL", "CNI_CONTAINERID": "c1", "CNI_IFNAME": "eth0"},
                       json.dumps(conf).encode())
    assert (out, code) == (b"", 0)


def test_saved_configs_round_trip_and_filter_by_network(tmp_path):
    conf = tulle.TulleConf(network="tn", data_dir=str(tmp_path))
    path = tulle.saved_path(conf, "c1", "eth0")
    tulle.save(path, {"type": "bridge", "name": "tn", "prevResult": {"x": 1}})
    tulle.save(tulle.saved_path(conf, "c2", "eth0"), {"type": "bridge", "name": "other"})
    (tmp_path / "broken-eth0").write_text("{")
    (tmp_path / "networks").mkdir()
    assert tulle.load_saved(path) == {"type": "bridge", "name": "tn"}  # prevResult is never saved
    assert tulle.saved_of_network(conf) == {"c1-eth0": {"type": "bridge", "name": "tn"}}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken-eth0", "c1-eth0", "c2-eth0", "networks"]
    with pytest.raises(ConfigError):
        tulle.load_saved(str(tmp_path / "broken-eth0"))
