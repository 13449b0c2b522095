"""The provider's concurrency, measured: connection slots per thread, the server's operations in flight."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
from concurrent import futures
from pathlib import Path

import grpc
import yaml

from virtstack.provider import PROVIDER_THREADS, connection
from virtstack.provider.server import sized_server

ROOT = Path(__file__).resolve().parents[2]


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


def _most_calls_in_flight(server: grpc.Server, calls: int) -> int:
    """Fire `calls` gRPC calls at once at `server` (127.0.0.1); each waits until `calls` are running
    or 1 s passes; returns how many ran side by side."""
    running, most, lock = 0, 0, threading.Lock()
    everyone = threading.Barrier(calls, timeout=1.0)

    def handler(request: bytes, _context: grpc.ServicerContext) -> bytes:
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        with contextlib.suppress(threading.BrokenBarrierError):  # fewer threads than calls: times out
            everyone.wait()
        with lock:
            running -= 1
        return request

    method = grpc.unary_unary_rpc_method_handler(handler)
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler("t.S", {"M": method})])
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            call = channel.unary_unary("/t.S/M")
            pending = [call.future(b"x", timeout=10) for _ in range(calls)]
            assert all(p.result() == b"x" for p in pending)
    finally:
        server.stop(0)
    return most


def test_the_sized_server_runs_all_its_threads_operations_at_once():
    # Pulumi's server asks for a pool of 4; the sized one serves PROVIDER_THREADS calls side by side.
    server = sized_server(PROVIDER_THREADS)(futures.ThreadPoolExecutor(max_workers=4))
    assert _most_calls_in_flight(server, PROVIDER_THREADS) == PROVIDER_THREADS


def test_pulumis_own_pool_would_serve_only_four_at_once():
    # The measurement above can fail: the same calls through the unsized pool stop at 4.
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    assert _most_calls_in_flight(server, PROVIDER_THREADS) == 4


def test_the_plugin_the_engine_starts_serves_on_loopback():
    # Pulumi.yaml points the engine at this plugin; it must come up and print its port like Pulumi's.
    plugin = ROOT / "virtstack/provider/plugin/pulumi-resource-pulumi-python"
    env = {**os.environ, "PULUMI_RUNTIME_VIRTUALENV": str(Path(sys.executable).parents[1])}
    proc = subprocess.Popen([str(plugin)], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline())
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            grpc.channel_ready_future(channel).result(timeout=10)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_the_project_selects_the_sized_plugin():
    providers = yaml.safe_load((ROOT / "Pulumi.yaml").read_text())["plugins"]["providers"]
    [python] = [p for p in providers if p["name"] == "pulumi-python"]
    assert (ROOT / python["path"] / "pulumi-resource-pulumi-python").is_file()
