#!/usr/bin/env bash
# The test command (README, CI): compiles the CUDA kernels (failing if they do not compile) and
# runs every test with the CPU emulator, so no GPU is needed.
#
#   scripts/test.sh [extra cargo test arguments, e.g. -- --nocapture]
#
# If nvcc cannot be found where build.rs looks for it (NVCC, CUDA_HOME, CUDA_PATH, PATH,
# /usr/local/cuda, <repo>/.cuda), the CUDA 13.0 compiler is installed into <repo>/.cuda first
# (scripts/install_cuda.sh). The exit status is cargo's.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"

# The same search, in the same order, as find_nvcc in build.rs.
find_nvcc() {
    local candidates=() dirs=() dir
    [[ -n "${NVCC:-}" ]] && candidates+=("$NVCC")
    [[ -n "${CUDA_HOME:-}" ]] && candidates+=("$CUDA_HOME/bin/nvcc")
    [[ -n "${CUDA_PATH:-}" ]] && candidates+=("$CUDA_PATH/bin/nvcc")
    IFS=: read -r -a dirs <<<"${PATH:-}"
    for dir in "${dirs[@]}"; do
        candidates+=("${dir:-.}/nvcc")
    done
    candidates+=("/usr/local/cuda/bin/nvcc" "$repo/.cuda/nvidia/cu13/bin/nvcc")
    for dir in "${candidates[@]}"; do
        if [[ -f "$dir" ]]; then
            echo "$dir"
            return 0
        fi
    done
    return 1
}

if nvcc_path="$(find_nvcc)"; then
    echo "test.sh: using nvcc at $nvcc_path" >&2
else
    echo "test.sh: no nvcc found; installing the CUDA 13.0 compiler into $repo/.cuda" >&2
    bash "$repo/scripts/install_cuda.sh" >/dev/null
    nvcc_path="$(find_nvcc)" || {
        echo "test.sh: ERROR: scripts/install_cuda.sh ran but nvcc is still not found" >&2
        exit 1
    }
    echo "test.sh: using nvcc at $nvcc_path" >&2
fi

export SPHEREKIT_REQUIRE_KERNELS=1
exec cargo test --features emulator "$@"
