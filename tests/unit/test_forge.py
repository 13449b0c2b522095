"""The plan comment poster (virtstack.forge, `virtstack comment`) against a forge on loopback: an
HTTP server with the issue-comment endpoints of GitHub's and Gitea's REST API (same shape; paging
by `per_page` on GitHub, `limit` on Gitea)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from virtstack.cli.main import cli
from virtstack.forge import DEFAULT_MARKER, ForgeError, post_comment

TOKEN = "tok-4f1d2c-secret"


class Forge:
    """Comments of pull request 7 of acme/infra; records every request."""

    def __init__(self, paging: str) -> None:
        self.paging = paging  # "per_page" (GitHub) or "limit" (Gitea)
        self.comments: list[dict[str, Any]] = []
        self.requests: list[tuple[str, str, str]] = []  # method, path, Authorization
        self.status = 200
        self.next_id = 100

    def add(self, body: str) -> None:
        self.next_id += 1
        self.comments.append({"id": self.next_id, "body": body, "html_url": f"http://f/c/{self.next_id}"})


@pytest.fixture(params=["per_page", "limit"])
def forge(request: pytest.FixtureRequest) -> Iterator[tuple[Forge, str]]:
    state = Forge(request.param)

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def _send(self, code: int, payload: Any) -> None:
            data = json.dumps(payload).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _handle(self) -> None:
            path, _, query = self.path.partition("?")
            state.requests.append((self.command, path, self.headers.get("Authorization", "")))
            if self.headers.get("Authorization") != f"token {TOKEN}":
                return self._send(401, {"message": "token is required"})
            if state.status != 200:
                return self._send(state.status, {"message": f"refused {TOKEN}"})
            args = dict(p.split("=", 1) for p in query.split("&") if "=" in p)
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length) or b"{}")
            if self.command == "GET" and path == "/api/repos/acme/infra/issues/7/comments":
                size = int(args[state.paging])
                page = int(args.get("page", "1"))
                return self._send(200, state.comments[(page - 1) * size : page * size])
            if self.command == "POST" and path == "/api/repos/acme/infra/issues/7/comments":
                state.add(body["body"])
                return self._send(201, state.comments[-1])
            if self.command == "PATCH" and path.startswith("/api/repos/acme/infra/issues/comments/"):
                wanted = int(path.rsplit("/", 1)[1])
                for comment in state.comments:
                    if comment["id"] == wanted:
                        comment["body"] = body["body"]
                        return self._send(200, comment)
            return self._send(404, {"message": "not found"})

        do_GET = do_POST = do_PATCH = _handle

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state, f"http://127.0.0.1:{server.server_address[1]}/api"
    finally:
        server.shutdown()
        server.server_close()


def test_the_first_push_posts_and_every_later_push_updates_the_same_comment(forge: tuple[Forge, str]) -> None:
    state, api = forge
    state.add("LGTM")  # someone else's comment stays as it is
    first = post_comment(api, "acme/infra", 7, "plan v1", TOKEN)
    assert first.created and [c["body"] for c in state.comments] == ["LGTM", f"{DEFAULT_MARKER}\nplan v1"]
    second = post_comment(api, "acme/infra", 7, "plan v2", TOKEN)
    assert not second.created and second.id == first.id
    assert [c["body"] for c in state.comments] == ["LGTM", f"{DEFAULT_MARKER}\nplan v2"]
    assert {auth for _, _, auth in state.requests} == {f"token {TOKEN}"}


def test_the_marked_comment_is_found_past_the_first_page(forge: tuple[Forge, str]) -> None:
    state, api = forge
    for n in range(120):
        state.add(f"chatter {n}")
    state.add(f"{DEFAULT_MARKER}\nold plan")
    made = post_comment(api, "acme/infra", 7, "new plan", TOKEN)
    assert not made.created and state.comments[-1]["body"] == f"{DEFAULT_MARKER}\nnew plan"
    assert len(state.comments) == 121
    assert [m for m, _, _ in state.requests].count("GET") == 3


def test_a_huge_plan_is_cut_to_what_the_forge_takes(forge: tuple[Forge, str]) -> None:
    state, api = forge
    post_comment(api, "acme/infra", 7, "x" * 200_000, TOKEN)
    body = state.comments[-1]["body"]
    assert len(body) <= 65_000 and body.startswith(DEFAULT_MARKER) and "(cut:" in body


@pytest.mark.parametrize(
    ("api", "repo", "number", "token", "message"),
    [
        ("ftp://x/api", "acme/infra", 7, TOKEN, "forge API URL 'ftp://x/api' is not an http(s) URL"),
        ("http://127.0.0.1:9/api", "acme", 7, TOKEN, "repository 'acme' is not OWNER/NAME"),
        ("http://127.0.0.1:9/api", "acme/infra", 0, TOKEN, "pull request number 0 must be above 0"),
        ("http://127.0.0.1:9/api", "acme/infra", 7, "", "no forge token: set the token variable"),
    ],
)
def test_unusable_input_is_one_line_before_any_request(
    api: str, repo: str, number: int, token: str, message: str
) -> None:
    with pytest.raises(ForgeError, match="^" + message.replace("(", r"\(").replace(")", r"\)")):
        post_comment(api, repo, number, "plan", token)


def test_a_refusal_names_the_call_and_status_but_never_the_token(forge: tuple[Forge, str]) -> None:
    state, api = forge
    state.status = 403
    with pytest.raises(ForgeError) as caught:
        post_comment(api, "acme/infra", 7, "plan", TOKEN)
    assert str(caught.value) == f"GET {api}/repos/acme/infra/issues/7/comments: HTTP 403: refused ****"


def test_the_command_posts_then_updates_with_exact_output(forge: tuple[Forge, str], tmp_path: Path) -> None:
    state, api = forge
    plan = tmp_path / "plan.md"
    plan.write_text("### Plan\n2 to create\n")
    env = {"GITHUB_API_URL": api, "GITHUB_REPOSITORY": "acme/infra", "FORGE_TOKEN": TOKEN}
    args = ["comment", "--pr", "7", "--file", str(plan), "--token-env", "FORGE_TOKEN"]
    first = CliRunner().invoke(cli, args, env=env)
    assert (first.exit_code, first.output) == (
        0,
        "Posted the plan comment on pull request #7 of acme/infra: http://f/c/101\n",
    )
    second = CliRunner().invoke(cli, args, env=env)
    assert (second.exit_code, second.output) == (
        0,
        "Updated the plan comment on pull request #7 of acme/infra: http://f/c/101\n",
    )
    assert state.comments[-1]["body"] == f"{DEFAULT_MARKER}\n### Plan\n2 to create\n"
    assert TOKEN not in first.output + second.output


def test_the_command_without_a_token_fails_in_one_line(tmp_path: Path) -> None:
    plan = tmp_path / "plan.md"
    plan.write_text("plan")
    env = {"GITHUB_API_URL": "http://127.0.0.1:9/api", "GITHUB_REPOSITORY": "acme/infra", "GITHUB_TOKEN": ""}
    result = CliRunner().invoke(cli, ["comment", "--pr", "7", "--file", str(plan)], env=env)
    assert (result.exit_code, result.output) == (
        1,
        "error: no forge token: set the token variable (a secret of the workflow)\n",
    )
