"""Names that tie host-side objects (nft rules and chains, ifb devices) to one
attachment (network, container ID, ifname).

DEL and GC must find what an ADD made even when the pod's netns is gone, so
every such object carries a name derived from the attachment alone.
"""

from __future__ import annotations

import hashlib


def digest(*parts: str, length: int = 16) -> str:
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()[:length]


def network_tag(network: str) -> str:
    """Short tag shared by every object of one network (GC selects by it)."""
    return digest(network, length=8)


def tag(network: str, container_id: str, ifname: str) -> str:
    """The comment put on nft rules of one attachment: "<nettag>:<cid>:<ifname>".

    Readable (the container ID is in it) while it fits nft's 127-byte comments;
    very long container IDs are replaced by their digest.
    """
    cid = container_id if len(container_id) <= 64 else digest(container_id, length=32)
    return f"{network_tag(network)}:{cid}:{ifname}"


def chain_name(prefix: str, network: str, container_id: str, ifname: str) -> str:
    """A per-attachment chain name, e.g. "pm-0123abcd...": short and stable."""
    return f"{prefix}-{digest(network, container_id, ifname)}"


def device_name(prefix: str, container_id: str, ifname: str) -> str:
    """A host device name (≤15 chars) for an attachment, e.g. an ifb "bwp1a2b3c4d5e6f"."""
    return (prefix + digest(container_id, ifname))[:15]


def parse_tag(comment: str) -> tuple[str, str, str] | None:
    """(nettag, cid, ifname) from a comment made by `tag`, or None."""
    parts = comment.split(":")
    if len(parts) != 3:
        return None
    return parts[0], parts[1], parts[2]
