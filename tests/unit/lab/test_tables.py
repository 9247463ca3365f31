"""`tulle lab get` tables: kubectl's columns, cells and layout (pure)."""

from __future__ import annotations

import datetime

import pytest

from tulle.lab import tables

NOW = datetime.datetime(2024, 5, 1, 12, 0, 0, tzinfo=datetime.timezone.utc)


def ago(seconds: int) -> str:
    return (NOW - datetime.timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.mark.parametrize("seconds, text", [
    (-5, "<invalid>"), (-1, "0s"), (0, "0s"), (59, "59s"), (119, "119s"), (120, "2m"), (200, "3m20s"),
    (599, "9m59s"), (600, "10m"), (3 * 3600 - 1, "179m"), (3 * 3600, "3h"), (3 * 3600 + 300, "3h5m"),
    (8 * 3600, "8h"), (47 * 3600, "47h"), (48 * 3600, "2d"), (50 * 3600, "2d2h"), (8 * 86400, "8d"),
    (400 * 86400, "400d"), (2 * 365 * 86400, "2y"), (2 * 365 * 86400 + 86400 * 3, "2y3d"), (9 * 365 * 86400, "9y"),
])
def test_human_duration_is_kubectls(seconds, text):
    assert tables.human_duration(seconds) == text


def running_pod(name: str, ip: str, node: str, created: int, containers: int = 1, ns: str = "default") -> dict:
    names = [f"c{i}" for i in range(containers)]
    return {"metadata": {"name": name, "namespace": ns, "creationTimestamp": ago(created)},
            "spec": {"nodeName": node, "containers": [{"name": n} for n in names]},
            "status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}],
                       "containerStatuses": [{"name": n, "ready": True, "restartCount": 0,
                                              "state": {"running": {}}} for n in names]}}


def test_pods_table_and_wide_and_all_namespaces():
    pods = [running_pod("web-7c5d-x8f9z", "10.244.1.2", "n1", 65, containers=2),
            {"metadata": {"name": "new", "namespace": "demo", "creationTimestamp": ago(3)},
             "spec": {"containers": [{"name": "a"}]}, "status": {"phase": "Pending"}}]
    assert tables.render("Pod", pods, NOW) == (
        "NAME             READY   STATUS    RESTARTS   AGE\n"
        "web-7c5d-x8f9z   2/2     Running   0          65s\n"
        "new              0/1     Pending   0          3s")
    assert tables.render("Pod", pods, NOW, wide=True, all_namespaces=True) == (
        "NAMESPACE   NAME             READY   STATUS    RESTARTS   AGE   IP           NODE     NOMINATED NODE   "
        "READINESS GATES\n"
        "default     web-7c5d-x8f9z   2/2     Running   0          65s   10.244.1.2   n1       <none>           "
        "<none>\n"
        "demo        new              0/1     Pending   0          3s    <none>       <none>   <none>           "
        "<none>")


def test_pod_status_reasons():
    pod = running_pod("p", "10.0.0.1", "n1", 1)
    pod["status"]["containerStatuses"][0]["state"] = {"waiting": {"reason": "CrashLoopBackOff"}}
    assert tables.pod_status(pod) == "CrashLoopBackOff" and tables.pod_ready(pod) == "0/1"
    pod["status"]["containerStatuses"][0]["state"] = {"terminated": {"exitCode": 2}}
    assert tables.pod_status(pod) == "ExitCode:2"
    pod["metadata"]["deletionTimestamp"] = ago(0)
    assert tables.pod_status(pod) == "Terminating"


def test_services_table():
    svcs = [
        {"metadata": {"name": "web", "creationTimestamp": ago(30)},
         "spec": {"type": "ClusterIP", "clusterIP": "10.96.0.10", "clusterIPs": ["10.96.0.10"],
                  "selector": {"app": "web", "tier": "front"},
                  "ports": [{"port": 80, "protocol": "TCP"}, {"port": 53, "protocol": "UDP"}]}},
        {"metadata": {"name": "np", "creationTimestamp": ago(30)},
         "spec": {"type": "NodePort", "clusterIPs": ["10.96.0.11"], "externalIPs": ["203.0.113.9"],
                  "ports": [{"port": 80, "nodePort": 30080, "protocol": "TCP"}]}},
        {"metadata": {"name": "lb", "creationTimestamp": ago(30)},
         "spec": {"type": "LoadBalancer", "clusterIPs": ["10.96.0.12"], "ports": [{"port": 443, "nodePort": 31443}]}},
        {"metadata": {"name": "db", "creationTimestamp": ago(30)},
         "spec": {"type": "ClusterIP", "clusterIP": "None", "clusterIPs": ["None"], "ports": []}},
        {"metadata": {"name": "ext", "creationTimestamp": ago(30)},
         "spec": {"type": "ExternalName", "externalName": "example.org"}},
    ]
    assert tables.render("Service", svcs, NOW, wide=True) == (
        "NAME   TYPE           CLUSTER-IP   EXTERNAL-IP   PORT(S)         AGE   SELECTOR\n"
        "web    ClusterIP      10.96.0.10   <none>        80/TCP,53/UDP   30s   app=web,tier=front\n"
        "np     NodePort       10.96.0.11   203.0.113.9   80:30080/TCP    30s   <none>\n"
        "lb     LoadBalancer   10.96.0.12   <pending>     443:31443/TCP   30s   <none>\n"
        "db     ClusterIP      None         <none>        <none>          30s   <none>\n"
        "ext    ExternalName   <none>       example.org   <none>          30s   <none>")
    lb = svcs[2]
    lb["status"] = {"loadBalancer": {"ingress": [{"ip": "198.51.100.200"}, {"ip": "198.51.100.201"}]}}
    assert tables.external_ip(lb) == "198.51.100.20..." and tables.external_ip(lb, wide=True) == \
        "198.51.100.200,198.51.100.201"


