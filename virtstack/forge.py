"""Post or update one markdown comment on a pull request through a forge's REST API.

The issue-comment endpoints have one shape on GitHub (`https://api.github.com`, or
`https://HOST/api/v3` for GitHub Enterprise) and on Gitea/Forgejo (`https://HOST/api/v1`):
    GET   {api}/repos/{owner}/{repo}/issues/{number}/comments     (paged)
    POST  {api}/repos/{owner}/{repo}/issues/{number}/comments     {"body": …}
    PATCH {api}/repos/{owner}/{repo}/issues/comments/{id}         {"body": …}
A comment is ours when its body starts with the marker (an HTML comment, invisible when rendered):
the first one found is updated, so a pull request keeps one plan comment however often it is pushed.

The token is sent as `Authorization: token …` (both forges accept it) and never appears in a
message, whatever fails.  Stdlib only (urllib): a runner needs nothing else to post.

Public API:
    Comment(id, url, created)        -- the comment written
    post_comment(api, repo, number, body, token, marker, opener=None) -> Comment   (raises ForgeError)
    ForgeError(VirtstackError)
"""

from __future__ import annotations

import contextlib
import json
import re
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from virtstack.errors import VirtstackError

__all__ = ["DEFAULT_MARKER", "MAX_BODY", "Comment", "ForgeError", "post_comment"]

DEFAULT_MARKER = "<!-- virtstack-plan -->"
# GitHub refuses comment bodies over 65,536 characters; Gitea takes more, but the same cut keeps one rule.
MAX_BODY = 65_000
PAGE = 50
MAX_PAGES = 40  # 2,000 comments: a pull request with more is not searched further
_REPO = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")
Opener = Callable[[urllib.request.Request, float], Any]


class ForgeError(VirtstackError):
    """A forge API call failed or its input is unusable; one line, never the token."""


@dataclass(frozen=True)
class Comment:
    id: int
    url: str
    created: bool  # False: an earlier comment with the marker was updated


def _check(api: str, repo: str, number: int, token: str) -> str:
    parts = urlsplit(api)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ForgeError(f"forge API URL {api!r} is not an http(s) URL")
    if not _REPO.match(repo):
        raise ForgeError(f"repository {repo!r} is not OWNER/NAME")
    if number <= 0:
        raise ForgeError(f"pull request number {number} must be above 0")
    if not token:
        raise ForgeError("no forge token: set the token variable (a secret of the workflow)")
    if any(c in token for c in "\r\n"):
        raise ForgeError("the forge token holds a line break")
    return api.rstrip("/")


def _default_opener(request: urllib.request.Request, timeout: float) -> Any:
    return urllib.request.urlopen(request, timeout=timeout)


def _call(opener: Opener, method: str, url: str, token: str, payload: dict[str, Any] | None = None) -> Any:
    data = None if payload is None else json.dumps(payload).encode()
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Authorization", f"token {token}")
    request.add_header("Accept", "application/json")
    request.add_header("User-Agent", "virtstack")
    if data is not None:
        request.add_header("Content-Type", "application/json")
    where = f"{method} {url.split('?', 1)[0]}"
    try:
        with opener(request, 30.0) as response:
            text = response.read().decode("utf-8", errors="replace")
    except urllib.error.HTTPError as err:
        detail = ""
        with contextlib.suppress(ValueError, AttributeError, OSError):
            detail = str(json.loads(err.read().decode("utf-8", errors="replace")).get("message", ""))
        detail = detail.replace(token, "****")[:200]
        raise ForgeError(f"{where}: HTTP {err.code}{': ' + detail if detail else ''}") from None
    except (urllib.error.URLError, OSError) as err:
        reason = getattr(err, "reason", err)
        raise ForgeError(f"{where}: {str(reason).replace(token, '****')}") from None
    try:
        return json.loads(text) if text.strip() else None
    except ValueError:
        raise ForgeError(f"{where}: the answer is not JSON") from None


def _find(opener: Opener, base: str, number: int, token: str, marker: str) -> dict[str, Any] | None:
    for page in range(1, MAX_PAGES + 1):
        # per_page is GitHub's name, limit Gitea's; each ignores the other.
        url = f"{base}/issues/{number}/comments?page={page}&per_page={PAGE}&limit={PAGE}"
        comments = _call(opener, "GET", url, token)
        if not isinstance(comments, list):
            raise ForgeError(f"GET {base}/issues/{number}/comments: the answer is not a list of comments")
        for comment in comments:
            if isinstance(comment, dict) and str(comment.get("body") or "").startswith(marker):
                return comment
        if len(comments) < PAGE:
            return None
    return None


def post_comment(
    api: str,
    repo: str,
    number: int,
    body: str,
    token: str,
    marker: str = DEFAULT_MARKER,
    opener: Opener | None = None,
) -> Comment:
    """Create the pull request's marked comment, or update the one it has."""
    base = f"{_check(api, repo, number, token)}/repos/{repo}"
    call = opener or _default_opener
    text = f"{marker}\n{body}"
    if len(text) > MAX_BODY:
        text = text[: MAX_BODY - 80] + "\n\n… (cut: the whole plan is in the job's summary and log)\n"
    found = _find(call, base, number, token, marker)
    if found is not None:
        answer = _call(call, "PATCH", f"{base}/issues/comments/{int(found['id'])}", token, {"body": text})
        created = False
    else:
        answer = _call(call, "POST", f"{base}/issues/{number}/comments", token, {"body": text})
        created = True
    if not isinstance(answer, dict) or "id" not in answer:
        raise ForgeError(f"{base}: the forge did not return the comment")
    return Comment(int(answer["id"]), str(answer.get("html_url") or ""), created)
