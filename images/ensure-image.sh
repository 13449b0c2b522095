#!/usr/bin/env bash
# Make .virtstack/images/debian-12.qcow2 available, building it only when its recipe changed.
# The cache key is the hash of images/build-image.sh (the whole recipe lives in that one script).
set -euo pipefail
# shellcheck source=scripts/env.sh
. "$(dirname "$0")/../scripts/env.sh"
cd "$VIRTSTACK_ROOT"

key=$(sha256sum images/build-image.sh | cut -c1-16)
cached=$VIRTSTACK_CACHE/images/debian-12-$key.qcow2
link=.virtstack/images/debian-12.qcow2
mkdir -p "$(dirname "$cached")" "$(dirname "$link")"
if [ ! -s "$cached" ]; then
  t0=$(date +%s)
  images/build-image.sh "$cached"
  echo "image built in $(($(date +%s) - t0))s: $cached" >&2
else
  echo "cached image $cached" >&2
fi
ln -sfn "$cached" "$link"
# Images of older recipes are not used by anything: hosts hold their own copies in their pools.
find "$(dirname "$cached")" -maxdepth 1 -name 'debian-12-*.qcow2*' ! -name "$(basename "$cached")*" -delete
