"""`virtstack import`: existing domains of a host as stack-file entries, to merge into the stack file;
the next `up` adopts them without restarting them."""

from __future__ import annotations

import click
import yaml

from virtstack.cli.common import services, stack_name, stack_option, write_output
from virtstack.errors import VirtstackError
from virtstack.importer import fragment
from virtstack.ops.importing import import_domains
from virtstack.spec.loader import load_spec


@click.command("import")
@stack_option
@click.option("--host", "host", required=True, metavar="HOST", help="The stack file's host to read.")
@click.option(
    "--domain",
    "domains",
    multiple=True,
    metavar="NAME",
    help="A domain to import (repeatable; default: every domain of the host that no stack owns).",
)
@click.option(
    "--out", metavar="FILE", default=None, help="Write the entries to FILE instead of printing them."
)
@click.option(
    "--own",
    is_flag=True,
    help="Confirm that the imported domains become this stack's (imported.owned: true): `up` records "
    "the stack as their owner and `destroy` may then delete them.",
)
@click.pass_context
def import_command(
    ctx: click.Context, stack: str | None, host: str, domains: tuple[str, ...], out: str | None, own: bool
) -> None:
    """Write stack-file entries for existing domains of HOST: one VM group per domain, pinned to the
    host, its disks as existing volumes (imported.disks) and the pools and networks they use as
    external.  Merge them into the stack file; the next `up` adopts the domains without restarting
    them, and the plan after that shows no change.  Nothing is changed by this command."""
    name = stack_name(ctx, stack)
    svc = services(ctx)
    spec_file = svc.project().spec_file(name)
    spec = load_spec(spec_file.path, display_name=spec_file.display)
    if host not in spec.hosts:
        raise VirtstackError(
            f"{spec_file.display} has no host {host} (hosts: {', '.join(sorted(spec.hosts))})"
        )
    entries, networks = import_domains(spec.hosts[host].uri, host, domains, svc.libvirt_opener(), own)
    if not entries:
        raise VirtstackError(f"host {host} has no domain to import (every domain belongs to a stack)")
    header = (
        f"# virtstack import from host {host} for stack {name}: merge into {spec_file.display}\n"
        f"# ({len(entries)} domain{'s' if len(entries) != 1 else ''}; "
        "`virtstack up` adopts them without a restart)\n"
    )
    text = header + yaml.safe_dump(fragment(host, entries, networks), sort_keys=False)
    write_output(text, out)


def register(group: click.Group) -> None:
    group.add_command(import_command)
