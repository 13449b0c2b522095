"""`virtstack comment`: post or update the plan comment on a pull request (virtstack.forge)."""

from __future__ import annotations

from pathlib import Path

import click

from virtstack.cli.common import services
from virtstack.errors import VirtstackError
from virtstack.forge import DEFAULT_MARKER, post_comment


@click.command("comment")
@click.option("--pr", "number", type=int, required=True, help="The pull request's number.")
@click.option(
    "--file", "path", metavar="FILE", required=True, help="The markdown to post (`plan --out FILE`)."
)
@click.option("--repo", default=None, help="OWNER/NAME [default: $GITHUB_REPOSITORY]")
@click.option(
    "--api",
    default=None,
    help="The forge's REST API: https://api.github.com, https://HOST/api/v1 (Gitea, Forgejo) "
    "[default: $GITHUB_API_URL]",
)
@click.option(
    "--token-env",
    default="GITHUB_TOKEN",
    show_default=True,
    help="The variable holding the API token (a secret; never printed).",
)
@click.option("--marker", default=DEFAULT_MARKER, show_default=True, help="What marks the comment as ours.")
@click.pass_context
def comment_command(
    ctx: click.Context,
    number: int,
    path: str,
    repo: str | None,
    api: str | None,
    token_env: str,
    marker: str,
) -> None:
    """Post FILE as the pull request's plan comment, or update the comment posted before (the first
    one starting with the marker), so a pull request keeps one plan comment however often it is
    pushed.  GitHub's and Gitea/Forgejo's issue-comment API.  Exit 0 · 1 on any failure."""
    environ = services(ctx).environ
    repo = repo or environ.get("GITHUB_REPOSITORY", "")
    api = api or environ.get("GITHUB_API_URL", "")
    if not repo:
        raise VirtstackError("no repository: pass --repo OWNER/NAME or set GITHUB_REPOSITORY")
    if not api:
        raise VirtstackError("no forge API URL: pass --api URL or set GITHUB_API_URL")
    try:
        body = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise VirtstackError(f"{path}: cannot read the comment: {getattr(err, 'strerror', err)}") from None
    made = post_comment(api, repo, number, body, environ.get(token_env, ""), marker)
    what = "Posted" if made.created else "Updated"
    click.echo(f"{what} the plan comment on pull request #{number} of {repo}: {made.url or made.id}")


def register(group: click.Group) -> None:
    group.add_command(comment_command)
