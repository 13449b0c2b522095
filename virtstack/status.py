"""`python -m virtstack.status < outputs.json`: where each VM of a stack is and what libvirt says of it.

Used by `make up` after `pulumi up`; reads the stack's `vms` output, asks libvirt for each domain's
state, and exits non-zero unless every VM that should run is running.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import libvirt

from virtstack.units import format_size


def domain_state(uri: str, domain: str) -> str:
    try:
        conn = libvirt.open(uri)
    except libvirt.libvirtError as err:
        return f"unreachable ({err.get_error_message()})"
    try:
        state = conn.lookupByName(domain).state()[0]
    except libvirt.libvirtError:
        return "missing"
    finally:
        conn.close()
    names = {
        libvirt.VIR_DOMAIN_RUNNING: "running",
        libvirt.VIR_DOMAIN_SHUTOFF: "shut off",
        libvirt.VIR_DOMAIN_PAUSED: "paused",
        libvirt.VIR_DOMAIN_CRASHED: "crashed",
    }
    return names.get(state, f"state {state}")


def report(vms: dict[str, Any]) -> tuple[list[str], bool]:
    lines, ok = [], True
    for name, vm in sorted(vms.items()):
        state = domain_state(vm["uri"], vm["domain"])
        ips = ", ".join(ip for ip in vm["ips"] if ip) or "DHCP"
        lines.append(
            f"  {name}: on host {vm['host']} ({vm['uri']}), {vm['vcpus']} vCPU, "
            f"{format_size(vm['memory'])}, {ips} -> {state}"
        )
        lines.append(f"      serial console log: {vm['console_log']}")
        ok = ok and state == "running"
    return lines, ok


def main() -> int:
    vms = json.load(sys.stdin) or {}
    lines, ok = report(vms)
    print("\n".join(lines) if lines else "  (no VMs)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
