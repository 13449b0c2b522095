"""`make gitops-e2e`: the three workflows of .github/workflows/ run for real, on loopback.

Real parts only: a Gitea forge (built from the Go module proxy by scripts/gitops-tools.sh) on
127.0.0.1 with SQLite; `act` (nektos/act, same origin) as the runner of the GitHub-Actions-format
workflows, its jobs on this host (`-P <label>=-self-hosted`, no containers); the local PostgreSQL
of scripts/postgres-up.sh as the state backend (read-write role for the up job, read-only role for
plan and drift); the shared libvirt daemon and one small real guest.

The events come from the forge itself: Gitea delivers its webhooks (push, pull_request) to a
receiver on loopback, and each payload is handed to act as the event (`act EVENT -e payload.json`)
— the one thing a hosted forge does between a webhook and its runner.  Gitea names the push-to-a-
pull-request action `synchronized` where GitHub says `synchronize`: that one word is mapped.  The
scheduled drift run gets a `schedule` event, as GitHub's cron would send it.

Scenario (the stack file `stacks/<stack>.yaml` of a repository pushed to the forge):
  1. push main (a pool and a network)        -> up workflow applies it (creates the stack)
  2. push a branch adding a VM, open a PR    -> plan workflow posts the plan comment
  3. push a broken stack file to the branch  -> plan workflow updates the comment and fails
  4. push the fix                            -> plan workflow updates the same comment
  5. merge the pull request                  -> up workflow applies it (the VM runs)
  6. `virsh destroy` the VM out of band      -> drift workflow fails with the report
Logs of every run go to .virtstack/gitops-e2e/<time>/; the summary prints each run's time.
Everything it creates (forge, table, stack, libvirt objects) is removed at the end, also on failure.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
MARKER = "<!-- virtstack-plan -->"
OWNER, REPO = "ops", "infra"
LABELS = ("self-hosted", "linux", "libvirt")


def log(message: str) -> None:
    print(f"[gitops-e2e {time.strftime('%H:%M:%S')}] {message}", flush=True)


def sh(*argv: str, cwd: Path | None = None, env: dict[str, str] | None = None, check: bool = True) -> str:
    proc = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise SystemExit(
            f"gitops-e2e: {' '.join(argv[:3])}… exited {proc.returncode}: {proc.stderr.strip()[-800:]}"
        )
    return proc.stdout.strip()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Gitea:
    """A throwaway Gitea on 127.0.0.1 (SQLite), run as `nobody` (Gitea refuses root)."""

    def __init__(self, binary: Path, static: Path, work: Path) -> None:
        self.binary, self.static, self.work = binary, static, work
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.api = f"{self.url}/api/v1"
        self.token = ""
        self.proc: subprocess.Popen[bytes] | None = None
        self.config = work / "app.ini"

    def _run(self, *args: str) -> str:
        env = {
            "HOME": str(self.work),
            "USER": "nobody",
            "GITEA_WORK_DIR": str(self.work),
            "PATH": os.environ["PATH"],
        }
        return sh(
            "setpriv",
            "--reuid=nobody",
            "--regid=nogroup",
            "--clear-groups",
            str(self.binary),
            *args,
            "--config",
            str(self.config),
            env=env,
            cwd=self.work,
        )

    def start(self) -> None:
        self.work.mkdir(parents=True)
        secret = secrets.token_hex(32)
        internal = secrets.token_urlsafe(64)
        self.config.write_text(
            f"""APP_NAME = virtstack gitops e2e
RUN_USER = nobody
RUN_MODE = prod
WORK_PATH = {self.work}

[server]
PROTOCOL = http
HTTP_ADDR = 127.0.0.1
HTTP_PORT = {self.port}
ROOT_URL = {self.url}/
DISABLE_SSH = true
OFFLINE_MODE = true
LFS_START_SERVER = false
STATIC_ROOT_PATH = {self.static}
APP_DATA_PATH = {self.work}/data

