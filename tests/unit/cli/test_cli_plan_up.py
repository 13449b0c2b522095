"""`plan`, `up`, `drift` and `destroy` on a fake engine replaying events recorded from the real one."""

# Expected output is kept whole, one line of output per line here.
# ruff: noqa: E501

from __future__ import annotations

import _thread
import json
import threading
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from clifakes import STACK_YAML, FakeEngine, make_services

from virtstack.cli.main import cli
from virtstack.ops.apply import run_interruptible
from virtstack.ops.errors import Interrupted

VM_OUTPUTS = {
    "vms": {
        "rec-vm": {
            "host": "local",
            "state": "running",
            "vcpus": 1,
            "memory": 402653184,
            "ips": ["10.152.77.10"],
            "uri": "qemu:///system",
        }
    }
}


def invoke(
    tmp_path: Path, engine: FakeEngine, *args: str, tty: bool = False, answer: str | None = None
) -> Any:
    services = make_services(tmp_path / "project", engine, tty=tty)
    (tmp_path / "project/stacks/rec.yaml").write_text(STACK_YAML)
    return CliRunner().invoke(cli, list(args), obj=services, input=answer)


# ---------------------------------------------------------------------------------------------- plan

SHRINK_TABLE = """\
Plan for stack rec: 2 changes to 1 VM

vm rec-vm on local: replace with data loss (a disk that holds data is destroyed)
  redefine                domain          attaches the new data disk data; waits up to 60 s for an ACPI shutdown
  replace with data loss  data disk data  size 1 GiB → 512 MiB (a disk cannot shrink)

Summary: 1 to redefine (the VM restarts), 1 to replace with data loss.
Data loss: destroys vm rec-vm: data disk data. virtstack up refuses this plan unless run with --allow-data-loss.
"""


def test_plan_table(tmp_path: Path) -> None:
    engine = FakeEngine(preview="plan-data-shrink")
    result = invoke(tmp_path, engine, "plan", "-s", "rec")
    assert (result.exit_code, result.stdout, result.stderr) == (0, SHRINK_TABLE, "")
    assert engine.calls == [("preview", {"stack": "rec", "refresh": True, "plan_file": None})]


@pytest.mark.parametrize(
    ("scenario", "code"), [("plan-create", 2), ("plan-power-off", 2), ("plan-no-change", 0)]
)
def test_plan_detailed_exitcode(tmp_path: Path, scenario: str, code: int) -> None:
    result = invoke(tmp_path, FakeEngine(preview=scenario), "plan", "-s", "rec", "--detailed-exitcode")
    assert result.exit_code == code


def test_plan_without_detailed_exitcode_exits_0_with_changes(tmp_path: Path) -> None:
    assert invoke(tmp_path, FakeEngine(preview="plan-create"), "plan", "-s", "rec").exit_code == 0


def test_plan_no_changes(tmp_path: Path) -> None:
    result = invoke(tmp_path, FakeEngine(preview="plan-no-change"), "plan", "-s", "rec")
    assert result.stdout == "Plan for stack rec: no changes.\n"


def test_plan_markdown_for_a_pull_request(tmp_path: Path) -> None:
    result = invoke(
        tmp_path, FakeEngine(preview="plan-data-rename"), "plan", "-s", "rec", "--format", "markdown"
    )
    assert result.exit_code == 0
    assert result.stdout == (
        "### virtstack plan: stack `rec`\n"
        "\n"
        "**3 changes to 1 VM:** 1 to create, 1 to redefine (the VM restarts), 1 to delete.\n"
        "\n"
        "> [!CAUTION]\n"
        "> **Data loss: destroys vm rec-vm: data disk data. `virtstack up` refuses this plan unless run with "
        "`--allow-data-loss`.**\n"
        "\n"
        "| VM | Host | Change | What happens |\n"
        "|---|---|---|---|\n"
        "| `rec-vm` | local | **replace with data loss (a disk that holds data is destroyed)** | "
        "domain: redefine — attaches rec-vm-store.qcow2, detaches rec-vm-data.qcow2; waits up to 60 s for an ACPI shutdown<br>"
        "data disk data: **delete with data loss** — the disk and its data are destroyed<br>"
        "data disk store: create — 1 GiB |\n"
        "\n"
        "<sub>`virtstack plan --format markdown`</sub>\n"
    )


