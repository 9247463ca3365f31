"""Network configuration: decoding stdin and reading fields with clear errors.

Every plugin's `load_conf` reads its fields through `Fields`, so a wrong type or
a bad CIDR always produces the same kind of message: which field, what was
given, what was expected (error code 7).
"""

from __future__ import annotations

import json
from typing import Any

from tulle.cni.errors import DECODE_FAILURE, CNIError
from tulle.cni.types import IPAddress, IPInterface, IPNetwork, Result, parse_cidr, parse_ip, parse_net
from tulle.errors import ConfigError

_MISSING = object()


def decode(stdin: bytes) -> dict:
    """Decode the network configuration; malformed JSON is error 6."""
    try:
        conf = json.loads(stdin or b"{}")
    except (ValueError, UnicodeDecodeError) as exc:
        raise CNIError(DECODE_FAILURE, f"failed to decode network configuration: {exc}") from None
    if not isinstance(conf, dict):
        raise CNIError(DECODE_FAILURE, "network configuration must be a JSON object")
    return conf


class Fields:
    """Typed access to one JSON object of the configuration."""

    def __init__(self, data: Any, where: str) -> None:
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise ConfigError(f"{where}: must be an object, got {type(data).__name__}")
        self.data = data
        self.where = where

    def _name(self, key: str) -> str:
        return f"{self.where}.{key}" if self.where else key

    def _get(self, key: str, default: Any, required: bool) -> Any:
        value = self.data.get(key, _MISSING)
        if value is _MISSING or value is None:
            if required:
                raise ConfigError(f"{self._name(key)} is required")
            return default
        return value

    def str(self, key: str, default: str = "", required: bool = False) -> str:
        value = self._get(key, default, required)
        if not isinstance(value, str):
            raise ConfigError(f"{self._name(key)} must be a string, got {value!r}")
        return value

    def bool(self, key: str, default: bool = False) -> bool:
        value = self._get(key, default, False)
        if not isinstance(value, bool):
            raise ConfigError(f"{self._name(key)} must be true or false, got {value!r}")
        return value

    def int(self, key: str, default: int = 0, lo: int | None = None, hi: int | None = None,
            required: bool = False) -> int:
        value = self._get(key, default, required)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{self._name(key)} must be an integer, got {value!r}")
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            raise ConfigError(f"{self._name(key)} must be within [{lo}, {hi}], got {value}")
        return value

    def list(self, key: str, required: bool = False) -> list:
        value = self._get(key, [], required)
        if not isinstance(value, list):
            raise ConfigError(f"{self._name(key)} must be a list, got {value!r}")
        return value

    def obj(self, key: str) -> "Fields":
        return Fields(self._get(key, {}, False), self._name(key))

    def raw(self, key: str, default: Any = None) -> Any:
        return self.data.get(key, default)

    def ip(self, key: str, required: bool = False) -> IPAddress | None:
        value = self._get(key, None, required)
        return None if value in (None, "") else parse_ip(value, self._name(key))

    def cidr(self, key: str, required: bool = False) -> IPInterface | None:
        value = self._get(key, None, required)
        return None if value in (None, "") else parse_cidr(value, self._name(key))

    def net(self, key: str, required: bool = False) -> IPNetwork | None:
        value = self._get(key, None, required)
        return None if value in (None, "") else parse_net(value, self._name(key))


def prev_result(conf: dict) -> Result | None:
    """The prevResult a runtime injected, parsed (None when absent)."""
    raw = conf.get("prevResult")
    if raw is None:
        return None
    return Result.from_dict(raw)


def runtime_config(conf: dict) -> Fields:
    """The capabilities a runtime passed (portMappings, bandwidth, ips, mac, ...)."""
    return Fields(conf.get("runtimeConfig"), "runtimeConfig")
