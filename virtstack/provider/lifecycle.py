"""A domain's power changes as virtstack makes them (issue 17): graceful stops, reboots into a new
cloud-init seed, and an undefine that takes the VM's NVRAM, TPM state and snapshots with it.

Kept apart from virtstack.provider.domains (which decides *what* changes) so other lifecycle work —
boot order, moves between hosts — composes with it instead of editing the same functions.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterable
from dataclasses import dataclass

import libvirt
import pulumi

from virtstack.provider.xml import parse_firmware

START_TIMEOUT_SECONDS = 60.0
_POLL_SECONDS = 0.25


def wait_state(dom: libvirt.virDomain, wanted: Iterable[int], timeout: float) -> bool:
    wanted = set(wanted)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if dom.state()[0] in wanted:
            return True
        time.sleep(_POLL_SECONDS)
    return dom.state()[0] in wanted


@dataclass(frozen=True)
class Stopped:
    """How a running guest went down: `clean` by its own ACPI shutdown, else forced after `timeout`."""

    was_running: bool
    clean: bool
    seconds: float

    def describe(self, name: str, timeout: float) -> str:
        if not self.was_running:
            return f"vm {name} was not running"
        if self.clean:
            return f"vm {name} shut down by ACPI in {self.seconds:.0f} s"
        return f"vm {name} did not shut down by ACPI within {timeout:.0f} s (shutdown_timeout): forced off"


_RESEND_SECONDS = 5.0  # a power-button press during early boot is lost (nothing listens yet): press again


def _press_power_button(dom: libvirt.virDomain) -> None:
    """An ACPI power-button press; a driver that cannot choose the method gets its default shutdown."""
    try:
        dom.shutdownFlags(libvirt.VIR_DOMAIN_SHUTDOWN_ACPI_POWER_BTN)
    except libvirt.libvirtError:
        with contextlib.suppress(libvirt.libvirtError):
            dom.shutdown()


def _wait_shutoff(dom: libvirt.virDomain, deadline: float) -> bool:
    while time.monotonic() < deadline:
        if wait_state(dom, [libvirt.VIR_DOMAIN_SHUTOFF], min(_RESEND_SECONDS, deadline - time.monotonic())):
            return True
        _press_power_button(dom)
    return dom.state()[0] == libvirt.VIR_DOMAIN_SHUTOFF


def graceful_stop(dom: libvirt.virDomain, timeout: float) -> Stopped:
    """An ACPI shutdown, waiting up to `timeout` seconds for the guest to power off; then a hard stop.
    A paused guest cannot react to ACPI: it is resumed first. `timeout` 0 forces it off at once."""
    if not dom.isActive():
        return Stopped(False, True, 0.0)
    start = time.monotonic()
    clean = False
    if timeout > 0:
        with contextlib.suppress(libvirt.libvirtError):
            if dom.state()[0] == libvirt.VIR_DOMAIN_PAUSED:
                dom.resume()
        _press_power_button(dom)
        clean = _wait_shutoff(dom, start + timeout)
    if not clean:
        try:
            dom.destroy()
        except libvirt.libvirtError:
            if dom.isActive():
                raise
    return Stopped(True, clean, time.monotonic() - start)


def stop_and_report(dom: libvirt.virDomain, timeout: float) -> Stopped:
    """graceful_stop, telling the engine's log how it went (a forced stop is a warning)."""
    result = graceful_stop(dom, timeout)
    if result.was_running:
        text = result.describe(dom.name(), timeout)
        (pulumi.log.info if result.clean else pulumi.log.warn)(text)
    return result


def start(dom: libvirt.virDomain) -> None:
    if dom.isActive():
        if dom.state()[0] == libvirt.VIR_DOMAIN_PAUSED:
            dom.resume()  # paused behind our back: `running: true` means running
        return
    dom.create()
    if not wait_state(dom, [libvirt.VIR_DOMAIN_RUNNING], START_TIMEOUT_SECONDS):
        raise RuntimeError(f"domain {dom.name()} did not reach running within {START_TIMEOUT_SECONDS:.0f}s")


def reboot_into_new_seed(dom: libvirt.virDomain, timeout: float) -> None:
    """`on_cloud_init_change: reseed`: the seed volume was rewritten with a new instance-id; a cold
    boot (stop, start) makes cloud-init read it. Disks are kept."""
    if not dom.isActive():
        return  # it reads the new seed whenever it is next started
    stop_and_report(dom, timeout)
    start(dom)


_UNDEFINE_FLAGS = (
    libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE
    | libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA
    | libvirt.VIR_DOMAIN_UNDEFINE_NVRAM
)


def undefine(dom: libvirt.virDomain) -> None:
    """Undefine a stopped domain with everything libvirt keeps for it: managed save, snapshots, the
    UEFI NVRAM file and (libvirt's default) the swtpm state. Never fails on the NVRAM: should libvirt
    refuse to remove it, the domain still goes and the file is named in a warning."""
    with contextlib.suppress(libvirt.libvirtError):
        for snap in dom.listAllSnapshots(0):
            with contextlib.suppress(libvirt.libvirtError):
                snap.delete(0)
    try:
        dom.undefineFlags(_UNDEFINE_FLAGS)
    except libvirt.libvirtError as err:
        if not dom_has_nvram(dom):
            if err.get_error_code() != libvirt.VIR_ERR_INVALID_ARG:
                raise
            # A driver without NVRAM support (libvirt's test driver: simulated hosts) refuses the
            # flag; a domain with no NVRAM loses nothing when it is left out.
            dom.undefineFlags(_UNDEFINE_FLAGS & ~libvirt.VIR_DOMAIN_UNDEFINE_NVRAM)
            return
        nvram = nvram_path(dom)
        keep = (_UNDEFINE_FLAGS & ~libvirt.VIR_DOMAIN_UNDEFINE_NVRAM) | libvirt.VIR_DOMAIN_UNDEFINE_KEEP_NVRAM
        dom.undefineFlags(keep)
        pulumi.log.warn(
            f"vm {dom.name()}: its NVRAM file {nvram} could not be removed ({err}); remove it by hand"
        )


def nvram_path(dom: libvirt.virDomain) -> str | None:
    return parse_firmware(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)).get("nvram")


def dom_has_nvram(dom: libvirt.virDomain) -> bool:
    try:
        return nvram_path(dom) is not None
    except libvirt.libvirtError:
        return False
