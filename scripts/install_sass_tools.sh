#!/usr/bin/env bash
# Installs cuobjdump and nvdisasm from PyPI into <repo>/.cuda/tools (git-ignored), for
# scripts/sass_loops.py: reading the machine code of the built kernels needs no GPU. Idempotent;
# prints the bin directory on its last line of stdout.
#
# The compiler stays pinned at 13.0 (scripts/install_cuda.sh); these two only read cubins, and
# PyPI has no 13.0 build of them (cuobjdump starts at 13.2, nvdisasm is unversioned): 13.2's
# cuobjdump and nvdisasm 13.5 read the 13.0 compiler's sm_80..sm_90 code (checked 2026-12-07).
#
# Environment: PYTHON (default python3), SPHEREKIT_CUDA_DIR (default <repo>/.cuda), PIP_*.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dest="${SPHEREKIT_CUDA_DIR:-$repo/.cuda}/tools"
python="${PYTHON:-python3}"
bin="$dest/nvidia/cu13/bin"

if [[ -x "$bin/cuobjdump" && -x "$bin/nvdisasm" ]]; then
    echo "$bin"
    exit 0
fi
echo "install_sass_tools: installing cuobjdump and nvdisasm into $dest" >&2
"$python" -m pip install --quiet --no-deps --upgrade --target "$dest" \
    "nvidia-cuda-cuobjdump==13.2.*" "nvidia-cuda-nvdisasm" >&2
chmod +x "$bin/cuobjdump" "$bin/nvdisasm"
[[ -x "$bin/cuobjdump" && -x "$bin/nvdisasm" ]] || {
    echo "install_sass_tools: ERROR: cuobjdump or nvdisasm missing under $bin" >&2
    exit 1
}
echo "$bin"
