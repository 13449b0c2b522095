"""virtstack's libvirt backend: Pulumi resources whose CRUD talks to libvirt through libvirt-python.

Why our own backend: pulumi-libvirt's provider binary (pulumi-resource-libvirt, bridging
terraform-provider-libvirt) cannot be obtained on machines without internet — neither it nor the
Terraform provider it wraps is served by the Go module proxy. These resources are Pulumi dynamic
resources: the real engine plans, diffs, refreshes and records them like any provider's.

Only `components/libvirt_args.py` builds their arguments, so this backend can be swapped for
pulumi-libvirt (or its successor) without touching the rest of the project.
"""
