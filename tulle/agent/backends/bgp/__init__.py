"""The bgp backend (Calico-style routed mode with BIRD 2); see backend.py for the config."""

from tulle.agent.backends.bgp.backend import BgpBackend, BgpConfig, factory, load_config

__all__ = ["BgpBackend", "BgpConfig", "factory", "load_config"]
