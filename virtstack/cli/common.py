"""What every command shares: the injectable services, the stack option, output helpers.

Commands find their collaborators in `ctx.obj` (a Services), which `main` creates unless the caller
passed one — CLI tests pass a Services with a fake engine, a fixed clock and a temporary project, so
no command needs the real engine, libvirt or terminal to be tested.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from virtstack.ops.inventory import LeaseLookup, libvirt_leases
from virtstack.ops.project import Project, default_stack, find_project

# The engine layer (and with it pulumi and grpc) is imported where it is used: commands that never
# start the engine (validate, schema, env, trash) do not pay for it (a quarter of their import time).
if TYPE_CHECKING:
    from virtstack.ops.engine import EngineApi

__all__ = [
    "Services",
    "data_loss_options",
    "echo_err",
    "format_option",
    "make_runner",
    "require_terminal_or_yes",
    "services",
    "stack_name",
    "stack_option",
    "trash_note",
    "write_output",
]

F = TypeVar("F", bound=Callable[..., Any])


def _stdin_is_tty() -> bool:
    try:
        return sys.stdin.isatty()
    except (AttributeError, ValueError):
        return False


@dataclass
class Services:
    """The outside world, as commands see it."""

    environ: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    project_factory: Callable[[Mapping[str, str]], Project] | None = None
    engine_factory: Callable[[Project, Mapping[str, str]], EngineApi] | None = None
    lease_lookup: LeaseLookup = libvirt_leases
    stdin_is_tty: Callable[[], bool] = _stdin_is_tty
    now: Callable[[], datetime] = datetime.now
    clock: Callable[[], float] = time.monotonic  # elapsed times in progress lines
    # How `up` checks each VM in libvirt after applying (virtstack.ops.verify.verify_vms).
    verify_vms: Callable[..., list[Any]] | None = None
    # How commands open a host's libvirt connection (the trash; `up` purging expired disks).
    open_libvirt: Callable[[str], Any] | None = None
    _project: Project | None = None
    _engine: EngineApi | None = None

    def project(self) -> Project:
        if self._project is None:
            factory = self.project_factory or (lambda env: find_project(env))
            self._project = factory(self.environ)
        return self._project

    def engine(self) -> EngineApi:
        if self._engine is None:
            if self.engine_factory is not None:
                factory = self.engine_factory
            else:
                from virtstack.ops.engine import Engine

                factory = Engine
            self._engine = factory(self.project(), self.environ)
        return self._engine

    def check_vms(self, outputs: Mapping[str, Any], **kwargs: Any) -> list[Any]:
        if self.verify_vms is not None:
            return self.verify_vms(outputs, **kwargs)
        from virtstack.ops.verify import verify_vms

        return verify_vms(outputs, **kwargs)

    def libvirt_opener(self) -> Callable[[str], Any]:
        if self.open_libvirt is not None:
            return self.open_libvirt
        import libvirt

        return libvirt.open

    def log_dir(self) -> Path:
        try:
            return self.project().log_dir
        except Exception:  # no project found: still keep the log somewhere
            return Path(self.environ.get("VIRTSTACK_LOG_DIR") or Path.home() / ".virtstack" / "logs")


def services(ctx: click.Context) -> Services:
    obj = ctx.find_root().obj
    if not isinstance(obj, Services):
        obj = Services()
        ctx.find_root().obj = obj
    return obj


def stack_option(func: F) -> F:
    return click.option(
        "-s",
        "--stack",
        "stack",
        metavar="STACK",
        default=None,
        help="The stack (default: $VIRTSTACK_STACK, else dev); its stack file is config virtstack:spec "
        "or stacks/<stack>.yaml.",
    )(func)


def stack_name(ctx: click.Context, stack: str | None) -> str:
    return stack or default_stack(services(ctx).environ)


def format_option(choices: tuple[str, ...], default: str) -> Callable[[F], F]:
    def decorate(func: F) -> F:
        return click.option(
            "--format",
            "fmt",
            type=click.Choice(choices),
            default=default,
            show_default=True,
            help="Output format.",
        )(func)

    return decorate


def echo_err(message: str) -> None:
    sys.stdout.flush()  # keep the order of what was printed before, when both go to one file
    click.echo(message, err=True)


def write_output(text: str, out: str | None) -> None:
    """Print `text`, or write it to the file `out`."""
    if out is None:
        click.echo(text, nl=False)
        return
    Path(out).write_text(text, encoding="utf-8")


def require_terminal_or_yes(ctx: click.Context, yes: bool, what: str) -> None:
    from virtstack.ops.errors import Refused

    if not yes and not services(ctx).stdin_is_tty():
        raise Refused(f"refusing to {what} without --yes: there is no terminal to ask for confirmation")


def make_runner(ctx: click.Context, stack: str, action: str) -> Callable[[Callable[[], Any], bool], Any]:
    """A Runner (virtstack.ops.apply) that turns Ctrl-C into a clean stop of the engine."""
    engine = services(ctx).engine()

    def on_interrupt(count: int) -> None:
        if count == 1:
            echo_err(
                "\nInterrupted: asking the engine to stop after the operations in flight "
                "(press Ctrl-C again to kill it at once)…"
            )
        else:
            echo_err("\nKilling the engine…")

    def run(work: Callable[[], Any], changing: bool) -> Any:
        if changing:
            message = (
                f"interrupted: {action} of stack {stack} stopped; objects already done are saved in the "
                f"stack's state. Run `virtstack {action} -s {stack}` again to finish (if it says the stack "
                f"is locked, run `pulumi cancel --stack {stack} --yes` first)."
            )
        else:
            message = f"interrupted: nothing was changed in stack {stack}."
        from virtstack.ops.apply import run_interruptible

        return run_interruptible(work, engine, on_interrupt, message)

    return run


def data_loss_options(func: F) -> F:
    """--allow-data-loss and --no-trash, shared by `up` and `destroy`."""

    def no_trash_callback(ctx: click.Context, _param: click.Parameter, value: bool) -> bool:
        if value:
            from virtstack.provider.trash import NO_TRASH_ENV

            # The provider runs in the engine's process tree: it reads this from its environment.
            env = services(ctx).environ
            if isinstance(env, dict):
                env[NO_TRASH_ENV] = "1"
        return value

    func = click.option(
        "--no-trash",
        is_flag=True,
        expose_value=True,
        callback=no_trash_callback,
        help="Delete disks for good instead of keeping them in the trash for the stack's trash_days.",
    )(func)
    return click.option(
        "--allow-data-loss",
        is_flag=True,
        help="Apply even when the plan deletes or recreates disks that hold data.",
    )(func)


def trash_note(plan: Any, ctx: click.Context, stack: str, no_trash: bool) -> str | None:
    """One line under a plan that destroys disks: where they go."""
    if not plan.destroyed_disks:
        return None
    if no_trash:
        return "Disks this plan deletes are deleted for good (--no-trash)."
    days = "trash_days"
    try:
        from virtstack.spec.loader import load_spec

        spec_file = services(ctx).project().spec_file(stack)
        days = str(load_spec(spec_file.path, display_name=spec_file.display).trash_days)
    except Exception:  # the plan is already shown; the note only lacks the figure
        pass
    return (
        f"Disks this plan deletes are kept in their pool's trash for {days} days "
        f"(`virtstack trash list -s {stack}`; --no-trash deletes them for good)."
    )
