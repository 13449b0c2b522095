"""`virtstack validate`: check a stack file and show where its VMs go — no engine, no libvirt."""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator
from pathlib import Path

import click

from virtstack.cli.common import services, stack_name, stack_option
from virtstack.errors import VirtstackError
from virtstack.ops.project import Project, SpecFile
from virtstack.ops.validation import render_validation, validate_spec_file


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """Keep the cyclic garbage collector out of a one-shot load: for the command's edge, not the library.

    Loading allocates hundreds of thousands of long-lived, acyclic objects (events, dicts, models);
    each allocation burst triggers collections that re-scan all of them, which made a 10,000-VM file
    several times slower to validate.  Nothing built there is cyclic garbage."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        # What was allocated meanwhile would all be walked by the first collection after re-enabling;
        # the command is about to end, so it is moved out of the collector's sight instead.
        gc.freeze()
        if was_enabled:
            gc.enable()


@click.command("validate")
@stack_option
@click.option(
    "-f",
    "--file",
    "file",
    metavar="FILE",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Validate this stack file instead of the stack's.",
)
@click.pass_context
def validate_command(ctx: click.Context, stack: str | None, file: Path | None) -> None:
    """Validate the stack file and print the placement: each VM's host, and per host the vCPUs,
    memory and disk used of its capacity.  Exit 0, or 1 with every problem, one per line."""
    project: Project | None
    if file is not None:
        spec_file = SpecFile(file, str(file))
        try:
            project = services(ctx).project()
        except VirtstackError:  # a file outside any project: its image paths mean nothing yet
            project = None
    else:
        project = services(ctx).project()
        spec_file = project.spec_file(stack_name(ctx, stack))
    root = project.root if project is not None else None
    with collector_paused():
        placed = validate_spec_file(spec_file, root, services(ctx).environ)
    click.echo(render_validation(spec_file, placed), nl=False)


def register(group: click.Group) -> None:
    group.add_command(validate_command)
