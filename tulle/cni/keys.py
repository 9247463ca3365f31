"""Which JSON key names a configuration field: the rule the reference plugins follow.

The reference plugins and libcni decode configurations with Go's encoding/json, which
fills a struct field from any key equal to the field's name *ignoring case*, and from the
last such key when there are several. Go runtimes rely on it without knowing:
containerd's port mappings come from a Go struct without JSON tags, so portmap receives
`{"HostPort": 8080, "ContainerPort": 80, ...}` and takes it for `hostPort`. Every field
tulle reads (through `tulle.cni.conf.Fields` or directly) is looked up here, so the rule
holds in one place. Maps keep their keys exact, as Go's map decoding does: tuning's
`sysctl`, a plugin's `capabilities`, a conflist's top level (libcni reads it as a map).

Go folds case the Unicode way: besides ASCII, U+212A KELVIN SIGN matches k and U+017F
LATIN SMALL LETTER LONG S matches s — the only letters outside ASCII that fold to ASCII
ones, hence the only ones that can match tulle's field names (all ASCII).

A null value counts as absent (as everywhere in Fields); where Go would keep an earlier
duplicate's value for a non-pointer field, the last key still wins here.

This module imports nothing: the thin exec path (tulle.cni.forward) uses it.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:  # `typing` costs milliseconds on the exec path; annotations are strings anyway
    from typing import Any

_TO_ASCII = {0x212A: "k", 0x017F: "s"}


def fold(key: str) -> str:
    """The form of `key` that Go's decoder compares with a field name."""
    return key.translate(_TO_ASCII).lower()


def get(obj: dict, name: str, default: Any = None) -> Any:
    """The value of field `name` in `obj`: that of the last key that folds like `name`."""
    found = spellings(obj, name)
    value = obj[found[-1]] if found else None
    return default if value is None else value


def pop(obj: dict, name: str, default: Any = None) -> Any:
    """Remove field `name` in every spelling; returns its value as `get` reads it."""
    value = get(obj, name, default)
    for key in spellings(obj, name):
        del obj[key]
    return value


def put(obj: dict, name: str, value: Any) -> None:
    """Set field `name`, dropping its other spellings so that none of them overrides it."""
    pop(obj, name)
    obj[name] = value


def spellings(obj: dict, name: str) -> list[str]:
    """The keys of `obj` that name field `name`."""
    want, size = fold(name), len(name)
    # A key of another length never folds to an ASCII name: most are ruled out unfolded.
    return [key for key in obj if len(key) == size and fold(key) == want]


def update(obj: dict, fields: dict) -> None:
    """`obj.update(fields)` by field name: each of `fields` replaces every spelling of itself."""
    for name, value in fields.items():
        put(obj, name, value)
