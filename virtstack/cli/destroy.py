"""`virtstack destroy`: delete every object of a stack."""

from __future__ import annotations

import click

from virtstack.cli.common import (
    data_loss_options,
    make_runner,
    require_terminal_or_yes,
    services,
    stack_name,
    stack_option,
    trash_note,
)
from virtstack.ops.apply import destroy_stack
from virtstack.ops.classify import Plan
from virtstack.ops.progress import Progress
from virtstack.ops.render import render_plan


@click.command("destroy")
@stack_option
@click.option(
    "-y", "--yes", is_flag=True, help="Destroy without asking (required when stdin is not a terminal)."
)
@data_loss_options
@click.pass_context
def destroy_command(
    ctx: click.Context, stack: str | None, yes: bool, allow_data_loss: bool, no_trash: bool
) -> None:
    """Delete the stack's VMs, their disks (and data), networks, pools and base images.  The stack's
    history and configuration stay.  Disks that hold data need --allow-data-loss (they are kept in
    the trash unless --no-trash); VMs with `protect: true` and what they use are kept."""
    name = stack_name(ctx, stack)
    require_terminal_or_yes(ctx, yes, f"destroy stack {name}")
    engine = services(ctx).engine()
    progress = Progress(click.echo, services(ctx).clock)

    def show(plan: Plan) -> None:
        if plan.has_changes:
            click.echo(render_plan(plan, name, "table"), nl=False)
            note = trash_note(plan, ctx, name, no_trash)
            if note:
                click.echo(note)

    def confirm(plan: Plan) -> bool:
        question = f"\nDestroy all of stack {name}, including the data on its disks?"
        if not yes and not click.confirm(question, default=False):
            return False
        click.echo(f"\nDestroying stack {name}:")
        progress.restart()
        return True

    plan = destroy_stack(
        engine,
        name,
        allow_data_loss=allow_data_loss,
        confirm=confirm,
        on_plan=show,
        on_event=progress,
        run=make_runner(ctx, name, "destroy"),
    )
    if not plan.has_changes:
        click.echo(f"Stack {name} holds nothing to destroy.")
        return
    click.echo(f"\nDone: {progress.summary()}.")


def register(group: click.Group) -> None:
    group.add_command(destroy_command)