[database]
DB_TYPE = sqlite3
PATH = {self.work}/data/gitea.db

[repository]
ROOT = {self.work}/repos
DEFAULT_BRANCH = main

[security]
INSTALL_LOCK = true
SECRET_KEY = {secret}
INTERNAL_TOKEN = {internal}

[oauth2]
ENABLED = false

[service]
DISABLE_REGISTRATION = true

[webhook]
ALLOWED_HOST_LIST = loopback
DELIVER_TIMEOUT = 10

[actions]
ENABLED = false

[mailer]
ENABLED = false

[indexer]
REPO_INDEXER_ENABLED = false

[log]
MODE = file
LEVEL = Info
ROOT_PATH = {self.work}/log
"""
        )
        subprocess.run(["chown", "-R", "nobody:nogroup", str(self.work)], check=True)
        self._run("migrate")
        password = secrets.token_urlsafe(18)
        self._run(
            "admin",
            "user",
            "create",
            "--username",
            OWNER,
            "--password",
            password,
            "--email",
            "ops@example.invalid",
            "--admin",
            "--must-change-password=false",
        )
        self.token = (
            self._run(
                "admin",
                "user",
                "generate-access-token",
                "--username",
                OWNER,
                "--token-name",
                "e2e",
                "--scopes",
                "all",
                "--raw",
            )
            .splitlines()[-1]
            .strip()
        )
        env = {
            "HOME": str(self.work),
            "USER": "nobody",
            "GITEA_WORK_DIR": str(self.work),
            "PATH": os.environ["PATH"],
        }
        out = (self.work / "gitea.out").open("wb")
        self.proc = subprocess.Popen(
            [
                "setpriv",
                "--reuid=nobody",
                "--regid=nogroup",
                "--clear-groups",
                str(self.binary),
                "web",
                "--config",
                str(self.config),
            ],
            cwd=self.work,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError, urllib.error.URLError):
                version = self.call("GET", "/version")
                log(f"gitea {version['version']} on {self.url}")
                return
            if self.proc.poll() is not None:
                raise SystemExit(f"gitops-e2e: gitea exited: {(self.work / 'gitea.out').read_text()[-800:]}")
            time.sleep(0.5)
        raise SystemExit("gitops-e2e: gitea did not answer within 120 s")

    def call(self, method: str, path: str, payload: Any = None) -> Any:
        data = None if payload is None else json.dumps(payload).encode()
        request = urllib.request.Request(f"{self.api}{path}", data=data, method=method)
        if self.token:
            request.add_header("Authorization", f"token {self.token}")
        request.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(request, timeout=60) as response:
            text = response.read().decode()
        return json.loads(text) if text.strip() else None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(30)
            if self.proc.poll() is None:
                os.killpg(self.proc.pid, signal.SIGKILL)


class Hooks:
    """Receives the forge's webhooks on loopback."""

    def __init__(self) -> None:
        self.events: queue.Queue[tuple[str, dict[str, Any]]] = queue.Queue()
        events = self.events

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                kind = self.headers.get("X-Gitea-Event") or self.headers.get("X-GitHub-Event") or ""
                events.put((kind, body))
                self.send_response(204)
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait(self, kind: str, match: Any, timeout: float = 120) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                got, payload = self.events.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                break
            if got == kind and match(payload):
                return payload
        raise SystemExit(f"gitops-e2e: no {kind} webhook within {timeout:.0f} s")


