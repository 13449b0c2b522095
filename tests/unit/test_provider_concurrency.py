"""The provider's concurrency settings: connection slots per thread, and the widened server pool."""

from __future__ import annotations

import concurrent.futures
import sys
import threading
import types

import pytest

from virtstack import provider
from virtstack.provider import connection


def test_threads_spread_round_robin_over_the_hosts_connections():
    slots: list[int] = []
    lock = threading.Lock()

    def record() -> None:
        first = connection._slot()
        assert connection._slot() == first  # a thread keeps its slot
        with lock:
            slots.append(first)

    threads = [threading.Thread(target=record) for _ in range(2 * connection.CONNECTIONS_PER_HOST)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert set(slots) == set(range(connection.CONNECTIONS_PER_HOST))


def test_the_server_pool_is_widened_only_inside_the_dynamic_provider_process(monkeypatch: pytest.MonkeyPatch):
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=4)
    try:
        provider._widen_provider_threads(16)  # pytest's __main__: nothing changes
        assert pool._max_workers == 4

        fake_main = types.ModuleType("__main__")
        fake_main.__spec__ = types.SimpleNamespace(name="pulumi.dynamic.__main__")  # type: ignore[assignment]
        monkeypatch.setitem(sys.modules, "__main__", fake_main)
        provider._widen_provider_threads(16)
        assert pool._max_workers == 16
    finally:
        pool.shutdown()


def test_libvirtd_call_limit_is_respected():
    # libvirtd serves 5 calls per connection at once: the provider's threads fit its connections.
    assert provider.PROVIDER_THREADS <= 5 * connection.CONNECTIONS_PER_HOST + 1
