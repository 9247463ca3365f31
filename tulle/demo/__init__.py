"""Demonstrations of tulle with real container runtimes, always inside a
sandbox network namespace (see `tulle.demo.podman`)."""
