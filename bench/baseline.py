"""The "before" of the provisioning optimisation: the same tree, with that optimisation turned back
through the supported settings (virtstack.settings), so before and after run alternately in one
bench run on the same code.

Turned back, each by one environment variable (BEFORE):
- VIRTSTACK_PROVIDER_THREADS 16 -> 4: the dynamic-provider server's own pool, i.e. no widening
  (virtstack/provider/__init__.py);
- VIRTSTACK_CONNECTIONS_PER_HOST 3 -> 1: one shared libvirt connection per URI
  (virtstack/provider/connection.py);
- PULUMI_PARALLEL 16 -> 8: the engine's own default on two cores;
- VIRTSTACK_ENGINE_FULL_UP=1: the apply through Stack.up() again, with the Automation API's
  follow-up `stack output` x2 and `stack history` (virtstack/ops/engine.py);
- VIRTSTACK_BASELINE_FIXED_COST=1: issue 15's fixed-cost cuts turned back: `pulumi version` and
  `pulumi stack select` before the engine runs of every command again (virtstack/ops/engine.py,
  cliversion.py), and `up`'s VM check settling 3 s after the apply instead of after each VM's own
  start (virtstack/ops/starts.py, verify.py), and the program importing the pulumi-libvirt SDK in
  every engine run (__main__.py; components/pulumi_libvirt.py imports it on first use).
The CLI passes its environment to the engine, and the engine to the program and the provider.
"""

from __future__ import annotations

# variable -> (value, what it turns back)
BEFORE = {
    "VIRTSTACK_PROVIDER_THREADS": ("4", "PROVIDER_THREADS = 4"),
    "VIRTSTACK_CONNECTIONS_PER_HOST": ("1", "CONNECTIONS_PER_HOST = 1"),
    "PULUMI_PARALLEL": ("8", "ENGINE_PARALLEL = 8"),
    "VIRTSTACK_ENGINE_FULL_UP": ("1", "apply through Stack.up()"),
    "VIRTSTACK_BASELINE_FIXED_COST": (
        "1",
        "`pulumi version` + `stack select` every command, VM check settling after the apply, "
        "pulumi_libvirt imported by every program run",
    ),
}


def baseline_env() -> dict[str, str]:
    """The environment that turns the optimisation back."""
    return {name: value for name, (value, _) in BEFORE.items()}


def baseline_notes() -> list[str]:
    """What was turned back, for the results' notes."""
    return [what for _, what in BEFORE.values()]
