#!/usr/bin/env bash
# Builds the bench's Terraform-style peer from the Go module proxy: OpenTofu and
# terraform-provider-libvirt, each through a wrapper module beside this script (the same approach as
# tools/pulumi). Binaries are cached in $VIRTSTACK_CACHE/bench/bin under the hash of the wrapper's
# go.mod + go.sum, so a second run takes no time. Prints one line per binary; exits non-zero with the
# Go tool's own message when a module cannot be had.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
BIN=${VIRTSTACK_CACHE:-/var/cache/virtstack}/bench/bin
mkdir -p "$BIN"
export GOFLAGS=-mod=mod

build() {  # wrapper-dir main-package output-name
  local dir=$here/$1 pkg=$2 out=$3 stamp
  stamp=$(cat "$dir/go.mod" "$dir/go.sum" 2>/dev/null | sha256sum | cut -c1-16)
  if [ -x "$BIN/$out" ] && [ "$(cat "$BIN/$out.stamp" 2>/dev/null)" = "$stamp" ]; then
    echo "$out: cached $BIN/$out"; return 0
  fi
  (cd "$dir" && go build -trimpath -ldflags "-s -w" -o "$BIN/$out.tmp" "$pkg")
  mv "$BIN/$out.tmp" "$BIN/$out"
  echo "$stamp" >"$BIN/$out.stamp"
  echo "$out: built $BIN/$out"
}

case ${1:-all} in
  provider) build terraform-provider-libvirt github.com/dmacvicar/terraform-provider-libvirt terraform-provider-libvirt ;;
  tofu) build tofu github.com/opentofu/opentofu/cmd/tofu tofu ;;
  all)
    build terraform-provider-libvirt github.com/dmacvicar/terraform-provider-libvirt terraform-provider-libvirt
    build tofu github.com/opentofu/opentofu/cmd/tofu tofu ;;
esac
