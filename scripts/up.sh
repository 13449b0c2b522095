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
pulumi stack output vms --json --stack "$stack" | .venv/bin/python -c '
import json, subprocess, sys
vms = json.load(sys.stdin) or {}
failed = 0
for name, vm in sorted(vms.items()):
    state = subprocess.run(["virsh", "-c", vm["uri"], "domstate", vm["domain"]],
                           capture_output=True, text=True).stdout.strip() or "missing"
    ips = ", ".join(ip for ip in vm["ips"] if ip) or "DHCP"
    print(f"  {name}: host {vm[\"host\"]} ({vm[\"uri\"]}), {vm[\"vcpus\"]} vCPU, "
          f"{vm[\"memory\"] // 2**20} MiB, {ips} -> {state}")
    print(f"      console log: {vm[\"console_log\"]}")
    failed += state != "running"
sys.exit(1 if failed else 0)
'
