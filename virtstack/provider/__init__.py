"""virtstack's libvirt backend: Pulumi resources whose CRUD talks to libvirt through libvirt-python.

Why our own backend: pulumi-libvirt's provider binary (pulumi-resource-libvirt, bridging
terraform-provider-libvirt) cannot be obtained on machines without internet — neither it nor the
Terraform provider it wraps is served by the Go module proxy. These resources are Pulumi dynamic
resources: the real engine plans, diffs, refreshes and records them like any provider's.

Only `components/libvirt_args.py` builds their arguments, so this backend can be swapped for
pulumi-libvirt (or its successor) without touching the rest of the project.
"""

from __future__ import annotations

from virtstack.settings import Settings

# How many resource operations the provider process runs at once (virtstack.provider.server; Pulumi's
# own server runs 4). 16 lets the engine's `--parallel` (16, virtstack.ops.project.ENGINE_PARALLEL)
# through; the libvirt connections per host are sized for it (connection.CONNECTIONS_PER_HOST).
PROVIDER_THREADS = Settings.from_env().provider_threads  # VIRTSTACK_PROVIDER_THREADS, default 16
