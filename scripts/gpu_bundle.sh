#!/usr/bin/env bash
# Builds, on a machine without a GPU, everything the GPU run needs into gpu-bundle/ (git-ignored):
#
#   gpu-bundle/tests/<name>     every test binary (integration tests and the lib's unit tests)
#   gpu-bundle/benches/<name>   every bench binary
#   gpu-bundle/examples/<name>  every example binary
#   gpu-bundle/spherekit        the CLI
#   gpu-bundle/gpu_suite.sh, gpu_summary.py, <benches/baselines/*.py>, COMMIT
#
# The binaries (each embeds the same fatbin, ~8 MiB) are then packed into one solid
# gpu-bundle/bins.tar.xz, which gpu_suite.sh unpacks in place before it runs: xz's 64 MiB window
# stores the repeated fatbin once, so the bundle stays small as kernel families are added.
#
# The kernels are compiled for sm_90 (H100/H200 machine code) plus compute_90 PTX, with line
# tables for compute-sanitizer, and embedded in every binary; binaries are stripped. Fails if
# the packed bundle exceeds 48 MiB (the whole working tree carried to the GPU machine must stay under
# 64 MiB). Then, on the GPU machine, from the repository root: bash gpu-bundle/gpu_suite.sh
#
#   scripts/gpu_bundle.sh [extra cargo arguments, e.g. --features x]
#
# Environment: SPHEREKIT_CUDA_ARCHS (default sm_90,compute_90), SPHEREKIT_LINEINFO (default 1),
# GPU_BUNDLE_SKIP_TESTS (space-separated test binaries left out; default "params_layout", a
# host-only bindgen drift test that needs libclang, which the GPU machine lacks),
# GPU_BUNDLE_MAX_MIB (default 48).
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
bundle="$repo/gpu-bundle"
max_mib="${GPU_BUNDLE_MAX_MIB:-48}"
skip_tests=" ${GPU_BUNDLE_SKIP_TESTS-params_layout} "

export SPHEREKIT_CUDA_ARCHS="${SPHEREKIT_CUDA_ARCHS:-sm_90,compute_90}"
export SPHEREKIT_REQUIRE_KERNELS=1
export SPHEREKIT_LINEINFO="${SPHEREKIT_LINEINFO:-1}"

log() { echo "gpu_bundle: $*" >&2; }
die() {
    log "ERROR: $*"
    exit 1
}

# nvcc, looked for as build.rs does (NVCC, CUDA_HOME, CUDA_PATH, PATH, /usr/local/cuda, .cuda/).
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
find_nvcc >/dev/null || bash "$repo/scripts/install_cuda.sh" >/dev/null

command -v python3 >/dev/null || die "python3 is needed to read cargo's JSON messages"
command -v strip >/dev/null || die "strip (binutils) is needed"

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

# cargo_artifacts KINDS OUT -- cargo args...: runs cargo with JSON messages, prints compiler
# diagnostics as cargo would, and writes "kind<TAB>name<TAB>executable" for every artifact whose
# target kind is in KINDS (comma-separated) and that has an executable: tests, the lib's unit
# tests and benches as built for their harness, binaries and examples as built plainly.
cargo_artifacts() {
    local kinds="$1" listing="$2"
    shift 3
    local rc=0
    cargo "$@" --message-format=json >"$tmp/cargo.json" || rc=$?
    python3 - "$kinds" "$tmp/cargo.json" "$listing" <<'PY'
import json, sys
kinds = set(sys.argv[1].split(","))
LIB_KINDS = {"lib", "rlib", "dylib", "cdylib", "staticlib"}
rows = []
with open(sys.argv[2], encoding="utf-8", errors="replace") as f:
    for line in f:
        try:
            m = json.loads(line)
        except ValueError:
            continue
        reason = m.get("reason")
        if reason == "compiler-message":
            rendered = (m.get("message") or {}).get("rendered")
            if rendered:
                sys.stderr.write(rendered)
        elif reason == "build-script-executed" or reason == "build-finished":
            continue
        elif reason == "compiler-artifact":
            exe = m.get("executable")
            target = m.get("target") or {}
            kind = None
            for k in target.get("kind", []):
                if k in LIB_KINDS and "lib" in kinds:
                    kind = "lib"
                elif k in kinds:
                    kind = k
                if kind:
                    break
            test = (m.get("profile") or {}).get("test")
            if exe and kind and (test if kind in ("test", "lib", "bench") else not test):
                rows.append(f"{kind}\t{target.get('name')}\t{exe}")
with open(sys.argv[3], "w", encoding="utf-8") as f:
    f.write("".join(r + "\n" for r in rows))
PY
    return "$rc"
}

# install KIND NAME EXE DESTDIR: copies and strips one binary (a name already taken gets -KIND).
install_bin() {
    local kind="$1" name="$2" exe="$3" dir="$4" dest
    dest="$dir/$name"
    [[ -e "$dest" ]] && dest="$dir/$name-$kind"
    cp "$exe" "$dest"
    strip "$dest"
    chmod +x "$dest"
    log "  $(basename "$dir")/$(basename "$dest") ($(($(stat -c %s "$dest") / 1024)) KiB)"
}

