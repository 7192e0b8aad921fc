#!/usr/bin/env bash
# stop-webui.sh [PORT ...]: stops the test webuis start-webui.sh started under ROOT (SAG_E2E_ROOT, default
# out/webui-e2e): those on the given ports, else all of them. Each runs in its own process group (setsid), which
# is ended as a whole, so the restart loop of SAG_E2E_RESTARTABLE ends too.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=${SAG_E2E_ROOT:-$here/../../out/webui-e2e}
if [ $# -gt 0 ]; then pidfiles=(); for port in "$@"; do pidfiles+=("$root/run/webui-$port.pid"); done
else pidfiles=("$root"/run/webui-*.pid); fi
for f in "${pidfiles[@]}"; do
  [ -f "$f" ] || continue
  pid=$(cat "$f")
  if kill -- "-$pid" 2> /dev/null; then
    for _ in $(seq 1 20); do kill -0 -- "-$pid" 2> /dev/null || break; sleep 0.5; done
    kill -0 -- "-$pid" 2> /dev/null && kill -9 -- "-$pid" 2> /dev/null
    echo "stopped $(basename "$f" .pid)"
  fi
  rm -f "$f"
done
