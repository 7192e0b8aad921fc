#!/usr/bin/env bash
# run-e2e.sh TAG [main|controlnet] [PYTEST_ARGS ...]: runs tests/e2e against the test webui ROOT/TAG, as the README's
# Compatibility table was measured (CPU, 128x128), and stops the webuis it started. Needs build-webui.sh's build
# (with --tiled-diffusion, or --controlnet for the controlnet suite) and this repository's .venv (tools/setup-env.sh).
#   main        SAG + the nested-job test extension + Tiled Diffusion on PORT, a --disable-extra-extensions
#               baseline on PORT+1; the whole suite, 6 steps
#   controlnet  the SD1.5-width checkpoint, SAG + ControlNet + the U-Net-call recorder on PORT+2;
#               test_webui_controlnet.py, 4 steps
# Environment: SAG_E2E_ROOT (default out/webui-e2e), SAG_E2E_PORT (default 7861), SAG_E2E_TIMEOUT (pytest's limit in
# seconds, default 3600: a loaded 2-core machine needs ~45 min for either suite). Summary: ROOT/results[-cn]-TAG.txt.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
export SAG_E2E_ROOT=${SAG_E2E_ROOT:-$repo/out/webui-e2e}
root=$SAG_E2E_ROOT
[ $# -ge 1 ] || { echo "usage: $0 TAG [main|controlnet] [PYTEST_ARGS ...]" >&2; exit 2; }
tag=$1 suite=${2:-main}; shift $(( $# >= 2 ? 2 : 1 ))
port=${SAG_E2E_PORT:-7861}
limit=${SAG_E2E_TIMEOUT:-3600}
[ -x "$repo/.venv/bin/python" ] || { echo "no $repo/.venv: run tools/setup-env.sh first" >&2; exit 1; }
ports=()
trap '[ ${#ports[@]} -eq 0 ] || "$here/stop-webui.sh" "${ports[@]}"' EXIT
exts=$repo/tests/e2e/extensions
case $suite in
  main)
    results=$root/results-$tag.txt
    ports=("$port" "$((port + 1))")
    "$here/start-webui.sh" "$tag" "$port" "$repo" "$exts/sag-e2e-nested-job" \
      "$root/ext/multidiffusion-upscaler-for-automatic1111"
    "$here/start-webui.sh" "$tag" "$((port + 1))" --baseline
    env=(SAG_E2E_URL="http://127.0.0.1:$port" SAG_E2E_BASELINE_URL="http://127.0.0.1:$((port + 1))" SAG_E2E_STEPS=6)
    tests=(tests/e2e);;
  controlnet)
    results=$root/results-cn-$tag.txt
    ports=("$((port + 2))")
    SAG_E2E_CKPT=$root/models-cn/sd1-cn.safetensors "$here/start-webui.sh" "$tag" "$((port + 2))" \
      "$repo" "$root/ext/sd-webui-controlnet" "$exts/sag-e2e-unet-calls"
    env=(SAG_E2E_URL="http://127.0.0.1:$((port + 2))" SAG_E2E_STEPS=4)
    tests=(tests/e2e/test_webui_controlnet.py);;
  *) echo "unknown suite $suite (main or controlnet)" >&2; exit 2;;
esac
cd "$repo"
rc=0
env "${env[@]}" SAG_E2E_SIZE=128 timeout "$limit" .venv/bin/python -m pytest -v -p no:randomly "${tests[@]}" "$@" \
  > "$results" 2>&1 || rc=$?
echo "rc=$rc" >> "$results"
tail -3 "$results"
exit $rc
