"""`virtstack rebalance` as text: the proposed moves, and the peak utilisation before and after.

Public API:
    render_proposal(proposal, stack, fmt) -> str     fmt: "table" | "json" | "markdown"
"""

from __future__ import annotations

import json

from virtstack.rebalance import Proposal

__all__ = ["FORMATS", "REBALANCE_FORMAT", "render_proposal"]

FORMATS = ("table", "json", "markdown")
REBALANCE_FORMAT = "virtstack.rebalance/v1"


def _percent(share: float) -> str:
    return f"{round(100 * share)}%"


def _headline(proposal: Proposal, stack: str) -> str:
    n = len(proposal.moves)
    if not n:
        return f"Stack {stack}: no move lowers the peak utilisation ({_percent(proposal.peak_before)})."
    moves = "1 move" if n == 1 else f"{n} moves"
    return (
        f"Stack {stack}: {moves} would lower the peak utilisation from {_percent(proposal.peak_before)} "
        f"to {_percent(proposal.peak_after)}."
    )


NOTE = "Nothing was changed: this is a proposal (pin the groups with host: to make it so)."


def render_proposal(proposal: Proposal, stack: str, fmt: str) -> str:
    if fmt == "json":
        doc = {
            "format": REBALANCE_FORMAT,
            "stack": stack,
            "peak_before": round(proposal.peak_before, 4),
            "peak_after": round(proposal.peak_after, 4),
            "moves": [{"vm": m.vm, "from": m.source, "to": m.target} for m in proposal.moves],
        }
        return json.dumps(doc, indent=2) + "\n"
    lines = [_headline(proposal, stack)]
    if proposal.moves:
        if fmt == "markdown":
            lines += ["", "| VM | from | to |", "|---|---|---|"]
            lines += [f"| {m.vm} | {m.source} | {m.target} |" for m in proposal.moves]
        else:
            width = max(len("VM"), *(len(m.vm) for m in proposal.moves))
            lines += [""] + [f"  move {m.vm.ljust(width)}  {m.source} → {m.target}" for m in proposal.moves]
        lines += ["", NOTE]
    return "\n".join(lines) + "\n"
