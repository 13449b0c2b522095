#!/usr/bin/env bash
# Provide the resource plugin `libvirt` 0.5.4 that the pulumi-libvirt SDK (PyPI pulumi-libvirt==0.5.4)
# asks the engine for, installed into $PULUMI_HOME (`pulumi plugin ls` lists it).
#
# Offline route (default here): github.com/pulumi/pulumi-libvirt/provider is not served by the Go module
# proxy, so tools/pulumi-resource-libvirt/ bridges terraform-provider-libvirt v0.7.6 itself through
# pulumi-terraform-bridge: build its tfgen, write the schema (--skip-examples: without it tfgen runs the
# Terraform example converter), stamp version 0.5.4 into the schema, build the provider with the schema
# embedded and the version set through -ldflags -X (the engine loads plugins by exact version).
# The binary is cached in $VIRTSTACK_CACHE/toolchain keyed by a hash of the wrapper's sources and go.sum,
# so a warm setup builds nothing.
# Internet route: `pulumi plugin install resource libvirt v0.5.4` brings the upstream binary (bridged from
# terraform-provider-libvirt 0.8.1); set VIRTSTACK_LIBVIRT_PLUGIN=upstream to take it.
set -euo pipefail
# shellcheck source=scripts/env.sh
. "$(dirname "$0")/env.sh"
cd "$VIRTSTACK_ROOT"

log() { printf 'build-libvirt-plugin: %s\n' "$*" >&2; }
VERSION=0.5.4 # pulumi-libvirt's SDK version on PyPI, pinned in pyproject.toml
TF_VERSION=0.7.6
SRC=tools/pulumi-resource-libvirt
SELF=$VIRTSTACK_ROOT/scripts/build-libvirt-plugin.sh
export PATH=$VIRTSTACK_TOOLCHAIN/bin:$PATH

installed() {
  # `pulumi plugin ls` lines: NAME KIND VERSION SIZE ...
  pulumi plugin ls 2>/dev/null | awk -v v="$VERSION" '$1 == "libvirt" && $2 == "resource" && $3 == v { found = 1 } END { exit !found }'
}

if [ "${VIRTSTACK_LIBVIRT_PLUGIN:-bridged}" = upstream ]; then
  log "internet route: the upstream plugin (bridged from terraform-provider-libvirt 0.8.1)"
  pulumi plugin install resource libvirt "v$VERSION"
  exit 0
fi

key=$( (cd "$SRC" && cat go.mod go.sum ./*.go version/*.go cmd/*/main.go; cat "$SELF"; go version) | sha256sum | cut -c1-16)
OUT=$VIRTSTACK_CACHE/toolchain/pulumi-resource-libvirt-$VERSION-tf$TF_VERSION-$key
BIN=$OUT/pulumi-resource-libvirt

if [ ! -x "$BIN" ]; then
  command -v go >/dev/null || { log "Go is needed to build the libvirt plugin offline (https://go.dev/dl)"; exit 1; }
  export GOFLAGS=-mod=mod
  t0=$(date +%s)
  log "building resource plugin libvirt $VERSION from terraform-provider-libvirt $TF_VERSION (cold: about 5 min)"
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  cp -r "$SRC" "$tmp/src"
  ldflags="-s -w -X virtstack.local/tools/pulumi-resource-libvirt/version.Version=$VERSION"
  (cd "$tmp/src" && go build -trimpath -ldflags "$ldflags" -o "$tmp/pulumi-tfgen-libvirt" ./cmd/pulumi-tfgen-libvirt)
  (cd "$tmp" && ./pulumi-tfgen-libvirt schema --skip-examples --out "$tmp/schema" >"$tmp/tfgen.log" 2>&1) ||
    { cat "$tmp/tfgen.log" >&2; exit 1; }
  python3 - "$tmp/schema/schema.json" "$tmp/src/cmd/pulumi-resource-libvirt/schema.json" "$VERSION" <<'PY'
import json, sys
src, dst, version = sys.argv[1:]
with open(src) as f:
    schema = json.load(f)
schema["version"] = version
with open(dst, "w") as f:
    json.dump(schema, f, indent=2, sort_keys=True)
PY
  (cd "$tmp/src" && go build -trimpath -ldflags "$ldflags" -o "$tmp/pulumi-resource-libvirt" ./cmd/pulumi-resource-libvirt)
  mkdir -p "$OUT"
  install -m 0644 "$tmp/src/cmd/pulumi-resource-libvirt/schema.json" "$OUT/schema.json"
  install -m 0755 "$tmp/pulumi-resource-libvirt" "$BIN.tmp" && mv "$BIN.tmp" "$BIN"
  log "built in $(($(date +%s) - t0))s: $BIN"
  # Builds of older wrapper sources are of no further use.
  find "$VIRTSTACK_CACHE/toolchain" -maxdepth 1 -name 'pulumi-resource-libvirt-*' ! -path "$OUT" -exec rm -rf {} +
else
  log "cached: $BIN"
fi

# Reinstall only when the installed plugin is not this very binary.
dest=$PULUMI_HOME/plugins/resource-libvirt-v$VERSION/pulumi-resource-libvirt
if ! installed || ! cmp -s "$BIN" "$dest"; then
  pulumi plugin install resource libvirt "$VERSION" --file "$BIN" --reinstall >/dev/null
fi
installed || { log "pulumi plugin ls does not list resource libvirt $VERSION after installing it"; exit 1; }
log "resource plugin libvirt $VERSION in $PULUMI_HOME: offline route, bridged from terraform-provider-libvirt $TF_VERSION" \
  "(with internet: VIRTSTACK_LIBVIRT_PLUGIN=upstream, i.e. \`pulumi plugin install resource libvirt v$VERSION\`)"
