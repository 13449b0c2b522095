"""`virtstack schema`: the JSON Schema of the stack file."""

from __future__ import annotations

import click

from virtstack.cli.common import write_output
from virtstack.ops.schema import schema_text


@click.command("schema")
@click.option("--out", metavar="FILE", default=None, help="Write the schema to FILE instead of printing it.")
def schema_command(out: str | None) -> None:
    """Print the JSON Schema of stack files (a copy is committed as schema/stack.schema.json).

    Editors with yaml-language-server use it when a stack file starts with
    `# yaml-language-server: $schema=../schema/stack.schema.json`."""
    write_output(schema_text(), out)


def register(group: click.Group) -> None:
    group.add_command(schema_command)