def test_plan_markdown_host_objects(tmp_path: Path) -> None:
    result = invoke(tmp_path, FakeEngine(preview="plan-network"), "plan", "-s", "rec", "--format", "markdown")
    assert "| Host | Object | Change | Details |\n|---|---|---|---|\n" in result.stdout
    assert (
        "| local | network rec | replace | cidr 10.152.77.0/24 → 10.152.78.0/24; "
        "dhcp_end 10.152.77.254 → 10.152.78.254; dhcp_start 10.152.77.128 → 10.152.78.128 |\n"
    ) in result.stdout


def test_plan_json_to_a_file(tmp_path: Path) -> None:
    out = tmp_path / "plan.json"
    result = invoke(
        tmp_path,
        FakeEngine(preview="plan-memory"),
        "plan",
        "-s",
        "rec",
        "--format",
        "json",
        "--out",
        str(out),
        "--detailed-exitcode",
    )
    assert (result.exit_code, result.stdout) == (
        2,
        f"Plan for stack rec written to {out}: 1 to redefine (the VM restarts).\n",
    )
    data = json.loads(out.read_text())
    assert (data["format"], data["stack"], data["has_changes"], data["data_loss"]) == (
        "virtstack.plan/v1",
        "rec",
        True,
        False,
    )
    assert data["vms"][0]["changes"][0]["details"] == [
        "memory 384 MiB → 448 MiB",
        "waits up to 60 s for an ACPI shutdown",
    ]


def test_plan_reports_stack_file_errors_before_starting_the_engine(tmp_path: Path) -> None:
    engine = FakeEngine(preview="plan-create")
    services = make_services(tmp_path / "project", engine)
    (tmp_path / "project/stacks/rec.yaml").write_text(STACK_YAML.replace("vcpus: 1", "vcpus: 0"))
    result = CliRunner().invoke(cli, ["plan", "-s", "rec", "--detailed-exitcode"], obj=services)
    assert (result.exit_code, result.stdout) == (1, "")
    assert result.stderr == "stacks/rec.yaml: vms.rec-vm.vcpus: must be at least 1\n"
    assert engine.calls == []


# ------------------------------------------------------------------------------------------------ up

UP_OUTPUT = """\
Previewing stack rec (reading the real state first)…
Plan for stack rec: 7 changes to 1 VM and 1 host

vm rec-vm on local: create
  create  domain                           1 vCPU, 384 MiB
  create  root disk                        3 GiB
  create  data disk data                   1 GiB
  create  cloud-init seed
host local
  create  pool rec                         /var/lib/virtstack/pools/rec
  create  network rec                      isolated 10.152.77.0/24
  create  base image debian-12 (pool rec)  from debian-12.qcow2

Summary: 7 to create.

Applying the plan to stack rec:
[   0.0s] host local: network rec: creating…
[   0.0s] host local: pool rec: creating…
[   0.0s] host local: network rec: created (0.0s)
[   0.0s] host local: pool rec: created (0.0s)
[   0.0s] host local: base image debian-12 (pool rec): creating…
[   0.0s] vm rec-vm: data disk data: creating…
[   0.0s] vm rec-vm: cloud-init seed: creating…
[   0.0s] vm rec-vm: data disk data: created (0.0s)
[   0.0s] vm rec-vm: cloud-init seed: created (0.0s)
[   0.0s] host local: base image debian-12 (pool rec): created (0.0s)
[   0.0s] vm rec-vm: root disk: creating…
[   0.0s] vm rec-vm: root disk: created (0.0s)
[   0.0s] vm rec-vm: domain: creating…
[   0.0s] vm rec-vm: domain: created (0.0s)

Done: 7 created in 0s.
VMs of stack rec:
  rec-vm: running on host local, 1 vCPU, 384 MiB, 10.152.77.10
"""


def test_up_yes_previews_then_applies_the_saved_plan_with_live_progress(tmp_path: Path) -> None:
    engine = FakeEngine(preview="plan-create", up="up-create", outputs=VM_OUTPUTS)
    result = invoke(tmp_path, engine, "up", "-s", "rec", "--yes")
    assert (result.exit_code, result.stdout, result.stderr) == (0, UP_OUTPUT, "")
    assert engine.names() == ["preview", "up"]
    plan_file = engine.calls[0][1]["plan_file"]
    assert (
        plan_file is not None and engine.calls[1][1]["plan_file"] == plan_file
    )  # exactly the previewed plan
    assert not plan_file.exists()  # a temporary file


