"""Plans and drift reports as text: a table for terminals, JSON for tools, markdown for pull requests.

Public API:
    render_plan(plan, stack, fmt) -> str        fmt: "table" | "json" | "markdown"
    render_drift(drift, stack, fmt) -> str
    plan_json(plan, stack) -> dict               the documented, stable JSON (docs/plan-json.md)
    drift_json(drift, stack) -> dict
    summary_line(plan) -> str                    "1 to create, 1 to redefine (the VM restarts)"

The JSON keys, action names and the order of entries (VMs and hosts by name, objects by kind then
name) are stable; the words in `details` and `description` are for people and may improve.
"""

from __future__ import annotations

import json
from typing import Any

from virtstack.ops.classify import Action, Change, Plan
from virtstack.ops.drift import Drift, Finding

__all__ = [
    "DRIFT_FORMAT",
    "FORMATS",
    "PLAN_FORMAT",
    "drift_json",
    "plan_json",
    "render_drift",
    "render_plan",
    "summary_line",
]

FORMATS = ("table", "json", "markdown")
PLAN_FORMAT = "virtstack.plan/v1"
DRIFT_FORMAT = "virtstack.drift/v1"

_SUMMARY_WORDS = {
    Action.CREATE: "to create",
    Action.UPDATE: "to update in place",
    Action.REDEFINE: "to redefine (the VM restarts)",
    Action.REPLACE: "to replace",
    Action.REPLACE_DATA_LOSS: "to replace with data loss",
    Action.DELETE: "to delete",
}


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _scope(vms: int, hosts: int) -> str:
    parts = []
    if vms:
        parts.append(_plural(vms, "VM"))
    if hosts:
        parts.append(_plural(hosts, "host"))
    return " and ".join(parts) if parts else "the stack"


def summary_line(plan: Plan) -> str:
    counts = plan.counts()
    parts = [f"{counts[action]} {_SUMMARY_WORDS[action]}" for action in Action if counts[action]]
    return ", ".join(parts) if parts else "no changes"


def _data_loss_sentence(plan: Plan, code: str = "") -> str:
    def quote(text: str) -> str:
        return f"{code}{text}{code}"

    destroyed = ", ".join(plan.destroyed_disks)
    sentence = f"Data loss: destroys {destroyed}."
    if plan.refused_data_loss:
        sentence += (
            f" {quote('virtstack up')} refuses this plan unless run with {quote('--allow-data-loss')}."
        )
    return sentence


def _headline(plan: Plan) -> str:
    changes = plan.changes
    return f"{_plural(len(changes), 'change')} to {_scope(len(plan.vms), len(plan.hosts))}"


# -------------------------------------------------------------------------------------------- JSON


def _change_json(change: Change) -> dict[str, Any]:
    info = change.resource
    return {
        "object": info.label,
        "kind": info.kind,
        "name": info.name,
        "type": info.type,
        "urn": info.urn,
        "action": change.action.value,
        "data_loss": change.data_loss,
        "keys": list(change.keys),
        "details": list(change.details),
    }


def plan_json(plan: Plan, stack: str) -> dict[str, Any]:
    counts = plan.counts()
    return {
        "format": PLAN_FORMAT,
        "stack": stack,
        "has_changes": plan.has_changes,
        "data_loss": plan.data_loss,
        "summary": {
            **{action.value: counts[action] for action in Action},
            "total": len(plan.changes),
            "disks_destroyed": len(plan.destroyed_disks),
        },
        "refused_without_allow_data_loss": list(plan.refused_data_loss),
        "vms": [
            {
                "vm": vm.vm,
                "host": vm.host,
                "action": vm.action.value,
                "data_loss": vm.data_loss,
                "description": vm.words,
                "changes": [_change_json(c) for c in vm.changes],
            }
            for vm in plan.vms
        ],
        "hosts": [{"host": h.host, "changes": [_change_json(c) for c in h.changes]} for h in plan.hosts],
        "other": [_change_json(c) for c in plan.other],
    }


# ------------------------------------------------------------------------------------------- table


def _plan_table(plan: Plan, stack: str) -> str:
    if not plan.has_changes:
        return f"Plan for stack {stack}: no changes.\n"
    lines = [f"Plan for stack {stack}: {_headline(plan)}", ""]
    all_changes = plan.changes
    width0 = max(len(c.short) for c in all_changes)
    width1 = max(len(c.resource.label) for c in all_changes)

    def row(change: Change) -> str:
        details = "; ".join(change.details)
        return f"  {change.short:<{width0}}  {change.resource.label:<{width1}}  {details}".rstrip()

    for vm in plan.vms:
        where = f" on {vm.host}" if vm.host else ""
        lines.append(f"vm {vm.vm}{where}: {vm.words}")
        lines += [row(c) for c in vm.changes]
    for host in plan.hosts:
        lines.append(f"host {host.host}")
        lines += [row(c) for c in host.changes]
    if plan.other:
        lines.append("stack")
        lines += [row(c) for c in plan.other]
    lines += ["", f"Summary: {summary_line(plan)}."]
    if plan.data_loss:
        lines.append(_data_loss_sentence(plan))
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------- markdown


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _md_change(change: Change) -> str:
    action = f"**{change.short}**" if change.data_loss else change.short
    details = "; ".join(change.details)
    return _md(f"{change.resource.label}: {action}" + (f" — {details}" if details else ""))


