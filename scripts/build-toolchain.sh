#!/usr/bin/env bash
# Provide the Pulumi CLI, the Python language host and the dynamic-provider launcher.
#
# Order of preference: a `pulumi` already on PATH (and its plugins), else the official installer when
# get.pulumi.com is reachable, else a build from the Go module proxy through the wrapper modules in
# tools/ (pkg/v3's replace directives make a plain `go install` impossible). Built binaries are cached
# in $VIRTSTACK_TOOLCHAIN keyed by version and by a hash of our wrapper sources, so a second setup
# takes no time.
set -euo pipefail
# shellcheck source=scripts/env.sh
. "$(dirname "$0")/env.sh"
cd "$VIRTSTACK_ROOT"

log() { printf 'build-toolchain: %s\n' "$*" >&2; }
BIN=$VIRTSTACK_TOOLCHAIN/bin
VERSION=$VIRTSTACK_PULUMI_VERSION
STAMP=$BIN/.stamp
want_stamp=$(cat tools/pulumi/go.mod tools/pulumi/go.sum tools/pulumi-language-python/go.mod \
  tools/pulumi-language-python/go.sum tools/pulumi-language-python/*.go "$0" | sha256sum | cut -c1-16)

have_pulumi_on_path() {
  # Our own bin dir is on PATH too; only a pulumi from elsewhere counts here.
  local p
  p=$(PATH=${PATH//$BIN/} command -v pulumi 2>/dev/null) || return 1
  "$p" version >/dev/null 2>&1 && command -v pulumi-language-python >/dev/null 2>&1
}

if [ "${VIRTSTACK_FORCE_TOOLCHAIN_BUILD:-0}" != 1 ] && have_pulumi_on_path; then
  log "using $(command -v pulumi) ($(pulumi version)) from PATH"
  exit 0
fi

if [ -x "$BIN/pulumi" ] && [ "$(cat "$STAMP" 2>/dev/null)" = "$want_stamp" ]; then
  log "cached toolchain in $BIN ($("$BIN/pulumi" version))"
  exit 0
fi

mkdir -p "$BIN"
if [ "${VIRTSTACK_FORCE_TOOLCHAIN_BUILD:-0}" != 1 ] &&
  curl -fsS --max-time 5 -o /dev/null https://get.pulumi.com/ 2>/dev/null; then
  log "get.pulumi.com is reachable: official installer"
  curl -fsSL https://get.pulumi.com | sh -s -- --version "$VERSION" --install-root "$VIRTSTACK_TOOLCHAIN" --no-edit-path
  echo "$want_stamp" >"$STAMP"
  exit 0
fi

command -v go >/dev/null || { log "Go is needed to build Pulumi offline (https://go.dev/dl)"; exit 1; }
export GOFLAGS=-mod=mod
ldflags="-s -w -X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=v$VERSION"

t0=$(date +%s)
log "building pulumi v$VERSION from the Go module proxy (cold: several minutes)"
(cd tools/pulumi && go build -trimpath -ldflags "$ldflags" -o "$BIN/pulumi.tmp" github.com/pulumi/pulumi/pkg/v3/cmd/pulumi)
mv "$BIN/pulumi.tmp" "$BIN/pulumi"
t1=$(date +%s)
log "pulumi built in $((t1 - t0))s"

(cd tools/pulumi-language-python && go build -trimpath -ldflags "-s -w" -o "$BIN/pulumi-language-python.tmp" .)
mv "$BIN/pulumi-language-python.tmp" "$BIN/pulumi-language-python"
log "pulumi-language-python built in $(($(date +%s) - t1))s"

# The exec script and the dynamic-provider launcher ship inside the sdk/v3 module.
sdk=$(cd tools/pulumi && go list -m -f '{{.Dir}}' github.com/pulumi/pulumi/sdk/v3)
install -m 0755 "$sdk/python/cmd/pulumi-language-python-exec" "$BIN/pulumi-language-python-exec"
install -m 0755 "$sdk/python/dist/pulumi-resource-pulumi-python" "$BIN/pulumi-resource-pulumi-python"

echo "$want_stamp" >"$STAMP"
log "toolchain ready in $BIN: $("$BIN/pulumi" version)"
