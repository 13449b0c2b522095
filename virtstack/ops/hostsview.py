"""`virtstack hosts` as text: per host and resource, capacity, this stack, others, free, and the
projection after the plan with a bar (table for terminals, markdown for pull requests, JSON).

Public API:
    render_hosts(rows, readings, stack, fmt) -> str     fmt: "table" | "json" | "markdown"
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

from virtstack.hostcap import HostProjection, HostReading, bar
from virtstack.provider.connection import display_uri

__all__ = ["FORMATS", "HOSTS_FORMAT", "render_hosts"]

FORMATS = ("table", "json", "markdown")
HOSTS_FORMAT = "virtstack.hosts/v1"


def _resource(row: HostProjection) -> str:
    return "vCPUs" if row.resource == "vcpus" else row.resource


def _capacity(row: HostProjection) -> str:
    if row.capacity == row.raw:
        return row.show(row.capacity)
    return f"{row.show(row.capacity)} (raw {row.show(row.raw)})"


def _cells(row: HostProjection) -> list[str]:
    return [
        _capacity(row),
        row.show(row.ours),
        row.show(row.others),
        row.show(row.free),
        f"{row.show(row.after)} {bar(row.share_after)} {round(100 * row.share_after)}%",
    ]


HEADER = ["HOST", "RESOURCE", "CAPACITY", "THIS STACK", "OTHERS", "FREE", "AFTER PLAN"]


def _others_line(readings: Mapping[str, HostReading]) -> list[str]:
    lines = []
    for host in sorted(readings):
        others = sorted(readings[host].others)
        if others:
            shown = ", ".join(others[:8]) + (f", and {len(others) - 8} more" if len(others) > 8 else "")
            lines.append(f"Others' domains on {host}: {shown}.")
    return lines


def render_hosts(
    rows: Sequence[HostProjection], readings: Mapping[str, HostReading], stack: str, fmt: str
) -> str:
    if fmt == "json":
        doc = {
            "format": HOSTS_FORMAT,
            "stack": stack,
            "hosts": [
                {
                    "host": host,
                    "uri": display_uri(readings[host].uri),
                    "others_domains": sorted(readings[host].others),
                    "resources": [
                        {
                            "resource": row.resource,
                            "raw": row.raw,
                            "capacity": row.capacity,
                            "this_stack": row.ours,
                            "others": row.others,
                            "free": row.free,
                            "after_plan": row.after,
                        }
                        for row in rows
                        if row.host == host
                    ],
                }
                for host in sorted(readings)
            ],
        }
        return json.dumps(doc, indent=2) + "\n"
    body = [[row.host, _resource(row), *_cells(row)] for row in rows]
    if fmt == "markdown":
        lines = [f"### Hosts of stack {stack}", ""]
        lines.append("| " + " | ".join(h.lower() for h in HEADER) + " |")
        lines.append("|" + "---|" * len(HEADER))
        for cells in body:
            cells = [*cells[:-1], f"`{cells[-1]}`"]
            lines.append("| " + " | ".join(cells) + " |")
        others = _others_line(readings)
        return "\n".join(lines + (["", *others] if others else [])) + "\n"
    widths = [max(len(r[i]) for r in [HEADER, *body]) for i in range(len(HEADER))]
    lines = [f"Hosts of stack {stack}:", ""]
    for r in [HEADER, *body]:
        lines.append("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(r)).rstrip())
    others = _others_line(readings)
    return "\n".join(lines + (["", *others] if others else [])) + "\n"
