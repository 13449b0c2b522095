"""The Pulumi program: stacks/<stack>.yaml → validated models → the Fleet component tree.

Config is read only here. Spec errors end the run with one clean message (no traceback) before any
libvirt call.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pulumi

from components import Fleet, FleetArgs
from virtstack.edge import previous_placement, resolve_connections, resolve_images, resolve_passwords
from virtstack.errors import VirtstackError
from virtstack.settings import Settings
from virtstack.spec.loader import load_stack

PROJECT_ROOT = Path(__file__).resolve().parent


def main() -> None:
    stack = pulumi.get_stack()
    spec_file = pulumi.Config("virtstack").get("spec") or f"stacks/{stack}.yaml"
    try:
        loaded = load_stack(PROJECT_ROOT / spec_file, display_name=spec_file)
        spec = resolve_passwords(loaded.spec, PROJECT_ROOT, spec_file)
        images = resolve_images(
            spec, PROJECT_ROOT, spec_file, {vm.image for vm in loaded.fleet if vm.imported is None}
        )
        fleet = Fleet(
            "fleet",
            FleetArgs(
                spec=spec,
                stack=stack,
                spec_file=spec_file,
                connections=resolve_connections(spec, PROJECT_ROOT),
                images=images,
                previous_placement=previous_placement(stack),
                project=pulumi.get_project(),
            ),
        )
    except VirtstackError as err:
        # One clean message and a "bail" exit (32): the engine shows the message, no traceback and no
        # second "unhandled error" line.
        pulumi.log.error(str(err))
        sys.exit(32)
    pulumi.export("placement", fleet.placement)
    pulumi.export("vms", fleet.vms)
    pulumi.export("hosts", {name: host.uri for name, host in fleet.hosts.items()})


if Settings.from_env().baseline_fixed_cost:
    # The bench's baseline: the pulumi-libvirt SDK imported in every run again (components.pulumi_libvirt).
    import pulumi_libvirt  # noqa: F401

main()
