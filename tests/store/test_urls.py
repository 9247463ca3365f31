"""open_store's URL forms and the small pure helpers (no root)."""

from __future__ import annotations

import pytest

from tulle.errors import ConfigError
from tulle.store import open_store
from tulle.store.base import prefix_end
from tulle.store.etcd import parse_endpoints
from tulle.store.sqlite import SqliteStore


def test_sqlite_urls(tmp_path):
    for url in (f"sqlite://{tmp_path}/a.db", str(tmp_path / "b.db"), "sqlite://:memory:"):
        store = open_store(url)
        assert isinstance(store, SqliteStore)
        store.close()
    assert (tmp_path / "a.db").exists() and (tmp_path / "b.db").exists()


@pytest.mark.parametrize("url", ["redis://x", "sqlite://", "etcd://"])
def test_bad_urls(url):
    with pytest.raises(ConfigError):
        open_store(url)


def test_parse_endpoints():
    assert parse_endpoints("198.51.100.1:2379,198.51.100.2") == [("198.51.100.1", 2379), ("198.51.100.2", 2379)]
    assert parse_endpoints("[::1]:2379") == [("::1", 2379)]


@pytest.mark.parametrize("prefix,end", [(b"/a/", b"/a0"), (b"a\xff", b"b"), (b"\xff", b"\0"), (b"", b"\0")])
def test_prefix_end(prefix, end):
    assert prefix_end(prefix) == end
