#!/usr/bin/env bash
# build-webui.sh [--tiled-diffusion] [--controlnet] TAG [ROOT]: a local AUTOMATIC1111 webui at TAG for tests/e2e,
# on CPU, offline at run time. Why: the e2e suite needs real webuis of each supported version (1.6.0 to 1.10.1)
# with a small model; this rebuilds the hosts the README's Compatibility table was measured on.
#   ROOT/TAG/           the webui work tree at TAG, repositories/ at the commits its modules/launch_utils.py pins
#   ROOT/venv/          one venv for all tags: torch 2.14.1 + torchvision 0.29.1 and the pins of
#                       $SAG_VENV_TAG's requirements_versions.txt (default v1.10.1; deviations below) and openai CLIP
#                       at the commit its launch_utils.py pins. 1.6-1.9 run in it too: 1.6/1.7's own pins
#                       (gfpgan, basicsr, realesrgan, numpy 1.23) do not install beside torch 2.14
#   ROOT/hf/            offline Hugging Face cache for openai/clip-vit-large-patch14 (config + tokenizer, no weights)
#   ROOT/models/        tiny-sd1.safetensors + .yaml: random-weight SD1-style checkpoint (narrow U-Net and VAE)
#   ROOT/hypernetworks/ sag-e2e-random.pt: random-weight hypernetwork for the tiny checkpoint's context size 768
#   --tiled-diffusion   ROOT/ext/multidiffusion-upscaler-for-automatic1111 at 22798f6
#   --controlnet        ROOT/ext/sd-webui-controlnet at 56cec5b2 (v1.1.455), controlnet_aux in ROOT/controlnet-site,
#                       ROOT/models-cn/sd1-cn.safetensors (SD1.5 U-Net widths, random) and a random SD1.5 ControlNet
# Webui 1.6/1.7 run in the same venv with tools/e2e/standins on PYTHONPATH (start-webui.sh adds it).
# Git sources: https://github.com/OWNER/NAME.git, or $SAG_GIT_MIRROR/OWNER+NAME/repo when SAG_GIT_MIRROR is set;
# the webui from $SAG_WEBUI_GIT if set (any clone URL or path with the v1.x tags). A mirror lacking some large
# blobs (sample images) is fine: those files are left out of the checkout, with a warning.
# Python: $SAG_PYTHON (default python3.11); SAG_PIP_TORCH_ARGS is added to the pip runs that install torch (e.g.
# --index-url https://download.pytorch.org/whl/cpu). Idempotent: finished parts are checked and skipped.
set -euo pipefail
{ # the whole script is read before it runs: editing it during a build cannot change that build
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
tiled=0 controlnet=0
while [ $# -gt 0 ]; do
  case $1 in
    --tiled-diffusion) tiled=1; shift;;
    --controlnet) controlnet=1; shift;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d'; exit 0;;
    -*) echo "unknown option $1" >&2; exit 2;;
    *) break;;
  esac
