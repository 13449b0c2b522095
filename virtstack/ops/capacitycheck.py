"""Before `plan` and `up` change anything: read every host and refuse a plan that does not fit.

Public API:
    host_projection(project, spec_file, engine, stack, open_uri) -> (rows, readings)
    check_real_capacity(...) -> None     raises CapacityRefused, one line per overfilled resource

Memory and disk (pool space) are refused when the plan would need more than the host has (x
overcommit); vCPUs are time-shared, so an overfilled vCPU count is reported by `virtstack hosts`
but does not refuse the plan unless the host sets an explicit vCPU overcommit.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from virtstack.errors import VirtstackError
from virtstack.hostcap import HostProjection, HostReading, overcommitted, project
from virtstack.ops.engine import EngineApi
from virtstack.ops.fleetplace import current_placement, deployed_placement
from virtstack.ops.hostread import read_hosts
from virtstack.ops.project import Project
from virtstack.ops.trash import owner_of
from virtstack.spec import StackSpec

__all__ = ["CapacityRefused", "check_real_capacity", "host_projection"]


class CapacityRefused(VirtstackError):
    """The plan needs more of a host than it has: nothing was changed."""


def host_projection(
    project_: Project, stack: str, engine: EngineApi, open_uri: Callable[[str], Any]
) -> tuple[StackSpec, list[HostProjection], dict[str, HostReading]]:
    spec_file = project_.spec_file(stack)
    previous = deployed_placement(engine, stack)
    loaded, placed = current_placement(spec_file, previous)
    readings = read_hosts(loaded.spec, owner_of(project_.root, stack), open_uri)
    return loaded.spec, project(loaded.spec, placed.fleet, placed.placement, readings), readings


def enforced(spec: StackSpec, row: HostProjection) -> bool:
    """Memory and disk always; vCPUs when the host declares its vCPU overcommit."""
    return row.resource != "vcpus" or "vcpus" in spec.hosts[row.host].overcommit.model_fields_set


def check_real_capacity(
    project_: Project, stack: str, engine: EngineApi, open_uri: Callable[[str], Any]
) -> None:
    spec, rows, _ = host_projection(project_, stack, engine, open_uri)
    refused = overcommitted([row for row in rows if enforced(spec, row)])
    if refused:
        raise CapacityRefused(
            "the plan does not fit the hosts as they are (nothing was changed):\n  " + "\n  ".join(refused)
        )