def test_up_without_yes_and_without_a_terminal_refuses_before_anything(tmp_path: Path) -> None:
    engine = FakeEngine(preview="plan-create", up="up-create")
    result = invoke(tmp_path, engine, "up", "-s", "rec", tty=False)
    assert (result.exit_code, result.stdout) == (1, "")
    assert result.stderr == (
        "error: refusing to change stack rec without --yes: there is no terminal to ask for confirmation\n"
    )
    assert engine.calls == []


def test_up_asks_and_does_nothing_on_no(tmp_path: Path) -> None:
    engine = FakeEngine(preview="plan-memory", up="up-create")
    result = invoke(tmp_path, engine, "up", "-s", "rec", tty=True, answer="n\n")
    assert result.exit_code == 1
    assert result.stdout.endswith(
        "Summary: 1 to redefine (the VM restarts).\n\nApply these changes to stack rec? [y/N]: n\n"
    )
    assert result.stderr == "Cancelled: nothing was changed.\n"
    assert engine.names() == ["preview"]


def test_up_asks_and_applies_on_yes(tmp_path: Path) -> None:
    engine = FakeEngine(preview="plan-heal-stopped", up="up-create", outputs=VM_OUTPUTS)
    result = invoke(tmp_path, engine, "up", "-s", "rec", tty=True, answer="y\n")
    assert result.exit_code == 0
    assert "  update in place  domain  power on\n" in result.stdout
    assert engine.names() == ["preview", "up"]


@pytest.mark.parametrize(
    ("scenario", "disk"),
    [
        ("plan-data-shrink", "vm rec-vm: data disk data"),
        ("plan-data-rename", "vm rec-vm: data disk data"),
        ("plan-image", "vm rec-vm: root disk"),
    ],
)
def test_up_refuses_data_loss_before_applying(tmp_path: Path, scenario: str, disk: str) -> None:
    engine = FakeEngine(preview=scenario, up="up-create")
    result = invoke(tmp_path, engine, "up", "-s", "rec", "--yes")
    assert result.exit_code == 1
    assert "Data loss: destroys" in result.stdout  # the plan is shown
    assert result.stderr == (
        f"error: refusing to apply: the plan destroys 1 disk(s) holding data ({disk}); review the plan "
        "and re-run with --allow-data-loss if that is intended (`protect: true` on a VM keeps it from "
        "any deletion)\n"
    )
    assert engine.names() == ["preview"]


def test_up_allow_data_loss(tmp_path: Path) -> None:
    engine = FakeEngine(preview="plan-data-shrink", up="up-create", outputs=VM_OUTPUTS)
    result = invoke(tmp_path, engine, "up", "-s", "rec", "--yes", "--allow-data-loss")
    assert result.exit_code == 0
    assert engine.names() == ["preview", "up"]


def test_up_removing_a_whole_vm_needs_consent(tmp_path: Path) -> None:
    """Regression (issue 10): removing a VM or shrinking a group deleted its disks unasked."""
    engine = FakeEngine(preview="plan-remove-vm", up="up-create")
    refused = invoke(tmp_path, engine, "up", "-s", "rec", "--yes")
    assert refused.exit_code == 1
    assert "(vm rec-vm: root disk, vm rec-vm: data disk data)" in refused.stderr
    assert engine.names() == ["preview"]
    assert "Disks this plan deletes are kept in their pool's trash for 7 days" in refused.stdout

    engine = FakeEngine(preview="plan-remove-vm", up="up-create")
    allowed = invoke(tmp_path, engine, "up", "-s", "rec", "--yes", "--allow-data-loss", "--no-trash")
    assert allowed.exit_code == 0, allowed.stderr
    assert "Disks this plan deletes are deleted for good (--no-trash).\n" in allowed.stdout
    assert engine.names() == ["preview", "up"]


