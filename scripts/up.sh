#!/usr/bin/env bash
# `make up`: bring up a stack (default: dev, from stacks/dev.yaml) with the real Pulumi engine, then
# say where each VM is and whether libvirt reports it running.
set -euo pipefail
# shellcheck source=scripts/env.sh
. "$(dirname "$0")/env.sh"
cd "$VIRTSTACK_ROOT"
stack=${1:-dev}

pulumi stack select --create "$stack" --non-interactive >/dev/null
pulumi up --yes --skip-preview --stack "$stack" --non-interactive

echo
echo "VMs of stack $stack:"
pulumi stack output vms --json --stack "$stack" | .venv/bin/python -m virtstack.status
