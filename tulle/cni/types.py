"""The CNI result, held in one internal form and written in any spec version.

Internally a result looks like spec 1.1.0; `to_dict(version)` drops what an
older version does not know and adds the 0.3.x/0.4.0 per-IP "version" tag.
`Result.from_dict` reads any supported version (a delegated IPAM plugin or a
prevResult may be older than us).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any, Union

from tulle.cni import version as cniver
from tulle.errors import ConfigError

IPAddress = Union[ipaddress.IPv4Address, ipaddress.IPv6Address]
IPInterface = Union[ipaddress.IPv4Interface, ipaddress.IPv6Interface]
IPNetwork = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]


def parse_ip(value: Any, where: str) -> IPAddress:
    try:
        return ipaddress.ip_address(value)
    except ValueError:
        raise ConfigError(f"{where}: invalid IP address {value!r}") from None


def parse_cidr(value: Any, where: str) -> IPInterface:
    """An address with its prefix, e.g. 10.1.0.5/24 (host bits allowed)."""
    if not isinstance(value, str) or "/" not in value:
        raise ConfigError(f"{where}: invalid CIDR {value!r} (want address/prefix)")
    try:
        return ipaddress.ip_interface(value)
    except ValueError:
        raise ConfigError(f"{where}: invalid CIDR {value!r}") from None


def parse_net(value: Any, where: str) -> IPNetwork:
    """A network, e.g. 10.1.0.0/24; host bits are masked off as the reference does."""
    return parse_cidr(value, where).network


@dataclass
class Interface:
    name: str
    mac: str = ""
    mtu: int = 0
    sandbox: str = ""
    socket_path: str = ""
    pci_id: str = ""

    def to_dict(self, version: str) -> dict:
        out: dict[str, Any] = {"name": self.name}
        if self.mac:
            out["mac"] = self.mac
        if cniver.at_least(version, "1.1.0"):
            if self.mtu:
                out["mtu"] = self.mtu
        if self.sandbox:
            out["sandbox"] = self.sandbox
        if cniver.at_least(version, "1.1.0"):
            if self.socket_path:
                out["socketPath"] = self.socket_path
            if self.pci_id:
                out["pciID"] = self.pci_id
        return out

    @classmethod
    def from_dict(cls, d: dict) -> "Interface":
        return cls(
            name=str(d.get("name", "")),
            mac=str(d.get("mac", "")),
            mtu=int(d.get("mtu", 0) or 0),
            sandbox=str(d.get("sandbox", "")),
            socket_path=str(d.get("socketPath", "")),
            pci_id=str(d.get("pciID", "")),
        )


@dataclass
class IPConfig:
    address: IPInterface
    gateway: IPAddress | None = None
    interface: int | None = None

    def to_dict(self, version: str) -> dict:
        out: dict[str, Any] = {}
        if cniver.ips_carry_version(version):
            out["version"] = str(self.address.version)
        if self.interface is not None:
            out["interface"] = self.interface
        out["address"] = str(self.address)
        if self.gateway is not None:
            out["gateway"] = str(self.gateway)
        return out

    @classmethod
    def from_dict(cls, d: dict) -> "IPConfig":
        gw = d.get("gateway")
        iface = d.get("interface")
        return cls(
            address=parse_cidr(d.get("address"), "ips.address"),
            gateway=parse_ip(gw, "ips.gateway") if gw else None,
            interface=int(iface) if iface is not None else None,
        )


@dataclass
class Route:
    dst: IPNetwork
    gw: IPAddress | None = None
    mtu: int = 0
    advmss: int = 0
    priority: int = 0
    table: int | None = None
    scope: int | None = None

    def to_dict(self, version: str) -> dict:
        out: dict[str, Any] = {"dst": str(self.dst)}
        if self.gw is not None:
            out["gw"] = str(self.gw)
        if cniver.at_least(version, "1.1.0"):
            if self.mtu:
                out["mtu"] = self.mtu
            if self.advmss:
                out["advmss"] = self.advmss
            if self.priority:
                out["priority"] = self.priority
            if self.table is not None:
                out["table"] = self.table
            if self.scope is not None:
                out["scope"] = self.scope
        return out

    @classmethod
    def from_dict(cls, d: dict, where: str = "routes") -> "Route":
        if not isinstance(d, dict):
            raise ConfigError(f"{where}: each route must be an object, got {d!r}")
        gw = d.get("gw")
        table = d.get("table")
        scope = d.get("scope")
        return cls(
            dst=parse_net(d.get("dst"), f"{where}.dst"),
            gw=parse_ip(gw, f"{where}.gw") if gw else None,
            mtu=int(d.get("mtu", 0) or 0),
            advmss=int(d.get("advmss", 0) or 0),
            priority=int(d.get("priority", 0) or 0),
            table=int(table) if table is not None else None,
            scope=int(scope) if scope is not None else None,
        )


@dataclass
class DNS:
    nameservers: list[str] = field(default_factory=list)
    domain: str = ""
    search: list[str] = field(default_factory=list)
    options: list[str] = field(default_factory=list)

    def empty(self) -> bool:
        return not (self.nameservers or self.domain or self.search or self.options)

    def to_dict(self) -> dict:
        out: dict[str, Any] = {}
        if self.nameservers:
            out["nameservers"] = list(self.nameservers)
        if self.domain:
            out["domain"] = self.domain
        if self.search:
            out["search"] = list(self.search)
        if self.options:
            out["options"] = list(self.options)
        return out

    @classmethod
    def from_dict(cls, d: dict | None) -> "DNS":
        d = d or {}
        if not isinstance(d, dict):
            raise ConfigError(f"dns must be an object, got {d!r}")
        return cls(
            nameservers=[str(x) for x in d.get("nameservers") or []],
            domain=str(d.get("domain") or ""),
            search=[str(x) for x in d.get("search") or []],
            options=[str(x) for x in d.get("options") or []],
        )


@dataclass
class Result:
    cni_version: str = cniver.LATEST
    interfaces: list[Interface] = field(default_factory=list)
    ips: list[IPConfig] = field(default_factory=list)
    routes: list[Route] = field(default_factory=list)
    dns: DNS = field(default_factory=DNS)

    def to_dict(self, version: str | None = None) -> dict:
        version = version or self.cni_version
        out: dict[str, Any] = {"cniVersion": version}
        if self.interfaces:
            out["interfaces"] = [i.to_dict(version) for i in self.interfaces]
        if self.ips:
            out["ips"] = [ip.to_dict(version) for ip in self.ips]
        if self.routes:
            out["routes"] = [r.to_dict(version) for r in self.routes]
        out["dns"] = self.dns.to_dict()
        return out

    @classmethod
    def from_dict(cls, d: dict) -> "Result":
        """Read a result of any supported version (a prevResult or a delegate's output)."""
        if not isinstance(d, dict):
            raise ConfigError(f"a CNI result must be an object, got {type(d).__name__}")
        try:
            return cls(
                cni_version=str(d.get("cniVersion") or cniver.LATEST),
                interfaces=[Interface.from_dict(i) for i in d.get("interfaces") or []],
                ips=[IPConfig.from_dict(i) for i in d.get("ips") or []],
                routes=[Route.from_dict(r) for r in d.get("routes") or []],
                dns=DNS.from_dict(d.get("dns")),
            )
        except (TypeError, ValueError, AttributeError) as exc:
            raise ConfigError(f"malformed CNI result: {exc}") from None

    def add_interface(self, iface: Interface) -> int:
        """Append an interface and return its index, for IPConfig.interface."""
        self.interfaces.append(iface)
        return len(self.interfaces) - 1