def test_no_trash_reaches_the_engine_environment(tmp_path: Path) -> None:
    from virtstack.ops.project import engine_env

    services = make_services(tmp_path / "project", FakeEngine(preview="plan-remove-vm", up="up-create"))
    (tmp_path / "project/stacks/rec.yaml").write_text(STACK_YAML)
    CliRunner().invoke(cli, ["up", "-s", "rec", "--yes", "--allow-data-loss", "--no-trash"], obj=services)
    assert services.environ["VIRTSTACK_NO_TRASH"] == "1"
    assert engine_env(services.project(), services.environ)["VIRTSTACK_NO_TRASH"] == "1"
    assert "VIRTSTACK_NO_TRASH" not in engine_env(services.project(), {})


def test_up_fails_when_a_vm_is_not_running_after_apply(tmp_path: Path) -> None:
    """Regression (issue 10): `up` printed `running` for VMs libvirt held paused."""
    calls: list[dict[str, Any]] = []
    services = make_services(
        tmp_path / "project",
        FakeEngine(preview="plan-create", up="up-create", outputs=VM_OUTPUTS),
        vm_problems=[
            "vm rec-vm on host local: should be running but is paused (a disk I/O error); console log /x"
        ],
        verify_calls=calls,
    )
    (tmp_path / "project/stacks/rec.yaml").write_text(STACK_YAML)
    result = CliRunner().invoke(
        cli, ["up", "-s", "rec", "--yes", "--wait", "ready", "--timeout", "42"], obj=services
    )
    assert result.exit_code == 1
    assert result.stderr == (
        "error: stack rec is applied, but 1 VM(s) are not as asked:\n"
        "  vm rec-vm on host local: should be running but is paused (a disk I/O error); console log /x\n"
    )
    assert "rec-vm: running" not in result.stdout
    assert [(c["wait_ready"], c["timeout"]) for c in calls] == [(True, 42.0)]
    # The check settles each VM from its own start, as the apply's events reported it (issue 15).
    assert list(calls[0]["started"]) == ["rec-vm"]


def test_the_bench_baseline_settles_from_the_end_of_the_apply(tmp_path: Path) -> None:
    calls: list[dict[str, Any]] = []
    services = make_services(
        tmp_path / "project",
        FakeEngine(preview="plan-create", up="up-create", outputs=VM_OUTPUTS),
        verify_calls=calls,
        environ={"VIRTSTACK_BASELINE_FIXED_COST": "1"},
    )
    (tmp_path / "project/stacks/rec.yaml").write_text(STACK_YAML)
    result = CliRunner().invoke(cli, ["up", "-s", "rec", "--yes"], obj=services)
    assert result.exit_code == 0, result.output
    assert [c["started"] for c in calls] == [None]


def test_up_with_nothing_to_do(tmp_path: Path) -> None:
    engine = FakeEngine(preview="plan-no-change")
    result = invoke(tmp_path, engine, "up", "-s", "rec", "--yes")
    assert (result.exit_code, result.stdout) == (
        0,
        "Previewing stack rec (reading the real state first)…\nPlan for stack rec: no changes.\nNothing to do.\n",
    )
    assert engine.names() == ["preview"]


# --------------------------------------------------------------------------------------------- drift


def test_drift_exit_codes_and_table(tmp_path: Path) -> None:
    result = invoke(tmp_path, FakeEngine(refresh="drift-missing"), "drift", "-s", "rec")
    assert (result.exit_code, result.stderr) == (2, "")
    assert result.stdout == (
        "Drift in stack rec: 1 VM differs from the desired state\n"
        "\n"
        "vm rec-vm on local\n"
        "  domain          missing (libvirt has no such domain)\n"
        "  data disk data  missing\n"
        "\n"
        "`virtstack up -s rec` brings them back to the desired state.\n"
    )
    result = invoke(tmp_path, FakeEngine(refresh="drift-none"), "drift", "-s", "rec")
    assert (result.exit_code, result.stdout) == (
        0,
        "No drift in stack rec: every object matches the desired state.\n",
    )


def test_drift_json(tmp_path: Path) -> None:
    result = invoke(tmp_path, FakeEngine(refresh="drift-stopped"), "drift", "-s", "rec", "--format", "json")
    assert result.exit_code == 2
    data = json.loads(result.stdout)
    assert (data["format"], data["drift"]) == ("virtstack.drift/v1", True)
    assert data["vms"][0]["summary"] == "powered off (libvirt state: shutoff)"
    assert data["vms"][0]["findings"][0]["problem"] == "changed"


