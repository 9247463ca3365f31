"""Kubernetes' string rules (apimachinery's util/validation), word for word.

Each `*_errors` function returns the rule's messages for a value, empty when the
value is valid, worded exactly as kube-apiserver prints them — validation wraps
each message in a FieldError. Each `is_*` is the yes/no form for callers that only
ask (label parsing, the endpointslice controller, the CLI).

apimachinery words lengths two ways: the DNS rules say "characters", the label
rules (its newer `content` package) say "bytes"; both are kept as it has them.
Lengths count UTF-8 bytes, as Go's len() does.
"""

from __future__ import annotations

import re
from typing import Callable

DNS1123_LABEL_MAX = 63
DNS1123_SUBDOMAIN_MAX = 253
DNS1035_LABEL_MAX = 63
LABEL_KEY_NAME_MAX = 63
LABEL_VALUE_MAX = 63
PORT_NAME_MAX = 15

_DNS1123_LABEL = "[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS1123_SUBDOMAIN = _DNS1123_LABEL + "(\\." + _DNS1123_LABEL + ")*"
_DNS1035_LABEL = "[a-z]([-a-z0-9]*[a-z0-9])?"
_WILDCARD_SUBDOMAIN = "\\*\\." + _DNS1123_SUBDOMAIN
_LABEL_KEY = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
_LABEL_VALUE = "(" + _LABEL_KEY + ")?"
_CONFIG_KEY = "[-._a-zA-Z0-9]+"
_PERCENT = "[0-9]+%"

_DNS1123_LABEL_MSG = ("a lowercase RFC 1123 label must consist of lower case alphanumeric characters "
                      "or '-', and must start and end with an alphanumeric character")
_DNS1123_SUBDOMAIN_MSG = ("a lowercase RFC 1123 subdomain must consist of lower case alphanumeric "
                          "characters, '-' or '.', and must start and end with an alphanumeric character")
_DNS1035_LABEL_MSG = ("a DNS-1035 label must consist of lower case alphanumeric characters or '-', "
                      "start with an alphabetic character, and end with an alphanumeric character")
_WILDCARD_MSG = ("a wildcard DNS-1123 subdomain must start with '*.', followed by a valid DNS "
                 "subdomain, which must consist of lower case alphanumeric characters, '-' or '.' "
                 "and end with an alphanumeric character")
_LABEL_KEY_MSG = ("must consist of alphanumeric characters, '-', '_' or '.', and must start and end "
                  "with an alphanumeric character")
_LABEL_VALUE_MSG = ("a valid label must be an empty string or consist of alphanumeric characters, "
                    "'-', '_' or '.', and must start and end with an alphanumeric character")
_CONFIG_KEY_MSG = "a valid config key must consist of alphanumeric characters, '-', '_' or '.'"
_PERCENT_MSG = "a valid percent string must be a numeric string followed by an ending '%'"


def _full(pattern: str) -> Callable[[str], bool]:
    rx = re.compile(pattern)
    return lambda value: rx.fullmatch(value) is not None


_is_label, _is_subdomain = _full(_DNS1123_LABEL), _full(_DNS1123_SUBDOMAIN)
_is_1035, _is_wildcard = _full(_DNS1035_LABEL), _full(_WILDCARD_SUBDOMAIN)
_is_key_name, _is_label_value = _full(_LABEL_KEY), _full(_LABEL_VALUE)
_is_config_key, _is_percent = _full(_CONFIG_KEY), _full(_PERCENT)


# -- the message builders apimachinery shares ------------------------------------

def regex_error(msg: str, fmt: str, *examples: str) -> str:
    """`<msg> (e.g. 'a',  or 'b', regex used for validation is '<fmt>')` — the double
    space is apimachinery's, kept so messages compare equal to kubectl's."""
    if not examples:
        return f"{msg} (regex used for validation is '{fmt}')"
    shown = " or ".join(f"'{e}', " for e in examples)
    return f"{msg} (e.g. {shown}regex used for validation is '{fmt}')"


def max_len_error(length: int, unit: str = "characters") -> str:
    return f"must be no more than {length} {unit}"


def inclusive_range_error(lo: int, hi: int) -> str:
    return f"must be between {lo} and {hi}, inclusive"


EMPTY_ERROR = "must be non-empty"


def _size(value: str) -> int:
    return len(value.encode())


# -- DNS names ---------------------------------------------------------------------

def dns1123_label_errors(value: str) -> list[str]:
    errs = [max_len_error(DNS1123_LABEL_MAX)] if _size(value) > DNS1123_LABEL_MAX else []
    if not _is_label(value):
        errs.append("must not contain dots" if _is_subdomain(value)
                    else regex_error(_DNS1123_LABEL_MSG, _DNS1123_LABEL, "my-name", "123-abc"))
    return errs


def dns1123_subdomain_errors(value: str, unit: str = "characters") -> list[str]:
    errs = [max_len_error(DNS1123_SUBDOMAIN_MAX, unit)] if _size(value) > DNS1123_SUBDOMAIN_MAX else []
    if not _is_subdomain(value):
        errs.append(regex_error(_DNS1123_SUBDOMAIN_MSG, _DNS1123_SUBDOMAIN, "example.com"))
    return errs


