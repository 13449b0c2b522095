"""The ops layer's plumbing: project and stack files, the engine's environment, engine error messages."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from clifakes import load_events, make_project
from pulumi.automation import events

from virtstack.errors import VirtstackError
from virtstack.ops.engine import Engine, engine_error_message, stack_outputs_of
from virtstack.ops.project import LOCAL_DEV_PASSPHRASE, default_stack, engine_env, find_project

REPO = Path(__file__).resolve().parents[3]


def test_engine_env_defaults_to_the_local_backend_and_the_documented_passphrase(tmp_path: Path) -> None:
    project = make_project(tmp_path)
    env = engine_env(project, {"PATH": "/usr/bin"})
    assert env["PULUMI_BACKEND_URL"] == f"file://{tmp_path}/.virtstack/state"
    assert env["PULUMI_HOME"] == f"{tmp_path}/.virtstack/pulumi-home"
    assert env["PULUMI_CONFIG_PASSPHRASE"] == LOCAL_DEV_PASSPHRASE
    # "Documented": README tells users this passphrase and scripts/env.sh exports it for raw
    # `pulumi`; a change in one place only would leave old state unreadable by the other path.
    assert f"PULUMI_CONFIG_PASSPHRASE={LOCAL_DEV_PASSPHRASE}" in (REPO / "README.md").read_text()
    sourced = subprocess.run(
        ["bash", "-c", '. scripts/env.sh >/dev/null && printf %s "$PULUMI_CONFIG_PASSPHRASE"'],
        cwd=REPO,
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        check=True,
    )
    assert sourced.stdout == LOCAL_DEV_PASSPHRASE
    assert env["PULUMI_SKIP_UPDATE_CHECK"] == "true"


@pytest.mark.parametrize(
    "given",
    [
        {"PULUMI_CONFIG_PASSPHRASE": "real-secret"},
        {"PULUMI_CONFIG_PASSPHRASE_FILE": "pulumi-passphrase"},
    ],
)
def test_engine_env_never_overrides_a_passphrase_the_caller_set(
    tmp_path: Path, given: dict[str, str]
) -> None:
    if "PULUMI_CONFIG_PASSPHRASE_FILE" in given:
        (tmp_path / "pulumi-passphrase").write_text("real-secret-test-only\n")
        given = {"PULUMI_CONFIG_PASSPHRASE_FILE": str(tmp_path / "pulumi-passphrase")}
    env = engine_env(make_project(tmp_path), {"PATH": "/usr/bin", **given})
    assert "PULUMI_CONFIG_PASSPHRASE" not in env


def test_engine_env_keeps_the_callers_backend(tmp_path: Path) -> None:
    given = {"PATH": "/usr/bin", "PULUMI_BACKEND_URL": "s3://bucket/state", "PULUMI_CONFIG_PASSPHRASE": "t-o"}
    env = engine_env(make_project(tmp_path), given)
    assert "PULUMI_BACKEND_URL" not in env


def test_stack_file_default_and_configured(tmp_path: Path) -> None:
    project = make_project(tmp_path)
    assert project.spec_file("dev").path == tmp_path / "stacks/dev.yaml"
    assert project.spec_file("dev").display == "stacks/dev.yaml"
    (tmp_path / "Pulumi.lab.yaml").write_text("config:\n  virtstack:spec: stacks/other.yaml\n")
    assert project.spec_file("lab").path == tmp_path / "stacks/other.yaml"
    (tmp_path / "Pulumi.ci.yaml").write_text("encryptionsalt: x\nconfig:\n  virtstack:spec: /srv/ci.yaml\n")
    assert (project.spec_file("ci").path, project.spec_file("ci").display) == (
        Path("/srv/ci.yaml"),
        "/srv/ci.yaml",
    )


def test_find_project(tmp_path: Path) -> None:
    make_project(tmp_path / "repo")
    (tmp_path / "repo/stacks/deep").mkdir(parents=True)
    assert find_project({}, cwd=tmp_path / "repo/stacks/deep").root == tmp_path / "repo"
    assert find_project({"VIRTSTACK_ROOT": str(tmp_path / "repo")}, cwd=Path("/")).root == tmp_path / "repo"
    with pytest.raises(VirtstackError, match="does not hold the virtstack program"):
        find_project({"VIRTSTACK_ROOT": str(tmp_path)})
    logs = find_project({"VIRTSTACK_LOG_DIR": "/var/log/vs"}, cwd=tmp_path / "repo").log_dir
    assert logs == Path("/var/log/vs")


def test_default_stack() -> None:
    assert default_stack({}) == "dev"
    assert default_stack({"VIRTSTACK_STACK": "lab"}) == "lab"


def test_a_missing_pulumi_cli_is_a_clean_error(tmp_path: Path) -> None:
    environ = {"PATH": str(tmp_path / "nothing"), "VIRTSTACK_TOOLCHAIN": str(tmp_path / "nothing")}
    with pytest.raises(VirtstackError, match=r"the Pulumi CLI is not installed \(run `make setup`\)"):
        Engine(make_project(tmp_path / "p"), environ).outputs("dev")


# ---------------------------------------------------------------------------------- engine errors

POOL_URN = (
    "urn:pulumi:dev::virtstack::virtstack:fleet:Fleet$virtstack:host:Host$virtstack:hypervisor:Hypervisor"
    "$pulumi-python:dynamic/virtstack:Pool::local-hypervisor-pool-vms"
)
HYPERVISOR_URN = (
    "urn:pulumi:dev::virtstack::virtstack:fleet:Fleet$virtstack:host:Host"
    "$virtstack:hypervisor:Hypervisor::local-hypervisor"
)


def _event(**kind: object) -> events.EngineEvent:
    return events.EngineEvent(sequence=0, timestamp=0, **kind)  # type: ignore[arg-type]


def _diag(message: str, urn: str = "") -> events.EngineEvent:
    return _event(
        diagnostic_event=events.DiagnosticEvent(message=message, color="never", severity="error", urn=urn)
    )


def test_engine_error_names_the_failing_object_and_its_last_error_line() -> None:
    step = events.StepEventMetadata(
        op=events.OpType.CREATE,
        urn=POOL_URN,
        type="pulumi-python:dynamic/virtstack:Pool",
        provider="",
        new=events.StepEventStateMetadata(
            type="pulumi-python:dynamic/virtstack:Pool",
            urn=POOL_URN,
            id="",
            parent=HYPERVISOR_URN,
            provider="",
            inputs={"name": "vms"},
        ),
    )
    stream = [
        _event(resource_pre_event=events.ResourcePreEvent(step)),
        _diag(
            'Traceback (most recent call last):\n  File "x.py", line 1\n'
            "libvirt.libvirtError: failed to create directory '/proc/x'\n",
            POOL_URN,
        ),
        _diag("expected resource operations for urn:pulumi:dev::virtstack::x::y but none were seen"),
        _diag("update failed"),
        _diag("an unhandled error occurred: Program exited with non-zero exit code: 1"),
    ]
    assert engine_error_message("up", "dev", stream, "stderr") == (
        "up of stack dev failed:\n"
        "  host local: pool vms: libvirt.libvirtError: failed to create directory '/proc/x'"
    )


def test_engine_error_keeps_the_programs_own_lines() -> None:
    stream = [_diag("stacks/dev.yaml: images.debian-12.source: /x.qcow2: file not found\n")]
    assert engine_error_message("preview", "dev", stream, "") == (
        "preview of stack dev failed:\n  stacks/dev.yaml: images.debian-12.source: /x.qcow2: file not found"
    )


def test_engine_error_without_diagnostics_uses_the_end_of_stderr() -> None:
    assert engine_error_message("up", "dev", [], "a\nb\n\nerror: the stack is on fire\n") == (
        "up of stack dev failed:\n  a\n  b\n  error: the stack is on fire"
    )


def test_engine_env_runs_as_many_operations_as_the_provider_serves(tmp_path: Path) -> None:
    env = engine_env(make_project(tmp_path), {"PATH": "/usr/bin", "VIRTSTACK_PROVIDER_THREADS": "6"})
    assert env["PULUMI_PARALLEL"] == "6"
    assert "PULUMI_PARALLEL" not in engine_env(
        make_project(tmp_path), {"PATH": "/usr/bin", "PULUMI_PARALLEL": "4"}
    )


def test_up_outputs_come_from_the_stacks_outputs_event() -> None:
    seen = load_events("up-create")
    outputs = stack_outputs_of(seen)
    assert outputs["placement"] == {"rec-vm": "local"}
    assert outputs["vms"]["rec-vm"]["ips"] == ["10.152.77.10"]
    assert stack_outputs_of([e for e in seen if e.res_outputs_event is None]) == {}


def test_apply_skips_the_automation_apis_follow_up_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    from pulumi import automation as auto

    from virtstack.ops.engine import _Stack

    calls: list[str] = []

    def fake_up(self: auto.Stack, **kwargs: object) -> None:
        calls.append("up")
        assert self.outputs() == {}  # what Stack.up calls after the engine: now free
        assert self.info().result == "not read"

    monkeypatch.setattr(auto.Stack, "up", fake_up)
    handle = _Stack.__new__(_Stack)  # no workspace: only apply() is under test
    handle.apply(refresh=True)
    assert calls == ["up"]
    # The real methods are back for everyone else.
    assert "outputs" not in vars(handle) and "info" not in vars(handle)
    assert _Stack.outputs is auto.Stack.outputs