log "kernels: SPHEREKIT_CUDA_ARCHS=$SPHEREKIT_CUDA_ARCHS SPHEREKIT_LINEINFO=$SPHEREKIT_LINEINFO"
rm -rf "$bundle"
mkdir -p "$bundle/tests" "$bundle/benches" "$bundle/examples"

log "building test binaries (cargo test --release --no-run)"
cargo_artifacts test,lib "$tmp/tests.txt" -- test --release --no-run "$@" || die "cargo test --no-run failed"
log "building bench binaries (cargo bench --no-run)"
cargo_artifacts bench "$tmp/benches.txt" -- bench --no-run "$@" || die "cargo bench --no-run failed"
log "building the examples (cargo build --release --examples)"
cargo_artifacts example "$tmp/examples.txt" -- build --release --examples "$@" || die "cargo build --examples failed"
log "building the CLI (cargo build --release --bin spherekit)"
cargo_artifacts bin "$tmp/cli.txt" -- build --release --bin spherekit "$@" || die "cargo build --bin spherekit failed"

[[ -s "$tmp/tests.txt" ]] || die "cargo reported no test executables"
while IFS=$'\t' read -r kind name exe; do
    if [[ "$skip_tests" == *" $name "* ]]; then
        log "  tests/$name left out (GPU_BUNDLE_SKIP_TESTS)"
        continue
    fi
    install_bin "$kind" "$name" "$exe" "$bundle/tests"
done <"$tmp/tests.txt"
[[ -s "$tmp/benches.txt" ]] || log "WARNING: cargo reported no bench executables"
while IFS=$'\t' read -r kind name exe; do
    install_bin "$kind" "$name" "$exe" "$bundle/benches"
done <"$tmp/benches.txt"
while IFS=$'\t' read -r kind name exe; do
    install_bin "$kind" "$name" "$exe" "$bundle/examples"
done <"$tmp/examples.txt"
cli="$(awk -F'\t' '$2 == "spherekit" { print $3 }' "$tmp/cli.txt" | tail -n 1)"
[[ -n "$cli" ]] || die "cargo reported no executable for the spherekit binary"
install_bin bin spherekit "$cli" "$bundle"

cp scripts/gpu_suite.sh scripts/gpu_summary.py "$bundle/"
shopt -s nullglob
baselines=(benches/baselines/*.py)
shopt -u nullglob
((${#baselines[@]} > 0)) && cp "${baselines[@]}" "$bundle/"
chmod +x "$bundle/gpu_suite.sh"

# COMMIT: what was built, when, with what.
if commit="$(git rev-parse HEAD 2>/dev/null)"; then
    # --no-optional-locks: status must not rewrite the index.
    [[ -n "$(git --no-optional-locks status --porcelain 2>/dev/null)" ]] && commit="$commit-dirty"
else
    commit="none (no commit yet)-dirty"
fi
glibc="$(for f in "$bundle"/spherekit "$bundle"/tests/* "$bundle"/benches/*; do
    objdump -T "$f" 2>/dev/null | grep -o 'GLIBC_[0-9][0-9.]*' || true
done | sort -u -V | tail -n 1)"
{
    echo "commit: $commit"
    echo "built: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "archs: $SPHEREKIT_CUDA_ARCHS lineinfo=$SPHEREKIT_LINEINFO"
    echo "rustc: $(rustc --version 2>/dev/null || echo '?')"
    echo "glibc needed: ${glibc:-unknown}"
} >"$bundle/COMMIT"
cat "$bundle/COMMIT" >&2

# Pack the binaries (see the header); GPU_BUNDLE_PACK=0 leaves them loose.
if [[ "${GPU_BUNDLE_PACK:-1}" == 1 ]]; then
    command -v xz >/dev/null || die "xz is needed to pack the bundle (or set GPU_BUNDLE_PACK=0)"
    loose="$(du -sb "$bundle" | cut -f1)"
    (cd "$bundle" && tar -cf - spherekit tests benches examples | xz -9e -T1 >bins.tar.xz) ||
        die "packing the binaries failed"
    rm -rf "$bundle/spherekit" "$bundle/tests" "$bundle/benches" "$bundle/examples"
    log "packed the binaries: $(awk -v b="$loose" 'BEGIN { printf "%.1f", b / 1048576 }') MiB loose -> $(du -b "$bundle/bins.tar.xz" | awk '{ printf "%.1f", $1 / 1048576 }') MiB"
fi

bytes="$(du -sb "$bundle" | cut -f1)"
mib="$(awk -v b="$bytes" 'BEGIN { printf "%.1f", b / 1048576 }')"
log "bundle: $bundle, $mib MiB in $(find "$bundle" -type f | wc -l) files"
if ((bytes > max_mib * 1024 * 1024)); then
    die "the bundle is $mib MiB, over the $max_mib MiB limit (the carried tree must stay under 64 MiB); try SPHEREKIT_LINEINFO=0"
fi
log "run on the GPU machine, from the repository root: bash gpu-bundle/gpu_suite.sh (carry gpu-bundle)"
