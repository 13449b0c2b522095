"""Open a libvirt URI N times next to a busy gRPC server, as the Pulumi dynamic-provider process does,
and print how many opens failed (JSON). Run as a script by tests/integration/test_remote_hosts.py:

    python tests/integration/grpc_fork_probe.py URI N

Why: qemu+ssh forks libvirt's ssh child from this process; with gRPC's fork handlers on, gRPC ran in
that child and now and then killed it ("Cannot recv data: ... Epoll1Poller ... Connection reset by
peer"). GRPC_ENABLE_FORK_SUPPORT in the environment decides whether the handlers are installed.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import sys
import threading
import time

import grpc
import libvirt

DAEMON_AWAY = ("virt-ssh-helper: cannot connect", "Failed to connect socket")


def main() -> None:
    uri, count = sys.argv[1], int(sys.argv[2])
    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)

    def echo(request: bytes, _context: grpc.ServicerContext) -> bytes:
        return request

    handler = grpc.method_handlers_generic_handler(
        "probe.P", {"E": grpc.unary_unary_rpc_method_handler(echo)}
    )
    server = grpc.server(concurrent.futures.ThreadPoolExecutor(max_workers=4), handlers=[handler])
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    call = channel.unary_unary("/probe.P/E")
    stop = threading.Event()
    rpcs = 0

    def busy() -> None:  # the engine's calls into the provider, while operations open connections
        nonlocal rpcs
        while not stop.is_set():
            call(b"x", timeout=5)
            rpcs += 1
            time.sleep(0.002)

    threading.Thread(target=busy, daemon=True).start()
    failures: list[str] = []
    daemon_away = 0
    started = time.monotonic()
    for _ in range(count):
        try:
            conn = libvirt.open(uri)
            conn.listAllDomains()
            conn.close()
        except libvirt.libvirtError as err:
            text = str(err).splitlines()[0][:200]
            # The far side answered that its daemon is not there (another test restarting the shared
            # daemon): the ssh child did its job, so that is no transport failure.
            if any(mark in text for mark in DAEMON_AWAY):
                daemon_away += 1
                time.sleep(1)
            else:
                failures.append(text)
    stop.set()
    print(
        json.dumps(
            {
                "fork_support": os.environ.get("GRPC_ENABLE_FORK_SUPPORT"),
                "opens": count,
                "failures": len(failures),
                "daemon_away": daemon_away,
                "examples": failures[:3],
                "rpcs": rpcs,
                "seconds": round(time.monotonic() - started, 1),
            }
        ),
        flush=True,
    )
    # The server's threads are not joined: a plain exit is enough for a probe.
    os._exit(0)


if __name__ == "__main__":
    main()
