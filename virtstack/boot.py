"""Boots in waves: how many domains one host starts at once (pure; the provider applies it in
virtstack.provider.boot).

Under TCG every vCPU is a host thread emulating a CPU, so guests booting together share the host's
cores: on 2 cores, 2 guests at once took 37.5 s each, 3 → 64 s, 4 → 95 s. Starting them all at once
makes every one of them late; starting a few and the next as soon as one is up (its guest agent
answers) brings all of them up sooner. KVM guests boot mostly waiting on I/O, so more fit at once.

Public API:
    default_boot_concurrency(cpus, domain_type) -> int
    boot_concurrency(configured, cpus, domain_type) -> int   -- the configured value wins (> 0)
    BOOT_TIMEOUT    -- seconds a started domain holds its place without its agent answering
"""

from __future__ import annotations

__all__ = ["BOOT_TIMEOUT", "KVM_BOOTS_PER_CPU", "boot_concurrency", "default_boot_concurrency"]

# A guest whose agent never answers (no agent in the image, a guest that hangs) holds its place this
# long, then the next domain starts anyway.
BOOT_TIMEOUT = 180.0
KVM_BOOTS_PER_CPU = 4


def default_boot_concurrency(cpus: int, domain_type: str) -> int:
    """TCG: one boot per host CPU (2 cores → 2). KVM: `KVM_BOOTS_PER_CPU` per CPU."""
    cpus = max(1, cpus)
    return cpus if domain_type == "qemu" else cpus * KVM_BOOTS_PER_CPU


def boot_concurrency(configured: int, cpus: int, domain_type: str) -> int:
    return configured if configured > 0 else default_boot_concurrency(cpus, domain_type)
