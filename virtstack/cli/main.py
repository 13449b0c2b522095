"""`virtstack`: the command line.  Thin: each command group is a module here calling virtstack.ops.

Errors: a VirtstackError (bad stack file, engine failure, refusal…) is printed as clean lines and
exits 1; Ctrl-C exits 130 after the engine stopped; anything unexpected prints one line and the path
of a log file holding the traceback, and exits 1.
"""

from __future__ import annotations

import importlib
import signal
import sys
from typing import Any

import click

from virtstack.cli.common import echo_err, services
from virtstack.errors import SpecError, VirtstackError
from virtstack.ops.errors import Cancelled, Interrupted
from virtstack.ops.logs import crash_log

__all__ = ["cli", "main"]


# The commands (name -> module of virtstack.cli, whose register(group) adds it). A module is
# imported when its command runs (or --help lists them all), so `virtstack validate` never imports
# the engine layer that up/plan/destroy need.
COMMANDS = {
    "validate": "validate",
    "plan": "plan",
    "up": "up",
    "drift": "drift",
    "destroy": "destroy",
    "inventory": "inventory",
    "trash": "trash",
    "schema": "schema",
    "env": "env",
    "rebalance": "rebalance",
    "hosts": "hosts",
    "import": "importcmd",
    "comment": "comment",
    "snapshot": "snapshot",
    "doctor": "doctor",
}


class VirtstackGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(COMMANDS) | set(self.commands))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in COMMANDS:
            importlib.import_module(f"virtstack.cli.{COMMANDS[cmd_name]}").register(self)
        return super().get_command(ctx, cmd_name)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except Interrupted as err:
            echo_err(str(err))
            ctx.exit(130)
        except Cancelled as err:
            echo_err(str(err))
            ctx.exit(1)
        except SpecError as err:
            echo_err(str(err))
            ctx.exit(1)
        except VirtstackError as err:
            echo_err(f"error: {err}")
            ctx.exit(1)
        except KeyboardInterrupt:
            echo_err("interrupted")
            ctx.exit(130)
        except Exception as err:
            svc = services(ctx)
            try:
                path = str(crash_log(svc.log_dir(), err, sys.argv[1:], svc.now()))
            except OSError as log_err:
                path = f"(could not write a log: {log_err})"
            echo_err(f"error: unexpected {type(err).__name__}: {err}")
            echo_err(f"The traceback is in {path} — please include it when reporting this.")
            ctx.exit(1)


@click.group(cls=VirtstackGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="virtstack", prog_name="virtstack")
def cli() -> None:
    """Infrastructure as code for libvirt fleets: hosts, hypervisors and VMs from one stack file,
    reconciled by the Pulumi engine."""


def main(argv: list[str] | None = None) -> None:
    """Console script entry point (pyproject: virtstack = virtstack.cli.main:main)."""
    # `virtstack trash list | head`: a reader that stops early ends us quietly, as it does any
    # Unix command, instead of an "unexpected BrokenPipeError".
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    cli.main(args=argv, prog_name="virtstack")


if __name__ == "__main__":  # pragma: no cover
    main()
