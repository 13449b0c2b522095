"""`virtstack env`: the environment every virtstack and engine run uses (virtstack.settings)."""

from __future__ import annotations

import shlex

import click

from virtstack.cli.common import services
from virtstack.settings import Settings, redact_url


@click.command("env")
@click.option(
    "--shell", is_flag=True, help="Print `export` lines for a POSIX shell (what scripts/env.sh runs)."
)
def env_command(shell: bool) -> None:
    """Print the settings virtstack runs with: backend, PULUMI_HOME, toolchain, parallelism…  A value
    already set in the environment wins; the local development passphrase is added only where it is
    allowed (a local file backend, not CI).  `eval "$(virtstack env --shell)"` sets them in a shell."""
    svc = services(click.get_current_context())
    environ, root = svc.environ, svc.project().root
    settings = Settings.from_env(environ, root=root)
    lines = settings.shell_exports(environ)
    if not shell:  # a listing, which may end up in a log: no password of a backend URL
        lines = [line.removeprefix("export ") for line in lines]
        lines = [
            f"PULUMI_BACKEND_URL={shlex.quote(redact_url(settings.backend_url))}"
            if line.startswith("PULUMI_BACKEND_URL=")
            else line
            for line in lines
        ]
    click.echo("\n".join(lines))


def register(group: click.Group) -> None:
    group.add_command(env_command)
