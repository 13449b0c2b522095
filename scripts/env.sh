# shellcheck shell=bash
# Environment for every virtstack run (sourced by the Makefile, .ci/run and scripts).
#
# The variables, their defaults and the development-passphrase rules live in one place,
# virtstack/settings.py (the CLI and the engine use the same); this prints them as export lines
# (`virtstack env --shell` prints the same).  It runs on the system python3 because setup sources
# this before the virtualenv exists.  A value already set in the environment wins.
VIRTSTACK_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export VIRTSTACK_ROOT
if _virtstack_env=$(PYTHONPATH="$VIRTSTACK_ROOT" python3 -m virtstack.settings --shell); then
  eval "$_virtstack_env"
else
  echo "scripts/env.sh: the environment above could not be assembled" >&2
fi
unset _virtstack_env
