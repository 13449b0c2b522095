"""The stack's placement as `up` would make it: the stack file placed with the last deployment's
placement as ``previous`` (so deployed VMs stay where they are), for `rebalance` and `hosts`.

Public API:
    deployed_placement(engine, stack) -> dict[str, str]   vm -> host of the last deployment ({}:
                                                          never deployed)
    current_placement(spec_file, previous) -> (LoadedStack, PlacedFleet)
"""

from __future__ import annotations

from collections.abc import Mapping

from virtstack.ops.engine import EngineApi
from virtstack.ops.errors import StackNotFound
from virtstack.ops.project import SpecFile
from virtstack.placement import PlacedFleet, place_fleet
from virtstack.spec.loader import LoadedStack, load_stack

__all__ = ["current_placement", "deployed_placement"]


def deployed_placement(engine: EngineApi, stack: str) -> dict[str, str]:
    try:
        return engine.previous_placement(stack)
    except StackNotFound:
        return {}


def current_placement(spec_file: SpecFile, previous: Mapping[str, str]) -> tuple[LoadedStack, PlacedFleet]:
    stack = load_stack(spec_file.path, display_name=spec_file.display, deployed=previous)
    placed = place_fleet(stack.spec, spec_file.display, previous=previous, fleet=stack.fleet)
    return stack, placed
