"""Network configuration: decoding stdin and reading fields with clear errors.

Every plugin's `load_conf` reads its fields through `Fields`, so a wrong type or
a bad CIDR always produces the same kind of message: which field, what was
given, what was expected (error code 7).
"""

from __future__ import annotations

import json
from typing import Any, Literal, overload

from tulle.cni import keys
from tulle.cni.errors import DECODE_FAILURE, CNIError
from tulle.cni.types import IPAddress, IPInterface, IPNetwork, Result, parse_cidr, parse_ip, parse_net, shown
from tulle.errors import ConfigError

_MISSING = object()

# Nesting deeper than this is refused (error 6). Real configurations nest < 10 levels;
# the bound keeps every recursive step after decoding (json.dumps of a delegate's config,
# deepcopy, repr in messages) far below Python's recursion limit, wherever it runs.
MAX_DEPTH = 128


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


# NaN/Infinity are Python extensions to JSON; Go (the reference) refuses them.
_DECODER = json.JSONDecoder(parse_constant=_no_constant)


def load_json(data: bytes | str, what: str = "network configuration") -> Any:
    """Strict JSON as the reference reads it, or error 6 naming `what`: UTF-8 text, no
    NaN/Infinity, no lone surrogate escapes (they cannot be encoded again), nesting
    bounded by MAX_DEPTH (100,000 `[` must not become a RecursionError)."""
    try:
        text = data.decode("utf-8") if isinstance(data, (bytes, bytearray)) else data
        value = _DECODER.decode(text)
    except RecursionError:
        raise CNIError(DECODE_FAILURE, f"failed to decode {what}: nested deeper than {MAX_DEPTH} levels") from None
    except ValueError as exc:  # includes UnicodeDecodeError and json.JSONDecodeError
        raise CNIError(DECODE_FAILURE, f"failed to decode {what}: {exc}") from None
    # The walk costs more than the decoding; the text shows when it cannot find anything:
    # fewer brackets than MAX_DEPTH, and no \ud... escape (UTF-8 text has no surrogates).
    if text.count("[") + text.count("{") > MAX_DEPTH or "\\ud" in text or "\\uD" in text:
        why = _shape_error(value)
        if why:
            raise CNIError(DECODE_FAILURE, f"failed to decode {what}: {why}")
    return value


def _shape_error(value: Any) -> str | None:
    """Why a decoded document is unusable (too deep, a lone surrogate), or None. Iterative:
    a recursive walk would itself hit the recursion limit on the documents it must refuse."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            if not item.isascii():
                try:
                    item.encode("utf-8")
                except UnicodeEncodeError:
                    return f"string {shown(item)} holds a lone UTF-16 surrogate escape"
        elif isinstance(item, (dict, list)):
            if depth > MAX_DEPTH:
                return f"nested deeper than {MAX_DEPTH} levels"
            if isinstance(item, dict):
                stack.extend((key, depth) for key in item)
                stack.extend((v, depth + 1) for v in item.values())
            else:
                stack.extend((v, depth + 1) for v in item)
    return None


def decode(stdin: bytes) -> dict:
    """Decode the network configuration; malformed JSON is error 6."""
    conf = load_json(stdin or b"{}")
    if not isinstance(conf, dict):
        raise CNIError(DECODE_FAILURE, "network configuration must be a JSON object")
    return conf


class Fields:
    """Typed access to one JSON object of the configuration; a key names a field
    the way Go's decoder matches it (case-insensitively, the last one wins: keys.py)."""

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
        value = keys.get(self.data, key, _MISSING)
        if value is _MISSING:
            if required:
                raise ConfigError(f"{self._name(key)} is required")
            return default
        return value

    def str(self, key: str, default: str = "", required: bool = False) -> str:
        """A string; required means present and non-empty. NUL is refused: every consumer
        (paths, interface names, nft) is a C string, where it would cut the value short."""
        value = self._get(key, default, required)
        if not isinstance(value, str):
            raise ConfigError(f"{self._name(key)} must be a string, got {shown(value)}")
        if required and not value:
            raise ConfigError(f"{self._name(key)} must not be empty")
        if "\0" in value:
            raise ConfigError(f"{self._name(key)} must not contain NUL, got {shown(value)}")
        return value

    def strs(self, key: str) -> list[str]:
        """A list of strings (absent: empty), e.g. dns.nameservers."""
        out = self.list(key)
        for i, item in enumerate(out):
            if not isinstance(item, str):
                raise ConfigError(f"{self._name(key)}[{i}] must be a string, got {shown(item)}")
        return out

    def bool(self, key: str, default: bool = False) -> bool:
        value = self._get(key, default, False)
        if not isinstance(value, bool):
            raise ConfigError(f"{self._name(key)} must be true or false, got {shown(value)}")
        return value

    def int(self, key: str, default: int = 0, lo: int | None = None, hi: int | None = None,
            required: bool = False) -> int:
        value = self._get(key, default, required)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{self._name(key)} must be an integer, got {shown(value)}")
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            raise ConfigError(f"{self._name(key)} must be within [{lo}, {hi}], got {shown(value)}")
        return value

    def list(self, key: str, required: bool = False) -> list:
        value = self._get(key, [], required)
        if not isinstance(value, list):
            raise ConfigError(f"{self._name(key)} must be a list, got {shown(value)}")
        return value

    def obj(self, key: str) -> "Fields":
        return Fields(self._get(key, {}, False), self._name(key))

    def raw(self, key: str, default: Any = None) -> Any:
        return keys.get(self.data, key, default)

    # Addresses are JSON strings only (an integer 5 is not 0.0.0.5). "" means absent, as Go's
    # net.IP reads it, except where the field is required: then it is an error, never None.
    @overload
    def ip(self, key: str, required: Literal[True]) -> IPAddress: ...
    @overload
    def ip(self, key: str, required: bool = False) -> IPAddress | None: ...

    def ip(self, key: str, required: bool = False) -> IPAddress | None:
        value = self._address(key, required)
        return None if value is None else parse_ip(value, self._name(key))

    @overload
    def cidr(self, key: str, required: Literal[True]) -> IPInterface: ...
    @overload
    def cidr(self, key: str, required: bool = False) -> IPInterface | None: ...

    def cidr(self, key: str, required: bool = False) -> IPInterface | None:
        value = self._address(key, required)
        return None if value is None else parse_cidr(value, self._name(key))

    @overload
    def net(self, key: str, required: Literal[True]) -> IPNetwork: ...
    @overload
    def net(self, key: str, required: bool = False) -> IPNetwork | None: ...

    def net(self, key: str, required: bool = False) -> IPNetwork | None:
        value = self._address(key, required)
        return None if value is None else parse_net(value, self._name(key))

    def _address(self, key: str, required: bool) -> Any:
        """The raw value of an address field, None when absent or "" (and not required)."""
        value = self._get(key, None, required)
        if value == "" and required:
            raise ConfigError(f"{self._name(key)} is required, got an empty string")
        return None if value in (None, "") else value


def prev_result(conf: dict) -> Result | None:
    """The prevResult a runtime injected, parsed (None when absent)."""
    raw = keys.get(conf, "prevResult")
    if raw is None:
        return None
    return Result.from_dict(raw, "prevResult")


def runtime_config(conf: dict) -> Fields:
    """The capabilities a runtime passed (portMappings, bandwidth, ips, mac, ...)."""
    return Fields(keys.get(conf, "runtimeConfig"), "runtimeConfig")
