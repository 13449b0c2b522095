"""virtstack's libvirt backend: Pulumi resources whose CRUD talks to libvirt through libvirt-python.

Why our own backend: pulumi-libvirt's provider binary (pulumi-resource-libvirt, bridging
terraform-provider-libvirt) cannot be obtained on machines without internet — neither it nor the
Terraform provider it wraps is served by the Go module proxy. These resources are Pulumi dynamic
resources: the real engine plans, diffs, refreshes and records them like any provider's.

Only `components/libvirt_args.py` builds their arguments, so this backend can be swapped for
pulumi-libvirt (or its successor) without touching the rest of the project.
"""

from __future__ import annotations

import concurrent.futures
import gc
import sys

from virtstack.settings import Settings

# How many resource operations the provider process runs at once. Pulumi's dynamic-provider server
# (`python -m pulumi.dynamic`, pulumi 3.272) serves the engine from a pool of 4 threads, so at most 4
# of the engine's operations (`--parallel`, 8 by default) ran at once: a 25-VM `up` queued behind 4
# domain starts at a time. 16 lets `--parallel` up to 16 through; the libvirt connections per host
# are sized for it (connection.CONNECTIONS_PER_HOST).
PROVIDER_THREADS = Settings.from_env().provider_threads  # VIRTSTACK_PROVIDER_THREADS, default 16


def _widen_provider_threads(threads: int) -> None:
    """Raise the dynamic-provider server's thread pool to `threads` (a no-op in any other process).

    This package is first imported inside that process when the engine's first call unpickles a
    provider, after the server started; ThreadPoolExecutor reads `_max_workers` on every submit, so
    the raised bound holds from the next call on.
    """
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    if spec is None or spec.name != "pulumi.dynamic.__main__":
        return
    for obj in gc.get_objects():
        if isinstance(obj, concurrent.futures.ThreadPoolExecutor) and obj._max_workers < threads:
            obj._max_workers = threads


_widen_provider_threads(PROVIDER_THREADS)
