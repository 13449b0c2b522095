"""What the provider says of an object while `up`/`destroy` work on it reaches the person running it."""

from __future__ import annotations

from clifakes import load_events
from pulumi.automation import events

from virtstack.ops.progress import Progress


def diagnostic(urn: str, message: str, severity: str, ephemeral: bool = False) -> events.EngineEvent:
    return events.EngineEvent.from_json(
        {
            "sequence": 9999,
            "timestamp": 0,
            "diagnosticEvent": {
                "urn": urn,
                "message": message + "\n",
                "color": "never",
                "severity": severity,
                "ephemeral": ephemeral,
            },
        }
    )


def test_a_kept_pool_and_a_trashed_disk_are_said_in_the_progress_lines() -> None:
    lines: list[str] = []
    progress = Progress(lines.append, clock=lambda: 0.0)
    recorded = load_events("up-create")
    for event in recorded:
        progress(event)
    steps = [e.resource_pre_event.metadata for e in recorded if e.resource_pre_event is not None]
    pool = next(s.urn for s in steps if s.type.endswith(":Pool"))
    data = next(s.urn for s in steps if s.type.endswith(":Volume") and "data-data" in s.urn)
    before = len(lines)
    progress(diagnostic(pool, "pool rec on host local is kept: it still holds 1 volume(s)", "warning"))
    progress(diagnostic(data, "rec-vm-data.qcow2 kept in the trash of pool rec as trash@…", "info"))
    progress(diagnostic(data, "a passing status line", "info", ephemeral=True))
    # What a dynamic provider logs arrives attributed to the stack: shown as it is.
    stack = "urn:pulumi:rec::virtstack::pulumi:pulumi:Stack::virtstack-rec"
    progress(diagnostic(stack, "app-data.qcow2 kept in the trash of pool vms as trash@…", "info"))
    progress(diagnostic(stack, "debug noise", "debug"))
    assert lines[before:] == [
        "[   0.0s] host local: pool rec: warning: pool rec on host local is kept: it still holds 1 volume(s)",
        "[   0.0s] vm rec-vm: data disk data: rec-vm-data.qcow2 kept in the trash of pool rec as trash@…",
        "[   0.0s] app-data.qcow2 kept in the trash of pool vms as trash@…",
    ]