def _plan_markdown(plan: Plan, stack: str) -> str:
    lines = [f"### virtstack plan: stack `{stack}`", ""]
    if not plan.has_changes:
        lines.append("No changes: the stack matches its stack file and the real state.")
        return "\n".join(lines) + "\n"
    lines += [f"**{_headline(plan)}:** {summary_line(plan)}.", ""]
    if plan.data_loss:
        lines += ["> [!CAUTION]", f"> **{_data_loss_sentence(plan, '`')}**", ""]
    if plan.vms:
        lines += ["| VM | Host | Change | What happens |", "|---|---|---|---|"]
        for vm in plan.vms:
            change = f"**{vm.words}**" if vm.data_loss else vm.words
            what = "<br>".join(_md_change(c) for c in vm.changes)
            lines.append(f"| `{vm.vm}` | {_md(vm.host or '')} | {_md(change)} | {what} |")
        lines.append("")
    others = [(h.host, c) for h in plan.hosts for c in h.changes] + [("", c) for c in plan.other]
    if others:
        lines += ["| Host | Object | Change | Details |", "|---|---|---|---|"]
        for host, c in others:
            action = f"**{c.short}**" if c.data_loss else c.short
            lines.append(
                f"| {_md(host)} | {_md(c.resource.label)} | {action} | {_md('; '.join(c.details))} |"
            )
        lines.append("")
    lines.append("<sub>`virtstack plan --format markdown`</sub>")
    return "\n".join(lines) + "\n"


def render_plan(plan: Plan, stack: str, fmt: str) -> str:
    if fmt == "json":
        return json.dumps(plan_json(plan, stack), indent=2, ensure_ascii=False) + "\n"
    if fmt == "markdown":
        return _plan_markdown(plan, stack)
    return _plan_table(plan, stack)


# ------------------------------------------------------------------------------------------- drift


def _finding_json(finding: Finding) -> dict[str, Any]:
    info = finding.resource
    return {
        "object": info.label,
        "kind": info.kind,
        "name": info.name,
        "type": info.type,
        "urn": info.urn,
        "problem": finding.problem,
        "details": list(finding.details),
    }


def drift_json(drift: Drift, stack: str) -> dict[str, Any]:
    return {
        "format": DRIFT_FORMAT,
        "stack": stack,
        "drift": drift.has_drift,
        "vms": [
            {
                "vm": vm.vm,
                "host": vm.host,
                "summary": vm.summary,
                "findings": [_finding_json(f) for f in vm.findings],
            }
            for vm in drift.vms
        ],
        "hosts": [{"host": h.host, "findings": [_finding_json(f) for f in h.findings]} for h in drift.hosts],
        "other": [_finding_json(f) for f in drift.other],
    }


def _drift_headline(drift: Drift) -> str:
    count = len(drift.vms) + len(drift.hosts) + (1 if drift.other else 0)
    verb = "differs" if count == 1 else "differ"
    return f"{_scope(len(drift.vms), len(drift.hosts) + (1 if drift.other else 0))} {verb}"


def _drift_table(drift: Drift, stack: str) -> str:
    if not drift.has_drift:
        return f"No drift in stack {stack}: every object matches the desired state.\n"
    lines = [f"Drift in stack {stack}: {_drift_headline(drift)} from the desired state", ""]
    width = max(len(f.resource.label) for f in drift.findings)
    for vm in drift.vms:
        lines.append(f"vm {vm.vm}" + (f" on {vm.host}" if vm.host else ""))
        lines += [f"  {f.resource.label:<{width}}  {f.text}" for f in vm.findings]
    for host in drift.hosts:
        lines.append(f"host {host.host}")
        lines += [f"  {f.resource.label:<{width}}  {f.text}" for f in host.findings]
    if drift.other:
        lines.append("stack")
        lines += [f"  {f.resource.label:<{width}}  {f.text}" for f in drift.other]
    lines += ["", f"`virtstack up -s {stack}` brings them back to the desired state."]
    return "\n".join(lines) + "\n"


def _drift_markdown(drift: Drift, stack: str) -> str:
    lines = [f"### virtstack drift: stack `{stack}`", ""]
    if not drift.has_drift:
        lines.append("No drift: every object matches the desired state.")
        return "\n".join(lines) + "\n"
    lines += [
        f"**{_drift_headline(drift)} from the desired state.** `virtstack up -s {stack}` brings them back.",
        "",
        "| Owner | Object | Problem |",
        "|---|---|---|",
    ]
    for vm in drift.vms:
        lines += [f"| vm `{vm.vm}` | {_md(f.resource.label)} | {_md(f.text)} |" for f in vm.findings]
    for host in drift.hosts:
        lines += [f"| host `{host.host}` | {_md(f.resource.label)} | {_md(f.text)} |" for f in host.findings]
    lines += [f"| stack | {_md(f.resource.label)} | {_md(f.text)} |" for f in drift.other]
    return "\n".join(lines) + "\n"


def render_drift(drift: Drift, stack: str, fmt: str) -> str:
    if fmt == "json":
        return json.dumps(drift_json(drift, stack), indent=2, ensure_ascii=False) + "\n"
    if fmt == "markdown":
        return _drift_markdown(drift, stack)
    return _drift_table(drift, stack)
