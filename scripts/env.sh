# shellcheck shell=bash
# Environment for every virtstack run (sourced by the Makefile, .ci/run and scripts).
#
# The Pulumi engine works offline here: local file backend inside the project, no update checks, no
# automatic plugin downloads, and the toolchain setup built (see scripts/build-toolchain.sh).
VIRTSTACK_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export VIRTSTACK_ROOT
export VIRTSTACK_CACHE=${VIRTSTACK_CACHE:-/var/cache/virtstack}
export VIRTSTACK_PULUMI_VERSION=${VIRTSTACK_PULUMI_VERSION:-3.274.1}
export VIRTSTACK_TOOLCHAIN=${VIRTSTACK_TOOLCHAIN:-$VIRTSTACK_CACHE/toolchain/pulumi-$VIRTSTACK_PULUMI_VERSION}

# A `pulumi` already on PATH is used as it is; otherwise the one setup built.
export PATH="$VIRTSTACK_ROOT/.venv/bin:$PATH:$VIRTSTACK_TOOLCHAIN/bin"

export PULUMI_HOME=${PULUMI_HOME:-$VIRTSTACK_ROOT/.virtstack/pulumi-home}
export PULUMI_BACKEND_URL=${PULUMI_BACKEND_URL:-file://$VIRTSTACK_ROOT/.virtstack/state}
export PULUMI_SKIP_UPDATE_CHECK=true
export PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION=true
# Resource operations in flight: the provider runs 16 at once (3 libvirt connections per host, 5
# requests each by libvirtd's default); the engine's own default is 4 x cores (8 here), measured
# slower for 25 VMs (bench/RESULTS.md).  Keep in step with virtstack.ops.project.ENGINE_PARALLEL.
export PULUMI_PARALLEL=${PULUMI_PARALLEL:-16}
# gRPC's fork handlers off in every process the engine starts: the dynamic provider forks libvirt's
# ssh child (qemu+ssh hosts), and with the handlers on, gRPC ran in that child and sometimes killed it
# ("Cannot recv data: ... Epoll1Poller ... Connection reset by peer"; see virtstack/provider/connection.py).
export GRPC_ENABLE_FORK_SUPPORT=${GRPC_ENABLE_FORK_SUPPORT:-false}
export PULUMI_AUTOMATION_API_SKIP_VERSION_CHECK=${PULUMI_AUTOMATION_API_SKIP_VERSION_CHECK:-false}
# The documented LOCAL DEVELOPMENT passphrase for stacks on this machine's file backend. Anyone using
# real secrets sets their own PULUMI_CONFIG_PASSPHRASE (or PULUMI_CONFIG_PASSPHRASE_FILE).  Only when
# the passphrase is *unset* (an empty one is a missing CI secret: virtstack refuses it), the backend is
# a local file one and CI is not set, unless VIRTSTACK_ALLOW_DEV_PASSPHRASE=1 (see
# virtstack.ops.project.check_passphrase, which enforces the same rules).
if [ -z "${PULUMI_CONFIG_PASSPHRASE+set}" ] && [ -z "${PULUMI_CONFIG_PASSPHRASE_FILE:-}" ]; then
  case "$PULUMI_BACKEND_URL" in
    file://*)
      case "${CI:-}:${VIRTSTACK_ALLOW_DEV_PASSPHRASE:-}" in
        :* | false:* | 0:* | *:1) export PULUMI_CONFIG_PASSPHRASE=virtstack-local-dev ;;
      esac
      ;;
  esac
fi
