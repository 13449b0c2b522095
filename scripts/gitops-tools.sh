#!/usr/bin/env bash
# Build the two programs `make gitops-e2e` runs, from the Go module proxy, cached per version under
# $VIRTSTACK_CACHE/gitops/bin (a second run takes no time):
#   act    github.com/nektos/act   - runs GitHub-Actions-format workflows; with `-P label=-self-hosted`
#                                    it runs a job's `run:` steps on this host (no containers)
#   gitea  code.gitea.io/gitea     - a forge on loopback whose /api/v1 issue comments have GitHub's shape
# gitea's go.mod has replace directives, so `go install mod@version` refuses it: it is built from its
# module directory instead, with SQLite (the cgo driver and gitea's `sqlite sqlite_unlock_notify` tags).
# Why v1.26.0 and not v1.27.3: 1.27.3 needs gitea.dev/actions-proto-go and gitea.dev/sdk, and the Go
# module proxy here refuses the host gitea.dev ("Go module host not permitted"), as well as
# gitlab.com/gitlab-org/api/client-go/v2 v2.42.0 (403); every module 1.26.0 needs is served.
set -euo pipefail
# shellcheck source=scripts/env.sh
. "$(dirname "$0")/env.sh"

ACT_VERSION=${VIRTSTACK_ACT_VERSION:-v0.2.89}
GITEA_VERSION=${VIRTSTACK_GITEA_VERSION:-v1.26.0}
BIN=$VIRTSTACK_CACHE/gitops/bin
mkdir -p "$BIN"
log() { printf 'gitops-tools: %s\n' "$*" >&2; }
command -v go >/dev/null || { log "Go is needed to build act and gitea (https://go.dev/dl)"; exit 1; }

if [ ! -x "$BIN/act-$ACT_VERSION" ]; then
  t0=$(date +%s)
  log "building act $ACT_VERSION"
  GOBIN=$BIN.tmp-act go install -trimpath -ldflags "-s -w" "github.com/nektos/act@$ACT_VERSION"
  mv "$BIN.tmp-act/act" "$BIN/act-$ACT_VERSION" && rmdir "$BIN.tmp-act"
  log "act built in $(($(date +%s) - t0))s"
fi
ln -sfn "act-$ACT_VERSION" "$BIN/act"

if [ ! -x "$BIN/gitea-$GITEA_VERSION" ]; then
  t0=$(date +%s)
  log "building gitea $GITEA_VERSION (large: several minutes)"
  src=$(cd /tmp && go mod download -json "code.gitea.io/gitea@$GITEA_VERSION" |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["Dir"])')
  tags="sqlite sqlite_unlock_notify" cgo=1
  if [ -f "$src/models/db/driver_sqlite_modernc.go" ]; then tags="" cgo=0; fi  # newer gitea: pure Go sqlite
  (cd "$src" && CGO_ENABLED=$cgo go build -trimpath -tags "$tags" \
    -ldflags "-s -w -X main.Version=${GITEA_VERSION#v} -X 'main.Tags=$tags'" -o "$BIN/gitea-$GITEA_VERSION.tmp" .)
  mv "$BIN/gitea-$GITEA_VERSION.tmp" "$BIN/gitea-$GITEA_VERSION"
  log "gitea built in $(($(date +%s) - t0))s"
fi
# Templates, locales and public files are read at run time (no bindata build), by gitea's own
# unprivileged user: a world-readable copy of those directories of its source.
static=$BIN/gitea-$GITEA_VERSION.static
if [ ! -d "$static" ]; then
  src=$(cd /tmp && go mod download -json "code.gitea.io/gitea@$GITEA_VERSION" |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["Dir"])')
  mkdir -p "$static.tmp"
  cp -r "$src/templates" "$src/options" "$src/public" "$static.tmp/"
  chmod -R u+w,a+rX "$static.tmp" && mv "$static.tmp" "$static"
fi
ln -sfn "gitea-$GITEA_VERSION" "$BIN/gitea"
ln -sfn "gitea-$GITEA_VERSION.static" "$BIN/gitea.static"
echo "$BIN"
