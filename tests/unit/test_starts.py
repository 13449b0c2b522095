"""virtstack.ops.starts: when `up` started each domain, from the engine's events."""

from __future__ import annotations

from typing import Any

import pytest
from pulumi.automation import events

from virtstack.ops.starts import DomainStarts

DOMAIN = "pulumi-python:dynamic/virtstack:Domain"
VOLUME = "pulumi-python:dynamic/virtstack:Volume"


def _outputs_event(op: str, type_: str = DOMAIN, outputs: dict[str, Any] | None = None) -> events.EngineEvent:
    state = events.StepEventStateMetadata(
        type=type_,
        urn="urn:x",
        custom=True,
        delete=False,
        id="i",
        parent="",
        protect=False,
        inputs={},
        outputs={"name": "web-1"} if outputs is None else outputs,
        provider="",
    )
    meta = events.StepEventMetadata(
        op=events.OpType(op),
        urn="urn:x",
        type=type_,
        new=state,
        old=None,
        keys=None,
        diffs=None,
        detailed_diff=None,
        logical=None,
        provider="",
    )
    return events.EngineEvent(
        sequence=0, timestamp=0, res_outputs_event=events.ResOutputsEvent(metadata=meta)
    )


@pytest.mark.parametrize(
    ("event", "recorded"),
    [
        (_outputs_event("create"), {"web-1": 7.0}),
        (_outputs_event("update"), {"web-1": 7.0}),
        (_outputs_event("replace"), {"web-1": 7.0}),
        (_outputs_event("create-replacement"), {"web-1": 7.0}),
        # unchanged or only read: not started by this up
        (_outputs_event("same"), {}),
        (_outputs_event("refresh"), {}),
        (_outputs_event("read"), {}),
        (_outputs_event("delete"), {}),
        # not a domain, or no name
        (_outputs_event("create", VOLUME), {}),
        (_outputs_event("create", outputs={}), {}),
        (events.EngineEvent(sequence=0, timestamp=0), {}),
    ],
)
def test_which_events_mark_a_start(event: events.EngineEvent, recorded: dict[str, float]) -> None:
    starts = DomainStarts(clock=lambda: 7.0)
    starts(event)
    assert starts.at == recorded


def test_the_latest_start_of_a_domain_wins() -> None:
    times = iter([1.0, 5.0])
    starts = DomainStarts(clock=lambda: next(times))
    starts(_outputs_event("create"))
    starts(_outputs_event("update"))
    assert starts.at == {"web-1": 5.0}