done
[ $# -ge 1 ] || { echo "usage: $0 [--tiled-diffusion] [--controlnet] TAG [ROOT]" >&2; exit 2; }
tag=$1
root=${2:-${SAG_E2E_ROOT:-$repo/out/webui-e2e}}
mkdir -p "$root" && root=$(cd "$root" && pwd)
webui=$root/$tag
venv_tag=${SAG_VENV_TAG:-v1.10.1}
py=$root/venv/bin/python
step() { echo "== $*"; }

# git_source OWNER/NAME: where to clone it from
git_source() {
  if [ -n "${SAG_GIT_MIRROR:-}" ]; then
    local d="$SAG_GIT_MIRROR/${1/\//+}/repo"
    [ -d "$d" ] || { echo "no mirror of $1 at $d" >&2; return 1; }
    echo "$d"
  else
    echo "https://github.com/$1.git"
  fi
}

# checkout DIR SOURCE REV [BRANCH]: DIR as a git work tree at REV (a commit or tag), cloned from SOURCE if new;
# detached, or on a local BRANCH made there (extensions: the webui's extension list reads their branch)
checkout() {
  local dir=$1 src=$2 rev=$3 branch=${4:-}
  [ -d "$dir/.git" ] || git clone -q --no-checkout "$src" "$dir"
  if ! git -C "$dir" rev-parse -q --verify "$rev^{commit}" > /dev/null; then
    git -C "$dir" fetch -q --tags origin
    git -C "$dir" rev-parse -q --verify "$rev^{commit}" > /dev/null || { echo "$src has no $rev" >&2; return 1; }
  fi
  local want; want=$(git -C "$dir" rev-parse "$rev^{commit}")
  if [ "$(git -C "$dir" rev-parse -q --verify HEAD || true)" != "$want" ] || ! git -C "$dir" diff --quiet HEAD \
     || [ "$(git -C "$dir" symbolic-ref -q --short HEAD || true)" != "$branch" ]; then
    # a snapshot mirror may lack some large blobs (images): leave those files out with a sparse checkout
    local tree missing
    tree=$(git -C "$dir" ls-tree -r --format='%(objecttype) %(objectname) %(path)' "$want" | sed -n 's/^blob //p')
    missing=$(cut -d' ' -f1 <<< "$tree" | git -C "$dir" cat-file --batch-check | awk '$2 == "missing" {print $1}')
    if [ -n "$missing" ]; then
      local paths; mapfile -t paths < <(grep -F -f <(echo "$missing") <<< "$tree" | cut -d' ' -f2-)
      echo "   WARNING: $src lacks the contents of: ${paths[*]}; leaving them out" >&2
      git -C "$dir" sparse-checkout set --no-cone '/*' "${paths[@]/#/!/}" 2> /dev/null || true  # checkout -f checks
    fi
    # (git still names each left-out blob as an "invalid object" while it builds the index; the checkout succeeds)
    git -C "$dir" -c advice.detachedHead=false checkout -q -f ${branch:+-B "$branch"} "$want" \
      2> >(grep -v '^error: invalid object' >&2 || true)
  fi
  echo "   $dir @ $(git -C "$dir" rev-parse --short HEAD)"
}

step "webui $tag"
webui_src=${SAG_WEBUI_GIT:-}
if [ -z "$webui_src" ]; then webui_src=$(git_source AUTOMATIC1111/stable-diffusion-webui); fi
checkout "$webui" "$webui_src" "$tag"

step "repositories/ pinned by $tag's modules/launch_utils.py"
# prints "DIR URL COMMIT" for each git_clone(X_repo, repo_dir('DIR'), ..., X_commit_hash) of prepare_environment()
pins=$(python3 - "$webui/modules/launch_utils.py" <<'PY'
import re, sys
src = open(sys.argv[1]).read()
default = lambda var: re.search(var + r"\s*=\s*os\.environ\.get\(\s*'\w+'\s*,\s*[\"']([^\"']+)[\"']", src).group(1)
for repo_var, folder, hash_var in re.findall(r"git_clone\((\w+),\s*repo_dir\('([^']+)'\),[^,]*,\s*(\w+)\)", src):
    print(folder, default(repo_var), default(hash_var))
PY
)
[ -n "$pins" ] || { echo "found no pinned repositories in $webui/modules/launch_utils.py" >&2; exit 1; }
mkdir -p "$webui/repositories"
while read -r folder url commit; do
  name=$(echo "$url" | sed -E 's#^https://github.com/##; s#\.git$##')
  checkout "$webui/repositories/$folder" "$(git_source "$name")" "$commit"
done <<< "$pins"

step "venv $root/venv (pins from $venv_tag's requirements_versions.txt)"
[ -x "$py" ] || "${SAG_PYTHON:-python3.11}" -m venv "$root/venv"
# Deviations from requirements_versions.txt (kept in one pip run so nothing replaces torch):
#   torch (unpinned there)        -> torch==2.14.1, torchvision==0.29.1 (the e2e hosts run them on CPU)
#   setuptools==69.5.1            -> setuptools>=77,<81: torch 2.14.1 needs >=77.0.3; 81 drops pkg_resources,
#                                    which pytorch_lightning 1.9.4 and openai CLIP's setup.py still import
reqs=$root/requirements-e2e.txt
git -C "$webui" show "$venv_tag:requirements_versions.txt" \
  | sed -E -e 's/^setuptools==.*/setuptools>=77,<81/' -e 's/^torch[[:space:]]*$/torch==2.14.1/' > "$reqs.new"
grep -q '^torch==2.14.1$' "$reqs.new" || echo "torch==2.14.1" >> "$reqs.new"
echo "torchvision==0.29.1" >> "$reqs.new"
clip_commit=$(git -C "$webui" show "$venv_tag:modules/launch_utils.py" \
  | sed -n 's#.*openai/CLIP/archive/\([0-9a-f]\{40\}\)\.zip.*#\1#p')
echo "# openai CLIP $clip_commit (--no-deps)" >> "$reqs.new"
stamp=$root/venv/.sag-e2e-requirements
if cmp -s "$reqs.new" "$stamp"; then
  echo "   up to date"; rm "$reqs.new"
else
  mv "$reqs.new" "$reqs"
  pip=("$py" -m pip -q --disable-pip-version-check)
  quiet() { grep -v "is ignored: it is neither" || true; }  # noise from file:// indexes; pip's status survives
  "${pip[@]}" install ${SAG_PIP_TORCH_ARGS:-} torch==2.14.1 torchvision==0.29.1 2>&1 | quiet
  "${pip[@]}" install ${SAG_PIP_TORCH_ARGS:-} -r "$reqs" 2>&1 | quiet
  checkout "$root/src/CLIP" "$(git_source openai/CLIP)" "$clip_commit"
  "${pip[@]}" install --no-deps --no-build-isolation "$root/src/CLIP" 2>&1 | quiet
  "$py" -c "import torch, torchvision, clip, open_clip, gradio, transformers
assert torch.__version__.startswith('2.14.1'), torch.__version__
print('   torch', torch.__version__, 'gradio', gradio.__version__, 'transformers', transformers.__version__)"
  cp "$reqs" "$stamp"
fi

# the helpers below: offline, without the libraries' deprecation chatter
export HF_HOME=$root/hf HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PYTHONWARNINGS=ignore
step "offline HF cache $HF_HOME"
if [ -f "$HF_HOME/.sag-e2e-done" ]; then echo "   done"; else
  "$py" "$here/make_hf_cache.py" "$HF_HOME" && touch "$HF_HOME/.sag-e2e-done"
fi

# checkpoint PRESET OUT: random-weight checkpoint built by this tag's ldm code (any tag's gives the same layout)
checkpoint() {
  if [ -f "$2" ]; then echo "   $2 exists"; return; fi
  "$py" "$here/make_checkpoint.py" --webui "$webui" --preset "$1" --out "$2"
}
step "tiny SD1 checkpoint"
checkpoint tiny "$root/models/tiny-sd1.safetensors"

step "random hypernetwork"
hypernet=$root/hypernetworks/sag-e2e-random.pt
if [ -f "$hypernet" ]; then echo "   $hypernet exists"; else "$py" "$here/make_hypernetwork.py" --out "$hypernet"; fi

if [ $tiled = 1 ]; then
  step "Tiled Diffusion"
  checkout "$root/ext/multidiffusion-upscaler-for-automatic1111" \
    "$(git_source pkuliyi2015/multidiffusion-upscaler-for-automatic1111)" 22798f6 sag-e2e
fi

if [ $controlnet = 1 ]; then
  step "ControlNet"
  cn=$root/ext/sd-webui-controlnet
  checkout "$cn" "$(git_source Mikubill/sd-webui-controlnet)" 56cec5b2 sag-e2e
  # its install.py never runs (start-webui.sh skips the webui's installers); it needs controlnet_aux to import.
  # --no-deps into a folder of its own: its dependencies (mediapipe, ...) are not needed to load.
  if [ ! -d "$root/controlnet-site/controlnet_aux" ]; then
    "$py" -m pip -q --disable-pip-version-check install --no-deps --target "$root/controlnet-site" \
      controlnet_aux==0.0.9 2>&1 \
      | { grep -v "is ignored: it is neither" || true; }
  fi
  checkpoint sd1 "$root/models-cn/sd1-cn.safetensors"
  model=$root/models-cn/control_sd15_random.safetensors
  if [ -f "$model" ]; then echo "   $model exists"; else
    "$py" "$here/make_controlnet.py" --webui "$webui" --controlnet "$cn" --out "$model"
  fi
  ln -sfn "$model" "$cn/models/$(basename "$model")"   # where ControlNet lists its models
fi
echo "built $tag in $root ($(du -sh "$root" | cut -f1)); start it with tools/e2e/start-webui.sh"
exit
}
