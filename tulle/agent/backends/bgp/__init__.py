"""The bgp backend (Calico-style routed mode with BIRD 2): backend.py (the backend),
peers.py and birdconf.py (the sessions and BIRD's config, pure), bird.py (the daemon),
crosssubnet.py (VXLAN to nodes on other segments). Its config is
tulle.cluster.backendconf.BgpConfig."""
