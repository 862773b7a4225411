#!/usr/bin/env bash
# Installs the CUDA 13.0 compiler from PyPI into <repo>/.cuda (git-ignored), where build.rs looks
# for it last (<repo>/.cuda/nvidia/cu13/bin/nvcc). Idempotent: does nothing when a complete
# 13.0 install is already there. Prints the nvcc path on its last line of stdout.
#
# Every wheel is pinned to 13.0: nvcc's wheel depends on the others unpinned, and newer ones emit
# PTX that the GPU machine's driver (580 / CUDA 13.0) cannot load.
#
# Environment: PYTHON (default python3), SPHEREKIT_CUDA_DIR (default <repo>/.cuda),
# PIP_* (pip's own settings, e.g. PIP_INDEX_URL).
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dest="${SPHEREKIT_CUDA_DIR:-$repo/.cuda}"
python="${PYTHON:-python3}"
cu13="$dest/nvidia/cu13"
nvcc="$cu13/bin/nvcc"

packages=(
    "nvidia-cuda-nvcc==13.0.*"
    "nvidia-nvvm==13.0.*"
    "nvidia-cuda-crt==13.0.*"
    "nvidia-cuda-runtime==13.0.*"
    "nvidia-cuda-cccl==13.0.*"
)

log() { echo "install_cuda: $*" >&2; }
die() {
    log "ERROR: $*"
    exit 1
}

# Everything the kernel build and the emulator build need from the five wheels.
missing_parts() {
    local root="$1" part
    for part in bin/nvcc bin/ptxas bin/fatbinary nvvm/bin/cicc nvvm/libdevice \
        include/cuda_runtime.h include/cuda_fp16.h include/cuda_bf16.h \
        include/crt/host_defines.h include/cccl/nv/target lib/libcudart_static.a; do
        [[ -e "$root/$part" ]] || echo "$part"
    done
}

is_complete() {
    local root="$1" version
    [[ -x "$root/bin/nvcc" ]] || return 1
    version="$("$root/bin/nvcc" --version 2>/dev/null)" || return 1
    grep -q 'release 13\.0' <<<"$version" || return 1
    [[ -z "$(missing_parts "$root")" ]]
}

if is_complete "$cu13"; then
    log "CUDA 13.0 compiler already installed ($("$nvcc" --version | grep -o 'V13\.0\.[0-9]*'))"
    echo "$nvcc"
    exit 0
fi

"$python" -m pip --version >/dev/null 2>&1 ||
    die "'$python -m pip' is not available (on Debian: apt-get install -y python3-pip, or set PYTHON)"

mkdir -p "$dest"
# One installer at a time (several cargo/test runs may start together).
if command -v flock >/dev/null 2>&1; then
    exec 9>"$dest/.install.lock"
    flock 9
    if is_complete "$cu13"; then
        log "installed by a concurrent run"
        echo "$nvcc"
        exit 0
    fi
fi

# pip --target does not merge into an existing nvidia/ folder (it skips it with a warning), so
# install into a fresh staging folder and swap it in afterwards.
stage="$dest/.staging.$$"
rm -rf "$stage"
trap 'rm -rf "$stage"' EXIT
log "installing ${packages[*]} into $dest (about 270 MB) ..."
if ! "$python" -m pip install --disable-pip-version-check --no-input --no-warn-script-location \
    --only-binary=:all: --target "$stage" "${packages[@]}" >&2; then
    die "pip install failed (network to PyPI? see pip's output above)"
fi
[[ -d "$stage/nvidia/cu13" ]] || die "pip finished but $stage/nvidia/cu13 does not exist"
missing="$(missing_parts "$stage/nvidia/cu13")"
[[ -z "$missing" ]] || die "the install lacks: $(tr '\n' ' ' <<<"$missing")"
is_complete "$stage/nvidia/cu13" ||
    die "the installed nvcc does not report release 13.0: $("$stage/nvidia/cu13/bin/nvcc" --version 2>&1 | tail -2)"

rm -rf "$dest/nvidia"
mv "$stage/nvidia" "$dest/nvidia"
# Keep pip's metadata beside it (records which versions were installed).
rm -rf "$dest"/nvidia_*.dist-info
find "$stage" -maxdepth 1 -name '*.dist-info' -exec mv -f -t "$dest" {} + 2>/dev/null || true

is_complete "$cu13" || die "install moved into place but $nvcc is not usable"
log "installed $("$nvcc" --version | grep -o 'V13\.0\.[0-9]*')"
echo "$nvcc"
