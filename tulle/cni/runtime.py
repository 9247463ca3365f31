"""A CNI runtime (the client side, as libcni does it): executes plugin binaries
of a .conflist for one attachment, injecting name, cniVersion, runtimeConfig and
prevResult, and caching the ADD result for DEL and CHECK — with the attachment
it belongs to, as libcni's cache does, so that GC can DEL a stale attachment
the runtime no longer knows (then each plugin collects the rest itself).

Used by tests, by `tulle cni` commands and by the lab, which wire pods exactly
as a container runtime would.
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass, field
from typing import Any

from tulle.cni import keys
from tulle.cni.errors import INTERNAL, INVALID_CONFIG, NOT_FOUND, CNIError


@dataclass
class Attachment:
    container_id: str
    netns: str
    ifname: str = "eth0"
    args: list[tuple[str, str]] = field(default_factory=list)
    capability_args: dict[str, Any] = field(default_factory=dict)


def validate_conflist(conflist: dict) -> None:
    if not isinstance(conflist, dict):
        raise CNIError(INVALID_CONFIG, "a conflist must be a JSON object")
    if not isinstance(conflist.get("name"), str) or not conflist["name"]:
        raise CNIError(INVALID_CONFIG, "conflist: name is required")
    if not isinstance(conflist.get("cniVersion"), str) and not isinstance(conflist.get("cniVersions"), list):
        raise CNIError(INVALID_CONFIG, "conflist: cniVersion (or cniVersions) is required")
    plugins = conflist.get("plugins")
    if not isinstance(plugins, list) or not plugins:
        raise CNIError(INVALID_CONFIG, "conflist: plugins must be a non-empty list")
    for p in plugins:
        if not isinstance(p, dict) or not isinstance(keys.get(p, "type"), str):
            raise CNIError(INVALID_CONFIG, f"conflist: every plugin needs a type, got {p!r}")


def effective_version(conflist: dict) -> str:
    """The version to speak: the highest of `cniVersions` we support, else `cniVersion`.

    (spec 1.1.0: a conflist may list several versions; the runtime picks one.)
    """
    from tulle.cni import version as cniver

    listed = conflist.get("cniVersions")
    if isinstance(listed, list):
        usable = [v for v in listed if isinstance(v, str) and v in cniver.SUPPORTED]
        if usable:
            return max(usable, key=cniver.parse)
        if not conflist.get("cniVersion") and listed:
            return str(listed[0])  # none we speak: the plugin answers with error 1
    return conflist["cniVersion"]


class Runtime:
    def __init__(self, bin_dirs: list[str], cache_dir: str | None = None,
                 extra_env: dict[str, str] | None = None) -> None:
        self.bin_dirs = bin_dirs
        self.cache_dir = cache_dir
        self.extra_env = extra_env or {}

    # --- one plugin -------------------------------------------------------

    def find(self, type_name: str) -> str:
        for d in self.bin_dirs:
            path = os.path.join(d, type_name)
            if os.access(path, os.X_OK):
                return path
        raise CNIError(NOT_FOUND, f"failed to find plugin {type_name!r} in {self.bin_dirs}")

    def exec_plugin(self, command: str, conf: dict, att: Attachment | None) -> dict | None:
        env = {"CNI_COMMAND": command, "CNI_PATH": ":".join(self.bin_dirs),
               "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", **self.extra_env}
        if att is not None:
            env.update(CNI_CONTAINERID=att.container_id, CNI_NETNS=att.netns, CNI_IFNAME=att.ifname)
            if att.args:
                env["CNI_ARGS"] = ";".join(f"{k}={v}" for k, v in att.args)
        kind = keys.get(conf, "type")
        proc = subprocess.run([self.find(kind)], input=json.dumps(conf).encode(), env=env,
                              capture_output=True, check=False)
        out = proc.stdout.strip()
        if proc.returncode != 0:
            try:
                raise CNIError.from_dict(json.loads(out))
            except (ValueError, AttributeError):
                raise CNIError(INTERNAL, f"plugin {kind} failed (exit {proc.returncode})",
                               proc.stderr.decode(errors="replace")) from None
        return json.loads(out) if out else None

    # --- a conflist -------------------------------------------------------

    @staticmethod
    def plugin_conf(conflist: dict, plugin: dict, att: Attachment | None, prev: dict | None) -> dict:
        """What one plugin gets on stdin, as libcni builds it: the conflist's name and version,
        the runtimeConfig of the capabilities it declares (a map: names match exactly), the
        previous result. The plugin's own fields are read as Go reads them (tulle.cni.keys)."""
        conf = dict(plugin)
        keys.update(conf, {"cniVersion": effective_version(conflist), "name": conflist["name"]})
        caps = keys.get(plugin, "capabilities") or {}
        if att is not None:
            rc = {k: v for k, v in att.capability_args.items() if caps.get(k)}
            if rc:
                keys.put(conf, "runtimeConfig", rc)
        if prev is not None:
            keys.put(conf, "prevResult", prev)
        return conf

    def add(self, conflist: dict, att: Attachment) -> dict:
        validate_conflist(conflist)
        prev: dict | None = None
        for plugin in conflist["plugins"]:
            prev = self.exec_plugin("ADD", self.plugin_conf(conflist, plugin, att, prev), att)
        assert prev is not None
        self._cache_write(conflist, att, prev)
        return prev

    def check(self, conflist: dict, att: Attachment) -> None:
        validate_conflist(conflist)
        if conflist.get("disableCheck") is True:
            return
        prev = self._cache_read(conflist, att)
        for plugin in conflist["plugins"]:
            self.exec_plugin("CHECK", self.plugin_conf(conflist, plugin, att, prev), att)

    def delete(self, conflist: dict, att: Attachment) -> None:
        validate_conflist(conflist)
        prev = self._cache_read(conflist, att)
        for plugin in reversed(conflist["plugins"]):
            self.exec_plugin("DEL", self.plugin_conf(conflist, plugin, att, prev), att)
        self._cache_remove(conflist, att)

    def gc(self, conflist: dict, valid: list[tuple[str, str]]) -> None:
        """libcni's GCNetworkList: DEL every cached attachment of this network that is not
        `valid`, then GC each plugin with the valid ones; keeps going past errors and
        raises the first at the end."""
        validate_conflist(conflist)
        if conflist.get("disableGC") is True:
            return
        errors: list[CNIError] = []
        keep = set(valid)
        for att in self.cached_attachments(conflist):
            if (att.container_id, att.ifname) not in keep:
                try:
                    self.delete(conflist, att)
                except CNIError as exc:
                    errors.append(exc)
        listed = [{"containerID": c, "ifname": i} for c, i in valid]
        for plugin in conflist["plugins"]:
            conf = self.plugin_conf(conflist, plugin, None, None)
            conf["cni.dev/valid-attachments"] = listed
            try:
                self.exec_plugin("GC", conf, None)
            except CNIError as exc:
                errors.append(exc)
        if errors:
            raise errors[0]

    def status(self, conflist: dict) -> None:
        validate_conflist(conflist)
        for plugin in conflist["plugins"]:
            self.exec_plugin("STATUS", self.plugin_conf(conflist, plugin, None, None), None)

    # --- result cache (what libcni keeps in /var/lib/cni/results) ---------

    CACHE_KIND = "cniCacheV1"

    def _cache_path(self, conflist: dict, att: Attachment) -> str | None:
        if not self.cache_dir:
            return None
        return os.path.join(self.cache_dir, f"{conflist['name']}-{att.container_id}-{att.ifname}")

    def _cache_write(self, conflist: dict, att: Attachment, result: dict) -> None:
        path = self._cache_path(conflist, att)
        if path:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            record = {"kind": self.CACHE_KIND, "networkName": conflist["name"], "containerId": att.container_id,
                      "ifName": att.ifname, "netns": att.netns, "cniArgs": [list(a) for a in att.args],
                      "capabilityArgs": att.capability_args, "result": result}
            tmp = f"{path}.tmp{os.getpid()}"
            with open(tmp, "w") as f:
                json.dump(record, f)
            os.replace(tmp, path)       # a runtime killed while writing leaves no half record

    def _cache_load(self, path: str) -> dict | None:
        try:
            with open(path) as f:
                data = json.load(f)
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def _cache_read(self, conflist: dict, att: Attachment) -> dict | None:
        path = self._cache_path(conflist, att)
        data = self._cache_load(path) if path else None
        if data is None:
            return None
        return data.get("result") if data.get("kind") == self.CACHE_KIND else data   # older caches: the result

    def _cache_remove(self, conflist: dict, att: Attachment) -> None:
        path = self._cache_path(conflist, att)
        if path and os.path.exists(path):
            os.unlink(path)

    def cached_attachments(self, conflist: dict) -> list[Attachment]:
        """The attachments of this network the cache holds a record of (libcni's
        GetCachedAttachments); result-only files of older caches name none."""
        if not self.cache_dir or not os.path.isdir(self.cache_dir):
            return []
        out = []
        for name in sorted(os.listdir(self.cache_dir)):
            data = self._cache_load(os.path.join(self.cache_dir, name))
            if not data or data.get("kind") != self.CACHE_KIND or data.get("networkName") != conflist["name"]:
                continue
            out.append(Attachment(container_id=str(data.get("containerId", "")), netns=str(data.get("netns", "")),
                                  ifname=str(data.get("ifName", "eth0")),
                                  args=[(str(k), str(v)) for k, v in data.get("cniArgs") or []],
                                  capability_args=dict(data.get("capabilityArgs") or {})))
        return out