class Runner:
    """act, running one workflow file's jobs on this host."""

    def __init__(self, act: Path, gitea: Gitea, logs: Path, stack: str, secrets_file: Path) -> None:
        self.act, self.gitea, self.logs, self.stack, self.secrets_file = act, gitea, logs, stack, secrets_file
        self.runs: list[tuple[str, int, float]] = []
        # The runner's kept checkout (the workflows' VIRTSTACK_WORKDIR): set up once, reused.
        self.workdir = logs.parent / "runner-work"
        self.workdir.mkdir(exist_ok=True)

    def checkout(self, ref: str, into: Path) -> None:
        """The repository at `ref`, where act is started (its workflow files are the ones that run)."""
        env = {**os.environ, **git_auth(self.gitea.token)}
        sh("git", "clone", "-q", "--no-checkout", f"{self.gitea.url}/{OWNER}/{REPO}.git", str(into), env=env)
        sh("git", "fetch", "-q", "origin", ref, cwd=into, env=env)
        sh("git", "checkout", "-q", "--detach", "FETCH_HEAD", cwd=into)

    def run(
        self, title: str, event: str, payload: dict[str, Any], workflow: str, ref: str
    ) -> tuple[int, str]:
        n = len(self.runs) + 1
        work = Path(tempfile.mkdtemp(prefix=f"vs-e2e-{n}-"))
        try:
            self.checkout(ref, work / "repo")
            event_file = work / "event.json"
            event_file.write_text(json.dumps(payload))
            argv = [
                str(self.act),
                event,
                "-e",
                str(event_file),
                "-W",
                f".github/workflows/{workflow}",
                *[arg for label in LABELS for arg in ("-P", f"{label}=-self-hosted")],
                "--secret-file",
                str(self.secrets_file),
                "--var",
                f"VIRTSTACK_STACK={self.stack}",
                "--var",
                f"VIRTSTACK_WORKDIR={self.workdir}",
                "--env",
                f"GITHUB_SERVER_URL={self.gitea.url}",
                "--env",
                f"GITHUB_API_URL={self.gitea.api}",
                "--env",
                f"GITHUB_REPOSITORY={OWNER}/{REPO}",
                "--action-offline-mode",
            ]
            log(f"run {n}: {title}: act {event} -W .github/workflows/{workflow}")
            started = time.monotonic()
            # The job sets up its own checkout (scripts/env.sh there): nothing of this one leaks in.
            env = {
                k: v
                for k, v in os.environ.items()
                if not k.startswith(("PULUMI_", "VIRTSTACK_", "GRPC_")) or k == "VIRTSTACK_CACHE"
            }
            env.pop("PYTHONPATH", None)
            env["PATH"] = ":".join(p for p in env.get("PATH", "").split(":") if str(ROOT) not in p)
            proc = subprocess.run(
                argv, cwd=work / "repo", env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL
            )
            seconds = time.monotonic() - started
        finally:
            shutil.rmtree(work, ignore_errors=True)
        text = proc.stdout + proc.stderr
        (self.logs / f"{n:02d}-{workflow.removesuffix('.yml')}.log").write_text(text)
        self.runs.append((title, proc.returncode, seconds))
        log(f"run {n}: act exited {proc.returncode} after {seconds:.0f} s")
        return proc.returncode, text


def git_auth(token: str) -> dict[str, str]:
    import base64

    header = base64.b64encode(f"x-access-token:{token}".encode()).decode()
    return {
        "GIT_CONFIG_COUNT": "1",
        "GIT_CONFIG_KEY_0": "http.extraheader",
        "GIT_CONFIG_VALUE_0": f"AUTHORIZATION: basic {header}",
    }


def stack_file(prefix: str, subnet: int, *, vm: bool, memory: str = "256MiB") -> str:
    import yaml

    spec: dict[str, Any] = {
        "hosts": {
            "local": {
                "uri": "qemu:///system",
                "capacity": {"vcpus": 2, "memory": "2GiB", "disk": "20GiB"},
                "pools": {prefix: {"path": f"/var/lib/virtstack/pools/{prefix}"}},
                "networks": {prefix: {"mode": "isolated", "cidr": f"10.176.{subnet}.0/24"}},
            }
        },
        "images": {"debian-12": {"source": ".virtstack/images/debian-12.qcow2"}},
        "vms": {},
    }
    if vm:
        spec["vms"][f"{prefix}-vm"] = {
            "image": "debian-12",
            "vcpus": 1,
            "memory": memory,
            "disk": "2GiB",
            "nics": [{"network": prefix}],
            "cloud_init": {"users": [{"name": "ops"}]},
        }
    return "# the gitops e2e stack (tests/gitops/e2e.py)\n" + yaml.safe_dump(spec, sort_keys=False)


