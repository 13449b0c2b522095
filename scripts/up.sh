#!/usr/bin/env bash
# `make up`: bring up a stack (default: dev, from stacks/dev.yaml) with the real Pulumi engine, then
# say where each VM is and whether libvirt reports it running.
set -euo pipefail
# shellcheck source=scripts/env.sh
. "$(dirname "$0")/env.sh"
cd "$VIRTSTACK_ROOT"
stack=${1:-dev}

# The one front door: the same preview, data-loss guard and VM state check as `virtstack up` (a plan
# that would destroy a disk holding data stops here, with the disks named). It ends by printing each
# VM, its host and the state libvirt reports.
.venv/bin/virtstack up --yes -s "$stack"
