"""tulle: a container network fabric for Kubernetes-style clusters."""

__version__ = "0.1.0"
