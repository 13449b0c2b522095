"""Which engine runs take a shared backend's lease (virtstack.shared_state), and when it is given
back: every run that changes the stack, from the preview of `up`/`destroy` to their end; previews
for `plan` and `drift` never (they work with a read-only role)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from clifakes import make_project

from virtstack.locks import StackLock
from virtstack.ops import engine as engine_module
from virtstack.ops.engine import Engine
from virtstack.ops.errors import EngineError
from virtstack.shared_state import StackBusy

PG = "postgres://virtstack@127.0.0.1:55432/virtstack?passfile=/x"


class Leases:
    def __init__(self) -> None:
        self.log: list[str] = []
        self.busy: StackLock | None = None

    def acquire(self, url: str, project: str, stack: str, operation: str) -> Any:
        if self.busy is not None:
            raise StackBusy(stack, self.busy)
        self.log.append(f"acquire {project}/{stack} {operation}")
        leases = self

        class Lease:
            def release(self) -> None:
                leases.log.append("release")

        return Lease()


@pytest.fixture
def leases(monkeypatch: pytest.MonkeyPatch) -> Leases:
    fake = Leases()
    monkeypatch.setattr(engine_module.Lease, "acquire", fake.acquire)
    monkeypatch.setattr(Engine, "_run_locked", lambda self, *a, **k: [])
    return fake


def engine(tmp_path: Path, url: str) -> Engine:
    environ = {"PATH": "/usr/bin", "PULUMI_BACKEND_URL": url, "PULUMI_CONFIG_PASSPHRASE": "p"}
    return Engine(make_project(tmp_path / "p"), environ)


def test_up_holds_the_lease_from_its_preview_to_its_end(tmp_path: Path, leases: Leases) -> None:
    e = engine(tmp_path, PG)
    e.preview("dev", plan_file=tmp_path / "plan.json")
    e.up("dev", plan_file=tmp_path / "plan.json")
    assert leases.log == ["acquire virtstack/dev up", "release"]


def test_destroy_holds_it_too(tmp_path: Path, leases: Leases) -> None:
    e = engine(tmp_path, PG)
    e.preview_destroy("dev")
    e.destroy("dev")
    assert leases.log == ["acquire virtstack/dev destroy", "release"]


def test_plan_and_drift_take_no_lease(tmp_path: Path, leases: Leases) -> None:
    e = engine(tmp_path, PG)
    e.preview("dev")
    e.preview_refresh("dev")
    assert leases.log == []


def test_a_file_backend_takes_no_lease(tmp_path: Path, leases: Leases) -> None:
    e = engine(tmp_path, f"file://{tmp_path}/state")
    e.preview("dev", plan_file=tmp_path / "plan.json")
    e.up("dev")
    assert leases.log == []


def test_a_busy_stack_fails_at_once_naming_the_holder(tmp_path: Path, leases: Leases) -> None:
    leases.busy = StackLock(
        Path(""), 4711, "runner-2", "2026-11-28T10:55:20Z", "still running", "ops", "virtstack up"
    )
    with pytest.raises(EngineError) as caught:
        engine(tmp_path, PG).preview("dev", plan_file=tmp_path / "plan.json")
    assert str(caught.value) == (
        "stack dev is locked by another update (virtstack up by ops@runner-2 (pid 4711) since "
        "2026-11-28T10:55:20Z; still running); wait for it to finish, or if none is running any more, "
        "run `pulumi cancel --stack dev --yes`"
    )
