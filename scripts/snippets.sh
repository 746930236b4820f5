#!/usr/bin/env bash
# Runs every ```python and ```js block of README.md and docs/*.md
# (scripts/snippets.py), each against a fresh server with the module loaded
# with `test-clock yes` and REDIS_URL set. Python blocks run in
# target/snippets-venv: redis-py (pinned in clients/matrix/requirements.txt)
# plus the package in clients/python when the repository has one;
# JavaScript blocks use the client matrix's pinned node_modules
# (clients/matrix, `npm ci`) and the repository's Node.js package
# (clients/node, built), as `redis-throttle`.
#
#   scripts/snippets.sh                  # Debian's redis-server
#   REDIS_SERVER=$(scripts/servers.sh bin valkey-9) scripts/snippets.sh
#   scripts/snippets.sh --only js        # extra arguments go to snippets.py
set -euo pipefail
cd "$(dirname "$0")/.."
so=$(scripts/build.sh)
clients/matrix/setup.sh # python3-venv, node and the pinned node_modules
venv=$PWD/target/snippets-venv
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/python" -c 'import redis' 2>/dev/null ||
  "$venv/bin/pip" install -q --disable-pip-version-check -r clients/matrix/requirements.txt
if [ -d clients/python ]; then # the repository's own package, as a user installs it
  "$venv/bin/pip" install -q --disable-pip-version-check ./clients/python >&2
fi
# node_modules for the JavaScript blocks: the matrix's clients and the
# package in clients/node (its dist/ built), side by side.
scripts/node.sh --setup
mods=$PWD/target/snippets-node/node_modules
rm -rf "$mods" && mkdir -p "$mods"
for m in clients/matrix/node_modules/*; do
  [ -e "$m" ] && ln -s "$PWD/$m" "$mods/"
done
ln -sfn "$PWD/clients/node" "$mods/redis-throttle"
exec "$venv/bin/python" scripts/snippets.py --python "$venv/bin/python" --module "$so" \
  --node-modules "$mods" --server "${REDIS_SERVER:-redis-server}" "$@"