def marker_comments(gitea: Gitea, number: int) -> list[dict[str, Any]]:
    comments = gitea.call("GET", f"/repos/{OWNER}/{REPO}/issues/{number}/comments")
    return [c for c in comments if str(c.get("body", "")).startswith(MARKER)]


def check(ok: bool, what: str, detail: str = "") -> None:
    if not ok:
        raise SystemExit(f"gitops-e2e: FAILED: {what}\n{detail[-3000:]}")
    log(f"ok: {what}")


def excerpt(text: str, *needles: str, around: int = 2) -> str:
    lines = text.splitlines()
    keep: set[int] = set()
    for i, line in enumerate(lines):
        if any(n in line for n in needles):
            keep.update(range(max(0, i - around), min(len(lines), i + around + 1)))
    return "\n".join(lines[i] for i in sorted(keep))


def main() -> int:
    t0 = time.monotonic()
    tools = Path(sh(str(ROOT / "scripts/gitops-tools.sh")).splitlines()[-1])
    server = sh(str(ROOT / "scripts/postgres-up.sh")).splitlines()[-1]
    reader = sh(str(ROOT / "scripts/postgres-up.sh"), "url", "reader")
    prefix = f"vsg{secrets.token_hex(3)}"
    subnet = secrets.randbelow(200) + 20
    table = f"vs_gitops_{prefix}"
    logs = ROOT / ".virtstack" / "gitops-e2e" / time.strftime("%Y%m%dT%H%M%S")
    logs.mkdir(parents=True)
    base = Path(tempfile.mkdtemp(prefix="vs-gitops-"))
    os.chmod(base, 0o755)
    gitea = Gitea(tools / "gitea", tools / "gitea.static", base / "gitea")
    hooks = Hooks()
    passphrase = secrets.token_urlsafe(24)
    secrets_file = base / "secrets"
    rw_url, ro_url = f"{server}&table={table}", f"{reader}&table={table}"
    log(f"stack {prefix}, state table {table}, logs in {logs}")
    try:
        gitea.start()
        secrets_file.write_text("")
        secrets_file.chmod(0o600)
        secrets_file.write_text(
            f"GITHUB_TOKEN={gitea.token}\nPULUMI_CONFIG_PASSPHRASE={passphrase}\n"
            f"PULUMI_BACKEND_URL={rw_url}\nPULUMI_READER_URL={ro_url}\n"
        )
        gitea.call("POST", "/user/repos", {"name": REPO, "private": True, "default_branch": "main"})
        gitea.call(
            "POST",
            f"/repos/{OWNER}/{REPO}/hooks",
            {
                "type": "gitea",
                "active": True,
                "events": ["push", "pull_request"],
                "config": {"url": hooks.url, "content_type": "json"},
            },
        )
        runner = Runner(tools / "act", gitea, logs, prefix, secrets_file)

        # The project as committed (HEAD), plus the e2e stack file, pushed as main.
        repo = base / "work"
        sh("git", "clone", "-q", "--no-hardlinks", str(ROOT), str(repo))
        sh("git", "checkout", "-q", "-B", "main", sh("git", "rev-parse", "HEAD", cwd=ROOT), cwd=repo)
        ident = ["-c", "user.name=ops", "-c", "user.email=ops@example.invalid"]
        spec = repo / "stacks" / f"{prefix}.yaml"

        def commit_push(message: str, branch: str) -> str:
            sh("git", "add", "-A", cwd=repo)
            sh("git", *ident, "commit", "-qm", message, cwd=repo)
            env = {**os.environ, **git_auth(gitea.token)}
            sh(
                "git",
                "push",
                "-q",
                "--force",
                f"{gitea.url}/{OWNER}/{REPO}.git",
                f"HEAD:refs/heads/{branch}",
                cwd=repo,
                env=env,
            )
            return sh("git", "rev-parse", "HEAD", cwd=repo)

        # 1. main with a pool and a network -> up
        spec.write_text(stack_file(prefix, subnet, vm=False))
        main_sha = commit_push(f"stacks/{prefix}.yaml: a pool and a network", "main")
        push = hooks.wait("push", lambda p: p.get("after") == main_sha)
        code, text = runner.run("push main: first apply", "push", push, "virtstack-up.yml", "refs/heads/main")
        check(code == 0, "the up workflow applied main (pool and network)", text)
        networks = sh("virsh", "-q", "net-list", "--all", "--name")
        check(prefix in networks.split(), f"network {prefix} exists in libvirt")

        # 2. a branch adding a VM; a pull request -> plan comment
        sh("git", "checkout", "-q", "-b", "grow", cwd=repo)
        spec.write_text(stack_file(prefix, subnet, vm=True))
        commit_push(f"stacks/{prefix}.yaml: one VM", "grow")
        pr = gitea.call(
            "POST",
            f"/repos/{OWNER}/{REPO}/pulls",
            {"title": "One VM", "head": "grow", "base": "main", "body": "adds a VM"},
        )
        number = int(pr["number"])
        event = hooks.wait("pull_request", lambda p: p.get("action") == "opened")
        code, text = runner.run(
            "PR opened: plan", "pull_request_target", event, "virtstack-plan.yml", "refs/heads/main"
        )
        posted = marker_comments(gitea, number)
        check(code == 0 and len(posted) == 1, "the plan workflow posted one plan comment", text)
        check(f"{prefix}-vm" in posted[0]["body"], "the comment plans the new VM", posted[0]["body"])
        comment_id = posted[0]["id"]
        first_body = posted[0]["body"]

        # 3. a broken stack file -> the comment says so, the job fails
        spec.write_text(stack_file(prefix, subnet, vm=True, memory="plenty"))
        bad = commit_push("stacks: a typo", "grow")
        event = hooks.wait("pull_request", lambda p: p["pull_request"]["head"]["sha"] == bad)
        event["action"] = {"synchronized": "synchronize"}.get(event["action"], event["action"])
        code, text = runner.run(
            "PR push (broken file): plan",
            "pull_request_target",
            event,
            "virtstack-plan.yml",
            "refs/heads/main",
        )
        after_bad = marker_comments(gitea, number)
        check(code != 0, "the plan workflow failed on the plan error", text)
        check(
            len(after_bad) == 1
            and after_bad[0]["id"] == comment_id
            and "plan failed" in after_bad[0]["body"],
            "the same comment now shows the error",
            json.dumps(after_bad)[-2000:],
        )
        bad_body = after_bad[0]["body"]

        # 4. the fix -> the same comment, the plan again
        spec.write_text(stack_file(prefix, subnet, vm=True, memory="320MiB"))
        fixed = commit_push("stacks: fix the typo", "grow")
        event = hooks.wait("pull_request", lambda p: p["pull_request"]["head"]["sha"] == fixed)
        event["action"] = {"synchronized": "synchronize"}.get(event["action"], event["action"])
        code, text = runner.run(
            "PR push (fixed): plan", "pull_request_target", event, "virtstack-plan.yml", "refs/heads/main"
        )
        after_fix = marker_comments(gitea, number)
        check(
            code == 0 and len(after_fix) == 1 and after_fix[0]["id"] == comment_id,
            "the plan comment was updated",
            text,
        )
        check(
            "320" in after_fix[0]["body"] or f"{prefix}-vm" in after_fix[0]["body"], "it plans the fixed VM"
        )
        fixed_body = after_fix[0]["body"]

        # 5. merge -> up applies
        gitea.call("POST", f"/repos/{OWNER}/{REPO}/pulls/{number}/merge", {"Do": "merge"})
        merged = gitea.call("GET", f"/repos/{OWNER}/{REPO}/branches/main")["commit"]["id"]
        push = hooks.wait("push", lambda p: p.get("after") == merged and p.get("ref") == "refs/heads/main")
        code, text = runner.run("merge: apply", "push", push, "virtstack-up.yml", "refs/heads/main")
        check(code == 0, "the up workflow applied the merge", text)
        state = sh("virsh", "domstate", f"{prefix}-vm")
        check(state == "running", f"{prefix}-vm is running in libvirt", state)
        up_text = text

        # 6. out of band: the VM is powered off -> drift fails with the report
        sh("virsh", "destroy", f"{prefix}-vm")
        code, text = runner.run(
            "schedule: drift",
            "schedule",
            {"schedule": "17 * * * *"},
            "virtstack-drift.yml",
            "refs/heads/main",
        )
        check(code != 0 and f"{prefix}-vm" in text, "the drift workflow failed naming the VM", text)
        drift_text = text

        total = time.monotonic() - t0
        report = [
            "## gitops e2e",
            f"gitea {gitea.call('GET', '/version')['version']}, act {sh(str(tools / 'act'), '--version')}",
            "",
            "| run | act exit | seconds |",
            "|---|---|---|",
            *[f"| {title} | {code} | {seconds:.0f} |" for title, code, seconds in runner.runs],
            "",
            f"total (with forge start and cleanup excluded): {total:.0f} s",
            "",
            "### plan comment, first push",
            first_body,
            "",
            "### after the broken push",
            bad_body,
            "",
            "### after the fix",
            fixed_body,
            "",
            "### up log (excerpt)",
            "```",
            excerpt(
                up_text, "Plan for stack", "created (", "Done:", "running on host", "Job succeeded", around=0
            ),
            "```",
            "### drift log (excerpt)",
            "```",
            excerpt(
                drift_text, "Drift report", "differs", f"{prefix}-vm`", "exit status", "Job failed", around=0
            ),
            "```",
        ]
        (logs / "SUMMARY.md").write_text("\n".join(report) + "\n")
        print("\n".join(report))
        log(f"all checks passed in {total:.0f} s; logs in {logs}")
        return 0
    finally:
        log("cleaning up")
        env = {k: v for k, v in os.environ.items() if not k.startswith("PULUMI_")}
        env.update(PULUMI_BACKEND_URL=rw_url, PULUMI_CONFIG_PASSPHRASE=passphrase, VIRTSTACK_ROOT=str(ROOT))
        cleanup = subprocess.run(
            [
                str(ROOT / ".venv/bin/virtstack"),
                "destroy",
                "-s",
                prefix,
                "--yes",
                "--allow-data-loss",
                "--no-trash",
            ],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
        )
        if cleanup.returncode != 0:
            log(f"destroy: {cleanup.stdout[-1000:]}{cleanup.stderr[-1000:]}")
        subprocess.run(
            ["pulumi", "stack", "rm", prefix, "--yes", "--force", "--non-interactive"],
            cwd=ROOT,
            env=env,
            capture_output=True,
        )
        (ROOT / f"Pulumi.{prefix}.yaml").unlink(missing_ok=True)
        subprocess.run(
            ["psql", "-X", "-q", server, "-c", f"DROP TABLE IF EXISTS {table}"], capture_output=True
        )
        subprocess.run(
            [
                "psql",
                "-X",
                "-q",
                server,
                "-c",
                f"DELETE FROM virtstack_run_holders WHERE stack LIKE '{table}/%'",
            ],
            capture_output=True,
        )
        gitea.stop()
        hooks.server.shutdown()
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
