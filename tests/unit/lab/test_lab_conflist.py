"""A lab node's conflist speaks CNI 1.1.0, so `lab gc` can send GC through it, and every plugin
in it forwards to the node's agent (a standalone portmap costs an interpreter and its imports
on every ADD and DEL); no root."""

from __future__ import annotations

import pytest

from tulle.lab import nodes, topology


@pytest.mark.parametrize("backend", ["vxlan", "bgp"])
def test_every_plugin_forwards_to_the_nodes_agent_and_gc_is_allowed(backend):
    plan = topology.plan("a", backend=backend)
    conf = nodes.conflist_for(plan, plan.nodes[1])
    assert conf["cniVersion"] == "1.1.0"
    assert {p["agentSocket"] for p in conf["plugins"]} == {"/run/tulle/labs/a/n2/agent.sock"}
    assert conf["plugins"][-1] == {"type": "portmap", "capabilities": {"portMappings": True},
                                   "agentSocket": "/run/tulle/labs/a/n2/agent.sock"}
