"""The CNI result, held in one internal form and written in any spec version.

Internally a result looks like spec 1.1.0; `to_dict(version)` drops what an
older version does not know and adds the 0.3.x/0.4.0 per-IP "version" tag.
`Result.from_dict` reads any supported version (a delegated IPAM plugin or a
prevResult may be older than us).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Union

from tulle.cni import version as cniver
from tulle.cni.errors import INCOMPATIBLE_VERSION, CNIError
from tulle.errors import ConfigError

if TYPE_CHECKING:
    from tulle.cni.conf import Fields

IPAddress = Union[ipaddress.IPv4Address, ipaddress.IPv6Address]
IPInterface = Union[ipaddress.IPv4Interface, ipaddress.IPv6Interface]
IPNetwork = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]


def parse_ip(value: Any, where: str) -> IPAddress:
    """A textual address. Not an integer (ipaddress reads 5 as 0.0.0.5) and not an IPv6
    zone ("fe80::1%eth0": no CNI field has one, and nothing downstream could render it)."""
    if not isinstance(value, str) or "%" in value:
        raise ConfigError(f"{where}: invalid IP address {shown(value)}")
    try:
        return ipaddress.ip_address(value)
    except ValueError:
        raise ConfigError(f"{where}: invalid IP address {shown(value)}") from None


def parse_cidr(value: Any, where: str) -> IPInterface:
    """An address with its prefix, e.g. 10.1.0.5/24 (host bits allowed)."""
    if not isinstance(value, str) or "/" not in value or "%" in value:
        raise ConfigError(f"{where}: invalid CIDR {shown(value)} (want address/prefix)")
    try:
        return ipaddress.ip_interface(value)
    except ValueError:
        raise ConfigError(f"{where}: invalid CIDR {shown(value)}") from None


def parse_net(value: Any, where: str) -> IPNetwork:
    """A network, e.g. 10.1.0.0/24; host bits are masked off as the reference does."""
    return parse_cidr(value, where).network


def shown(value: Any, limit: int = 80) -> str:
    """repr(value) cut to `limit` characters: an error message must not echo megabytes."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}…"


def _fields(data: Any, where: str) -> "Fields":
    """The typed reader every config field goes through, for a result's objects too: a
    wrong type is error 7 naming the field (Go's json refuses it), never coerced with
    str()/int(). Imported here, not at the top: tulle.cni.conf imports this module."""
    from tulle.cni.conf import Fields

    return Fields(data, where)


def _opt_int(f: "Fields", key: str, lo: int | None = None) -> int | None:
    """An integer field whose absence is meaningful (None), e.g. a route's table."""
    return None if f.raw(key) is None else f.int(key, lo=lo)


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
    def from_dict(cls, d: Any, where: str = "interface") -> "Interface":
        f = _fields(d, where)
        return cls(
            name=f.str("name"),
            mac=f.str("mac"),
            mtu=f.int("mtu", lo=0),
            sandbox=f.str("sandbox"),
            socket_path=f.str("socketPath"),
            pci_id=f.str("pciID"),
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
    def from_dict(cls, d: Any, where: str = "ip") -> "IPConfig":
        f = _fields(d, where)
        return cls(
            address=f.cidr("address", required=True),
            gateway=f.ip("gateway"),
            interface=_opt_int(f, "interface", lo=0),
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
    def from_dict(cls, d: Any, where: str = "routes") -> "Route":
        if not isinstance(d, dict):
            raise ConfigError(f"{where}: each route must be an object, got {shown(d)}")
        f = _fields(d, where)
        return cls(
            dst=f.net("dst", required=True),
            gw=f.ip("gw"),
            mtu=f.int("mtu", lo=0),
            advmss=f.int("advmss", lo=0),
            priority=f.int("priority", lo=0),
            table=_opt_int(f, "table", lo=0),
            scope=_opt_int(f, "scope", lo=0),
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
    def from_dict(cls, d: Any, where: str = "dns") -> "DNS":
        f = _fields(d, where)
        return cls(
            nameservers=list(f.strs("nameservers")),
            domain=f.str("domain"),
            search=list(f.strs("search")),
            options=list(f.strs("options")),
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
    def from_dict(cls, d: Any, where: str = "result") -> "Result":
        """Read a result of any supported version (a prevResult or a delegate's output).

        Every field is typed as the reference's Go structs are; a cniVersion we do not
        speak is error 1 (the fields may mean something else there). An absent one is
        read as the latest, as the reference does.
        """
        if not isinstance(d, dict):
            raise ConfigError(f"{where}: a CNI result must be an object, got {type(d).__name__}")
        f = _fields(d, where)
        version = f.raw("cniVersion")
        if version is not None:
            if not isinstance(version, str):
                raise CNIError(INCOMPATIBLE_VERSION, f"{where}.cniVersion must be a string, got {shown(version)}")
            if version not in cniver.SUPPORTED:
                raise CNIError(INCOMPATIBLE_VERSION, f"{where}.cniVersion {shown(version)} is not a version "
                               f"tulle reads (supported: {', '.join(cniver.SUPPORTED)})")
        return cls(
            cni_version=version or cniver.LATEST,
            interfaces=[Interface.from_dict(i, f"{where}.interfaces[{n}]") for n, i in enumerate(f.list("interfaces"))],
            ips=[IPConfig.from_dict(i, f"{where}.ips[{n}]") for n, i in enumerate(f.list("ips"))],
            routes=[Route.from_dict(r, f"{where}.routes[{n}]") for n, r in enumerate(f.list("routes"))],
            dns=DNS.from_dict(f.raw("dns"), f"{where}.dns"),
        )

    def add_interface(self, iface: Interface) -> int:
        """Append an interface and return its index, for IPConfig.interface."""
        self.interfaces.append(iface)
        return len(self.interfaces) - 1