def test_drift_markdown(tmp_path: Path) -> None:
    result = invoke(
        tmp_path, FakeEngine(refresh="drift-resized"), "drift", "-s", "rec", "--format", "markdown"
    )
    assert result.exit_code == 2
    assert result.stdout == (
        "### virtstack drift: stack `rec`\n"
        "\n"
        "**1 VM differs from the desired state.** `virtstack up -s rec` brings them back.\n"
        "\n"
        "| Owner | Object | Problem |\n"
        "|---|---|---|\n"
        "| vm `rec-vm` | domain | powered off (libvirt state: shutoff); vCPUs 2 (desired 1); "
        "memory 320 MiB (desired 384 MiB) |\n"
    )


# ------------------------------------------------------------------------------------------- destroy


def test_destroy_needs_consent_for_disks_with_data(tmp_path: Path) -> None:
    engine = FakeEngine(destroy_preview="destroy-preview")
    result = invoke(tmp_path, engine, "destroy", "-s", "rec", "--yes")
    assert result.exit_code == 1
    assert "(vm rec-vm: root disk, vm rec-vm: data disk data)" in result.stderr
    assert engine.names() == ["preview_destroy"]


def test_destroy_yes(tmp_path: Path) -> None:
    engine = FakeEngine(destroy_preview="destroy-preview")
    result = invoke(tmp_path, engine, "destroy", "-s", "rec", "--yes", "--allow-data-loss")
    assert result.exit_code == 0
    assert "Summary: 7 to delete.\n" in result.stdout
    assert "[   0.0s] vm rec-vm: data disk data: deleted (0.0s)\n" in result.stdout
    assert result.stdout.endswith("Done: 7 deleted in 0s.\n")
    assert engine.names() == ["preview_destroy", "destroy"]


def test_destroy_refuses_without_terminal_or_yes(tmp_path: Path) -> None:
    engine = FakeEngine(destroy_preview="destroy-preview")
    result = invoke(tmp_path, engine, "destroy", "-s", "rec")
    assert (result.exit_code, result.stderr) == (
        1,
        "error: refusing to destroy stack rec without --yes: there is no terminal to ask for confirmation\n",
    )
    assert engine.calls == []


def test_destroy_asks(tmp_path: Path) -> None:
    engine = FakeEngine(destroy_preview="destroy-preview")
    result = invoke(tmp_path, engine, "destroy", "-s", "rec", "--allow-data-loss", tty=True, answer="\n")
    assert result.exit_code == 1
    assert "Destroy all of stack rec, including the data on its disks? [y/N]: \n" in result.stdout
    assert result.stderr == "Cancelled: nothing was destroyed.\n"
    assert engine.names() == ["preview_destroy"]


def test_destroy_an_empty_stack(tmp_path: Path) -> None:
    result = invoke(tmp_path, FakeEngine(), "destroy", "-s", "rec", "--yes")
    assert (result.exit_code, result.stdout) == (0, "Stack rec holds nothing to destroy.\n")


# ------------------------------------------------------------------------------------------- Ctrl-C


def test_ctrl_c_asks_the_engine_to_stop_then_says_how_to_continue() -> None:
    engine = FakeEngine()
    stopped = threading.Event()
    engine.interrupt = lambda force=False: (
        engine.calls.append(("interrupt", {"force": force})),
        stopped.set(),
    )[1]  # type: ignore[method-assign]
    notices: list[int] = []

    def work() -> None:
        _thread.interrupt_main()  # what Ctrl-C does to the main thread
        assert stopped.wait(5), "the engine was not asked to stop"
        raise RuntimeError("update canceled")  # what the engine reports after a graceful cancel

    with pytest.raises(Interrupted) as caught:
        run_interruptible(work, engine, notices.append, "interrupted: run `virtstack up -s rec` again")
    assert str(caught.value) == "interrupted: run `virtstack up -s rec` again"
    assert engine.calls == [("interrupt", {"force": False})]
    assert notices == [1]


def test_run_interruptible_passes_results_and_errors_through() -> None:
    engine = FakeEngine()
    assert run_interruptible(lambda: 42, engine, print, "unused") == 42
    with pytest.raises(ValueError, match="boom"):
        run_interruptible(lambda: (_ for _ in ()).throw(ValueError("boom")), engine, print, "unused")
    assert engine.calls == []
