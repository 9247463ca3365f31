"""The plugin registry: CNI type name -> module exporting PLUGIN.

Type names are the reference plugins' so existing conflists work unchanged.
Modules are imported only when their type is used, to keep the exec path light.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tulle.cni.skel import Plugin

PLUGINS: dict[str, str] = {
    "loopback": "tulle.cni.plugins.main.loopback",
    "bridge": "tulle.cni.plugins.main.bridge",
    "ptp": "tulle.cni.plugins.main.ptp",
    "macvlan": "tulle.cni.plugins.main.macvlan",
    "tulle": "tulle.cni.plugins.main.tulle",
    "tulle-routed": "tulle.cni.plugins.main.routed",
    "host-local": "tulle.cni.plugins.ipam.host_local",
    "static": "tulle.cni.plugins.ipam.static",
    "tulle-blocks": "tulle.cni.plugins.ipam.blocks",
    "portmap": "tulle.cni.plugins.meta.portmap",
    "bandwidth": "tulle.cni.plugins.meta.bandwidth",
    "firewall": "tulle.cni.plugins.meta.firewall",
    "tuning": "tulle.cni.plugins.meta.tuning",
}


def load(type_name: str) -> "Plugin":
    """The Plugin for a CNI type; KeyError when tulle has no such plugin."""
    return importlib.import_module(PLUGINS[type_name]).PLUGIN
