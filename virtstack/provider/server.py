"""The provider process: Pulumi's dynamic-provider server, serving `PROVIDER_THREADS` operations at once.

Pulumi starts the plugin `pulumi-resource-pulumi-python` for every dynamic resource; Pulumi.yaml
points the engine at ours (virtstack/provider/plugin/), which runs this module instead of
`python -m pulumi.dynamic`. That server builds its gRPC server with a pool of 4 threads and has no
setting for it, so at most 4 of the engine's operations (`--parallel`, 16 here) ran at once: a 25-VM
`up` queued behind 4 domain starts at a time. Here the process owns its entry point: `grpc.server`
(gRPC's public constructor) is given a pool of our size before Pulumi's module creates the server,
then that module runs unchanged. The provider classes, their pickles and the protocol stay Pulumi's.
"""

from __future__ import annotations

import runpy
from concurrent import futures
from typing import Any

import grpc

from virtstack.provider import PROVIDER_THREADS


def sized_server(threads: int) -> Any:
    """`grpc.server` with its thread pool replaced by one of `threads` workers."""
    original = grpc.server

    def server(thread_pool: futures.ThreadPoolExecutor | None = None, *args: Any, **kwargs: Any) -> Any:
        if thread_pool is not None:
            thread_pool.shutdown(wait=False)  # never started a thread: the one it asked for is unused
        return original(futures.ThreadPoolExecutor(max_workers=threads), *args, **kwargs)

    return server


def main() -> None:
    grpc.server = sized_server(PROVIDER_THREADS)
    runpy.run_module("pulumi.dynamic", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
