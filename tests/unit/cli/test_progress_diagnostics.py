"""What the provider says of an object while `up`/`destroy` work on it reaches the person running it."""

from __future__ import annotations

from clifakes import load_events
from pulumi.automation import events

from virtstack.ops.progress import Progress


def diagnostic(message: str, severity: str = "info#err", ephemeral: bool = False) -> events.EngineEvent:
    # As the engine relays a dynamic provider's log (seen on a real destroy): from its stderr, with no
    # object, the level in front of the text.
    return events.EngineEvent.from_json(
        {
            "sequence": 9999,
            "timestamp": 0,
            "diagnosticEvent": {
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
    for event in load_events("up-create"):
        progress(event)
    before = len(lines)
    progress(diagnostic("info: app-data.qcow2 kept in the trash of pool vms as trash@…"))
    progress(diagnostic("warning: pool vms on host local is kept: it still holds 4 volume(s)"))
    progress(diagnostic("info: a passing status line", ephemeral=True))
    progress(diagnostic("some other stderr line"))
    progress(diagnostic("debug: noise", severity="debug"))
    # Seen on a real destroy: two lines in one message, no newline between them.
    progress(diagnostic("info: a.qcow2 kept in the trash of pool vms as tinfo: b.qcow2 kept in the trash"))
    assert lines[before:] == [
        "[   0.0s] app-data.qcow2 kept in the trash of pool vms as trash@…",
        "[   0.0s] warning: pool vms on host local is kept: it still holds 4 volume(s)",
        "[   0.0s] a.qcow2 kept in the trash of pool vms as t",
        "[   0.0s] b.qcow2 kept in the trash",
    ]
