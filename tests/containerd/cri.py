"""A CRI client, as kubelet drives a runtime: the `runtime.v1` gRPC API.

proto/cri/runtime/v1/api.proto is kubernetes/cri-api's pkg/apis/runtime/v1/api.proto at
tag v0.34.0 (the first without gogoproto imports; Apache-2.0, its header kept), unchanged.
Its Python stubs are generated at test time with grpcio-tools into a temporary directory,
so nothing generated is committed and the stubs always match the installed protobuf.
Fields newer than a runtime's API are ignored by it (proto3), so containerd 1.6 answers.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import sys
import types
from dataclasses import dataclass

PROTO_ROOT = os.path.join(os.path.dirname(__file__), "proto")
PROTO = "cri/runtime/v1/api.proto"
TIMEOUT = 60.0     # one CRI call; RunPodSandbox runs the whole conflist


def missing() -> list[str]:
    """The Python packages the stubs need that are not installed (empty: all are)."""
    return [name for name, module in (("grpcio", "grpc"), ("grpcio-tools", "grpc_tools"),
                                      ("protobuf", "google.protobuf"))
            if importlib.util.find_spec(module) is None]


def generate(out_dir: str) -> types.ModuleType:
    """Compile api.proto into `out_dir` and import it; returns the messages module
    (its `grpc` attribute holds the service stubs)."""
    from grpc_tools import protoc

    os.makedirs(out_dir, exist_ok=True)
    status = protoc.main(["protoc", f"-I{PROTO_ROOT}", f"--python_out={out_dir}",
                          f"--grpc_python_out={out_dir}", PROTO])
    if status != 0:
        raise RuntimeError(f"protoc failed on {PROTO} (exit {status})")
    sys.path.insert(0, out_dir)
    try:
        pb2 = importlib.import_module("cri.runtime.v1.api_pb2")
        pb2.grpc = importlib.import_module("cri.runtime.v1.api_pb2_grpc")
    finally:
        sys.path.remove(out_dir)
    return pb2


@dataclass
class Sandbox:
    """A pod sandbox as RunPodSandbox made it, with what PodSandboxStatus says of it."""

    id: str
    name: str
    ip: str
    pid: int            # the sandbox (pause) process, in this pid namespace

    @property
    def netns(self) -> str:
        """A path naming the pod's netns from outside containerd's mount namespace
        (the netns file containerd made lives in its private /run)."""
        return f"/proc/{self.pid}/ns/net"


class Client:
    """The calls a kubelet makes for pods with one container each, on one socket."""

    def __init__(self, api: types.ModuleType, socket: str) -> None:
        import grpc

        self.api = api
        self.channel = grpc.insecure_channel(f"unix://{socket}")
        self.runtime = api.grpc.RuntimeServiceStub(self.channel)
        self.images = api.grpc.ImageServiceStub(self.channel)

    def close(self) -> None:
        self.channel.close()

    def version(self, timeout: float = TIMEOUT):
        return self.runtime.Version(self.api.VersionRequest(), timeout=timeout)

    def image_present(self, ref: str) -> bool:
        return bool(self.images.ImageStatus(self.api.ImageStatusRequest(
            image=self.api.ImageSpec(image=ref)), timeout=TIMEOUT).image.id)

    def sandbox_config(self, name: str, cgroup_parent: str, host_ports: dict[int, int] | None = None,
                       annotations: dict[str, str] | None = None):
        """A PodSandboxConfig as kubelet writes it (metadata, DNS, cgroup parent, ports)."""
        api = self.api
        ports = [api.PortMapping(protocol=api.TCP, container_port=cport, host_port=hport)
                 for hport, cport in (host_ports or {}).items()]
        return api.PodSandboxConfig(
            metadata=api.PodSandboxMetadata(name=name, uid=f"uid-{name}", namespace="default"),
            hostname=name,
            dns_config=api.DNSConfig(servers=["10.96.0.10"], searches=["default.svc.cluster.local"],
                                     options=["ndots:5"]),
            port_mappings=ports,
            annotations=annotations or {},
            linux=api.LinuxPodSandboxConfig(cgroup_parent=cgroup_parent),
        )

    def run_pod(self, config) -> Sandbox:
        api = self.api
        sid = self.runtime.RunPodSandbox(api.RunPodSandboxRequest(config=config), timeout=TIMEOUT).pod_sandbox_id
        status = self.runtime.PodSandboxStatus(api.PodSandboxStatusRequest(pod_sandbox_id=sid, verbose=True),
                                               timeout=TIMEOUT)
        info = json.loads(status.info["info"])
        return Sandbox(id=sid, name=config.metadata.name, ip=status.status.network.ip, pid=int(info["pid"]))

    def start_container(self, sandbox: Sandbox, config, image: str, command: list[str]) -> str:
        """CreateContainer + StartContainer in `sandbox` (its netns: the pod's)."""
        api = self.api
        cfg = api.ContainerConfig(metadata=api.ContainerMetadata(name="app"), image=api.ImageSpec(image=image),
                                  command=command[:1], args=command[1:])
        cid = self.runtime.CreateContainer(api.CreateContainerRequest(
            pod_sandbox_id=sandbox.id, config=cfg, sandbox_config=config), timeout=TIMEOUT).container_id
        self.runtime.StartContainer(api.StartContainerRequest(container_id=cid), timeout=TIMEOUT)
        return cid

    def exec_sync(self, container_id: str, cmd: list[str], timeout: int = 10):
        return self.runtime.ExecSync(self.api.ExecSyncRequest(container_id=container_id, cmd=cmd, timeout=timeout),
                                     timeout=timeout + TIMEOUT)

    def stop_pod(self, sandbox_id: str) -> None:
        self.runtime.StopPodSandbox(self.api.StopPodSandboxRequest(pod_sandbox_id=sandbox_id), timeout=TIMEOUT)

    def remove_pod(self, sandbox_id: str) -> None:
        self.runtime.RemovePodSandbox(self.api.RemovePodSandboxRequest(pod_sandbox_id=sandbox_id),
                                      timeout=TIMEOUT)

    def pod_ids(self) -> list[str]:
        return [s.id for s in self.runtime.ListPodSandbox(self.api.ListPodSandboxRequest(), timeout=TIMEOUT).items]

    def pod_ready(self, sandbox_id: str) -> bool:
        status = self.runtime.PodSandboxStatus(self.api.PodSandboxStatusRequest(pod_sandbox_id=sandbox_id),
                                               timeout=TIMEOUT)
        return status.status.state == self.api.SANDBOX_READY
