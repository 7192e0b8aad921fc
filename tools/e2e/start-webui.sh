#!/usr/bin/env bash
# start-webui.sh TAG PORT [--baseline] [EXTENSION_DIR ...]: starts the test webui ROOT/TAG (built by build-webui.sh)
# on 127.0.0.1:PORT with the API, on CPU, offline, and waits until it answers. Why: tests/e2e needs a running webui;
# this starts one the way the README's Compatibility table was measured.
#   EXTENSION_DIR ...   linked into its extensions/ (replacing the links there before), e.g. this repository
#   --baseline          no links, --disable-extra-extensions: the "webui without SAG" for SAG_E2E_BASELINE_URL
# Environment: SAG_E2E_ROOT (default out/webui-e2e), SAG_E2E_CKPT (default ROOT/models/tiny-sd1.safetensors),
#   SAG_E2E_PYTHONPATH (added to PYTHONPATH), SAG_E2E_RESTARTABLE=1 (restart on "Apply and restart UI", as webui.sh).
# Hypernetworks: ROOT/hypernetworks (--hypernetwork-dir; build-webui.sh puts a random one there), for SAG and baseline.
# Webui 1.6/1.7 get tools/e2e/standins on PYTHONPATH; a linked sd-webui-controlnet gets ROOT/controlnet-site.
# Log: ROOT/logs/webui-PORT.log; stop it with stop-webui.sh [PORT].
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=${SAG_E2E_ROOT:-$here/../../out/webui-e2e}
[ -d "$root" ] || { echo "no $root: build a webui there with tools/e2e/build-webui.sh" >&2; exit 1; }
root=$(cd "$root" && pwd)
[ $# -ge 2 ] || { echo "usage: $0 TAG PORT [--baseline] [EXTENSION_DIR ...]" >&2; exit 2; }
tag=$1 port=$2; shift 2
webui=$root/$tag
if [ ! -f "$webui/launch.py" ]; then
  echo "no webui at $webui: build it with tools/e2e/build-webui.sh $tag $root" >&2; exit 1
fi
if curl -sf -o /dev/null "http://127.0.0.1:$port/"; then echo "port $port is already in use" >&2; exit 1; fi

extra=() pythonpath=()
case $tag in v1.6.*|v1.7.*) pythonpath+=("$here/standins");; esac
if [ "${1:-}" = "--baseline" ]; then
  extra=(--disable-extra-extensions); shift
else
  find "$webui/extensions" -maxdepth 1 -type l -delete
  for ext in "$@"; do
    ext=$(cd "$ext" && pwd)
    ln -s "$ext" "$webui/extensions/$(basename "$ext")"
    [ "$(basename "$ext")" != sd-webui-controlnet ] || pythonpath+=("$root/controlnet-site")
  done
fi
[ -z "${SAG_E2E_PYTHONPATH:-}" ] || pythonpath+=("$SAG_E2E_PYTHONPATH")

mkdir -p "$root/logs" "$root/run"
log=$root/logs/webui-$port.log
cd "$webui"
PYTHONPATH=$(IFS=:; echo "${pythonpath[*]}")
export PYTHONPATH HF_HOME="$root/hf" HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 COMMANDLINE_ARGS="" PYTHONUNBUFFERED=1
args=(launch.py --skip-prepare-environment --skip-torch-cuda-test --skip-version-check --use-cpu all --no-half
  --precision full --api --port "$port" --ckpt "${SAG_E2E_CKPT:-$root/models/tiny-sd1.safetensors}"
  --no-download-sd-model --hypernetwork-dir "$root/hypernetworks" "${extra[@]}")
if [ "${SAG_E2E_RESTARTABLE:-}" = 1 ]; then  # as webui.sh runs it: "Apply and restart UI" restarts the process
  export SD_WEBUI_RESTART=tmp/restart
  setsid bash -c 'while true; do rm -f tmp/restart; "$@"; [ -f tmp/restart ] || break; done' restart-loop \
    "$root/venv/bin/python" "${args[@]}" > "$log" 2>&1 &
else
  setsid "$root/venv/bin/python" "${args[@]}" > "$log" 2>&1 &
fi
pid=$!
echo "$pid" > "$root/run/webui-$port.pid"
for _ in $(seq 1 300); do
  if curl -sf -o /dev/null "http://127.0.0.1:$port/sdapi/v1/options"; then
    echo "webui $tag on port $port is up"; exit 0
  fi
  kill -0 "$pid" 2> /dev/null || { echo "webui $tag on port $port exited; see $log" >&2; tail -5 "$log" >&2; exit 1; }
  sleep 2
done
echo "webui $tag on port $port did not come up in 10 minutes; see $log" >&2
exit 1