def test_endpoint_slices_deployments_and_the_rest():
    es = {"metadata": {"name": "web-abcde", "creationTimestamp": ago(5)}, "addressType": "IPv4",
          "ports": [{"name": "http", "port": 8080}, {"name": "dns", "port": 5353}],
          "endpoints": [{"addresses": [f"10.244.{i}.2"]} for i in range(1, 6)]}
    empty = {"metadata": {"name": "none", "creationTimestamp": ago(5)}, "addressType": "IPv4"}
    assert tables.render("EndpointSlice", [es, empty], NOW) == (
        "NAME        ADDRESSTYPE   PORTS       ENDPOINTS                                      AGE\n"
        "web-abcde   IPv4          8080,5353   10.244.1.2,10.244.2.2,10.244.3.2 + 2 more...   5s\n"
        "none        IPv4          <unset>     <unset>                                        5s")
    deploy = {"metadata": {"name": "web", "creationTimestamp": ago(700)},
              "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}},
                       "template": {"spec": {"containers": [{"name": "web", "image": "srv"},
                                                            {"name": "side", "image": "x"}]}}},
              "status": {"readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2}}
    assert tables.render("Deployment", [deploy], NOW, wide=True) == (
        "NAME   READY   UP-TO-DATE   AVAILABLE   AGE   CONTAINERS   IMAGES   SELECTOR\n"
        "web    2/3     3            2           11m   web,side     srv,x    app=web")
    assert tables.render("Namespace", [{"metadata": {"name": "demo", "creationTimestamp": ago(1)},
                                        "status": {"phase": "Active"}}], NOW) == \
        "NAME   STATUS   AGE\ndemo   Active   1s"
    netpol = {"metadata": {"name": "deny", "creationTimestamp": ago(1)}, "spec": {"podSelector": {}}}
    allow = {"metadata": {"name": "allow", "creationTimestamp": ago(1)}, "spec": {"podSelector": {
        "matchLabels": {"app": "web"}, "matchExpressions": [{"key": "env", "operator": "In", "values": ["b", "a"]},
                                                            {"key": "canary", "operator": "DoesNotExist"}]}}}
    assert tables.render("NetworkPolicy", [netpol, allow], NOW) == (
        "NAME    POD-SELECTOR                   AGE\n"
        "deny    <none>                         1s\n"
        "allow   app=web,!canary,env in (a,b)   1s")
    ing = {"metadata": {"name": "web", "creationTimestamp": ago(1)},
           "spec": {"ingressClassName": "tulle", "tls": [{}], "rules": [{"host": "a.example"}, {}]}}
    assert tables.render("Ingress", [ing], NOW) == (
        "NAME   CLASS   HOSTS       ADDRESS   PORTS     AGE\n"
        "web    tulle   a.example             80, 443   1s")
    secret = {"metadata": {"name": "tls", "creationTimestamp": ago(1)}, "type": "kubernetes.io/tls",
              "data": {"tls.crt": "", "tls.key": ""}}
    assert tables.render("Secret", [secret], NOW) == \
        "NAME   TYPE                DATA   AGE\ntls    kubernetes.io/tls   2      1s"
    lease = {"metadata": {"name": "tulle-controllers", "creationTimestamp": ago(1)}, "spec": {"holderIdentity": "n2"}}
    assert tables.render("Lease", [lease], NOW) == \
        "NAME                HOLDER   AGE\ntulle-controllers   n2       1s"


def test_selector_formatting_sorts_requirements_by_key():
    assert tables.format_selector({"matchLabels": {"b": "2", "a": "1"},
                                   "matchExpressions": [{"key": "c", "operator": "Exists"},
                                                        {"key": "aa", "operator": "NotIn", "values": ["x"]}]}) == \
        "a=1,aa notin (x),b=2,c"
    assert tables.format_selector(None) == tables.format_labels({}) == "<none>"