def dns1035_label_errors(value: str) -> list[str]:
    errs = [max_len_error(DNS1035_LABEL_MAX)] if _size(value) > DNS1035_LABEL_MAX else []
    if not _is_1035(value):
        errs.append(regex_error(_DNS1035_LABEL_MSG, _DNS1035_LABEL, "my-name", "abc-123"))
    return errs


def wildcard_dns1123_subdomain_errors(value: str) -> list[str]:
    errs = [max_len_error(DNS1123_SUBDOMAIN_MAX)] if _size(value) > DNS1123_SUBDOMAIN_MAX else []
    if not _is_wildcard(value):
        errs.append(regex_error(_WILDCARD_MSG, _WILDCARD_SUBDOMAIN, "*.example.com"))
    return errs


# -- labels and other keys ---------------------------------------------------------

def qualified_name_errors(value: str) -> list[str]:
    """A label key (also annotation keys, finalizers): `[prefix/]name`, the prefix a DNS subdomain."""
    parts = value.split("/")
    if len(parts) > 2:
        return ["a valid label key " + regex_error(_LABEL_KEY_MSG, _LABEL_KEY, "MyName", "my.name", "123-abc")
                + " with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"]
    errs: list[str] = []
    name = parts[-1]
    if len(parts) == 2:
        prefix = parts[0]
        if not prefix:
            errs.append("prefix part " + EMPTY_ERROR)
        else:
            errs += ["prefix part " + m for m in dns1123_subdomain_errors(prefix, unit="bytes")]
    if not name:
        errs.append("name part " + EMPTY_ERROR)
    elif _size(name) > LABEL_KEY_NAME_MAX:
        errs.append("name part " + max_len_error(LABEL_KEY_NAME_MAX, "bytes"))
    if not _is_key_name(name):
        errs.append("name part " + regex_error(_LABEL_KEY_MSG, _LABEL_KEY, "MyName", "my.name", "123-abc"))
    return errs


def label_value_errors(value: str) -> list[str]:
    errs = [max_len_error(LABEL_VALUE_MAX, "bytes")] if _size(value) > LABEL_VALUE_MAX else []
    if not _is_label_value(value):
        errs.append(regex_error(_LABEL_VALUE_MSG, _LABEL_VALUE, "MyValue", "my_value", "12345"))
    return errs


def config_map_key_errors(value: str) -> list[str]:
    """A Secret (or ConfigMap) data key: it becomes a file name, so no `.`/`..` tricks."""
    errs = [max_len_error(DNS1123_SUBDOMAIN_MAX)] if _size(value) > DNS1123_SUBDOMAIN_MAX else []
    if not _is_config_key(value):
        errs.append(regex_error(_CONFIG_KEY_MSG, _CONFIG_KEY, "key.name", "KEY_NAME", "key-name"))
    if value == ".":
        errs.append("must not be '.'")
    elif value == "..":
        errs.append("must not be '..'")
    elif value.startswith(".."):
        errs.append("must not start with '..'")
    return errs


def percent_errors(value: str) -> list[str]:
    return [] if _is_percent(value) else [regex_error(_PERCENT_MSG, _PERCENT, "1%", "93%")]


# -- ports -----------------------------------------------------------------------

def port_name_errors(value: str) -> list[str]:
    """IANA_SVC_NAME (RFC 6335), lower case only: how container and Service ports are named."""
    errs = [max_len_error(PORT_NAME_MAX)] if len(value) > PORT_NAME_MAX else []
    if not re.fullmatch("[-a-z0-9]+", value):
        errs.append("must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)")
    if not re.search("[a-z]", value):
        errs.append("must contain at least one letter (a-z)")
    if "--" in value:
        errs.append("must not contain consecutive hyphens")
    if value and (value[0] == "-" or value[-1] == "-"):
        errs.append("must not begin or end with a hyphen")
    return errs


def in_range_errors(value: int, lo: int, hi: int) -> list[str]:
    return [] if lo <= value <= hi else [inclusive_range_error(lo, hi)]


def port_num_errors(value: int) -> list[str]:
    return in_range_errors(value, 1, 65535)


# -- yes/no forms ------------------------------------------------------------------

def is_dns1123_label(value: str) -> bool:
    return not dns1123_label_errors(value)


def is_dns1123_subdomain(value: str) -> bool:
    return not dns1123_subdomain_errors(value)


def is_dns1035_label(value: str) -> bool:
    return not dns1035_label_errors(value)


def is_iana_svc_name(value: str) -> bool:
    return not port_name_errors(value)


def is_qualified_name(value: str) -> bool:
    return not qualified_name_errors(value)


def is_label_value(value: str) -> bool:
    return not label_value_errors(value)


# -- object names ----------------------------------------------------------------

NameRule = Callable[[str, bool], list[str]]


def _mask_trailing_dash(name: str) -> str:
    """generateName may end in '-' (the random suffix follows); apimachinery swaps the
    last two characters for an 'a' before checking, and so do we."""
    return name[:-2] + "a" if len(name) > 1 and name.endswith("-") else name


def _name_rule(check: Callable[[str], list[str]]) -> NameRule:
    def rule(name: str, prefix: bool = False) -> list[str]:
        return check(_mask_trailing_dash(name) if prefix else name)
    return rule


name_is_dns_subdomain = _name_rule(dns1123_subdomain_errors)
name_is_dns_label = _name_rule(dns1123_label_errors)
name_is_dns1035_label = _name_rule(dns1035_label_errors)
