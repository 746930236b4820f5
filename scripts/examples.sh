#!/usr/bin/env bash
# The Python examples (examples/python/*.py) use the package in
# clients/python now: scripts/python.sh installs it and runs them, with the
# package's test suite, against fresh servers. Kept so that callers of this
# script keep working.
set -euo pipefail
exec "$(dirname "$0")/python.sh" "$@"
