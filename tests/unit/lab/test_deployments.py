"""Deployments in the lab, the pure part: pod names as Kubernetes makes them, the template hash,
and the plan that scales, spreads and replaces replicas."""

from __future__ import annotations

import re

from tulle.lab import deployments as d
from tulle.lab.deployments import Replica

TEMPLATE = {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "web", "image": "x"}]}}


def test_template_hash_is_stable_and_shaped_like_kubernetes():
    h = d.template_hash(TEMPLATE)
    assert h == d.template_hash({"spec": TEMPLATE["spec"], "metadata": TEMPLATE["metadata"]})   # key order
    assert re.fullmatch(f"[{d.ALPHANUMS}]{{1,10}}", h)
    changed = {**TEMPLATE, "spec": {"containers": [{"name": "web", "image": "y"}]}}
    assert d.template_hash(changed) != h
    assert d.fnv32a(b"") == 0x811C9DC5 and d.fnv32a(b"a") == 0xE40C292C      # FNV-1a test vectors
    assert d.safe_encode("0123456789") == "".join(d.ALPHANUMS[ord(c) % 27] for c in "0123456789")


def test_pod_names_fit_in_63_characters():
    assert d.pod_name("web", "7c5ddbdf54", "x8f9z") == "web-7c5ddbdf54-x8f9z"
    long = d.pod_name("a" * 60, "7c5ddbdf54", "x8f9z")
    assert len(long) == 63 and long.endswith("x8f9z") and long.startswith("a" * 58)
    suffix = d.random_suffix()
    assert len(suffix) == 5 and set(suffix) <= set(d.ALPHANUMS)


def test_pods_of_the_template_carry_its_labels_and_owner():
    deploy = {"metadata": {"name": "web", "namespace": "demo", "uid": "u-1"},
              "spec": {"replicas": 2, "template": {**TEMPLATE, "metadata": {"labels": {"app": "web"},
                                                                              "annotations": {"a": "b"}}}}}
    pod = d.pod_for(deploy, "h1", "n2", "web-h1-abcde")
    assert pod["metadata"] == {"name": "web-h1-abcde", "namespace": "demo",
                               "labels": {"app": "web", "pod-template-hash": "h1"}, "annotations": {"a": "b"},
                               "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "web",
                                                    "uid": "u-1", "controller": True, "blockOwnerDeletion": True}]}
    assert pod["spec"]["nodeName"] == "n2" and pod["spec"]["containers"] == TEMPLATE["spec"]["containers"]
    assert "nodeName" not in deploy["spec"]["template"].get("spec", {})          # the template is not changed
    assert d.owned_by(pod, deploy) and not d.owned_by(pod, {"metadata": {"uid": "u-2"}})


NODES = ["n1", "n2", "n3"]


def test_new_replicas_spread_over_the_nodes():
    plan = d.plan(3, "h", [], NODES, {"n1": 5})
    assert plan.delete == [] and sorted(plan.create_on) == NODES
    plan = d.plan(5, "h", [Replica("a", "n1", "h")], NODES, {"n1": 1})
    assert sorted(plan.create_on) == ["n1", "n2", "n2", "n3"]       # 4 more: n2, n3, then n1, n2


def test_scale_down_takes_from_the_most_crowded_node_newest_first():
    have = [Replica("a", "n1", "h", "T1"), Replica("b", "n1", "h", "T2"), Replica("c", "n2", "h", "T3"),
            Replica("d", "n3", "h", "T4")]
    assert d.plan(3, "h", have, NODES, {"n1": 2, "n2": 1, "n3": 1}).delete == ["b"]
    assert d.plan(1, "h", have, NODES, {}).delete == ["b", "d", "c"]
    assert d.plan(4, "h", have, NODES, {}) == d.Plan()


def test_a_new_template_replaces_every_old_pod():
    have = [Replica("a", "n1", "old"), Replica("b", "n2", "old"), Replica("c", "n3", "new")]
    plan = d.plan(2, "new", have, NODES, {"n1": 1, "n2": 1, "n3": 1})
    assert plan.delete == ["a", "b"] and len(plan.create_on) == 1 and plan.create_on[0] in ("n1", "n2")


def test_status_counts_ready_and_updated_replicas():
    deploy = {"metadata": {"name": "web", "uid": "u", "generation": 3}, "spec": {"replicas": 3}}
    owner = [{"kind": "Deployment", "uid": "u"}]

    def pod(h: str, ready: bool) -> dict:
        return {"metadata": {"labels": {"pod-template-hash": h}, "ownerReferences": owner},
                "status": {"conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}}
    st = d.status(deploy, [pod("h", True), pod("h", True), pod("old", False), {"metadata": {}}], "h")
    assert st["observedGeneration"] == 3 and st["replicas"] == 3 and st["updatedReplicas"] == 2
    assert st["readyReplicas"] == st["availableReplicas"] == 2 and st["unavailableReplicas"] == 1
    assert {c["type"]: c["status"] for c in st["conditions"]}["Available"] == "False"
