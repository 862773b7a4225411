#!/usr/bin/env python3
"""The loops of the built kernels' machine code (SASS), with the instruction mix of each.

Reads the fatbin build.rs embeds (no GPU needed) and prints, per kernel whose name contains the
filter: its instruction count and local-memory instructions (spills, stacks), then every loop
(a backward branch and the code it jumps over) that holds at least --min-fma fused multiply-adds
or tensor-core ops, innermost first:

  loop 0x2920-0x3210 144 instr  FMA 128 (89%)  LDS.128 8  LDG 0  LDGSTS 0  STS 0  BAR 0  local 0

What it is for: a kernel's hot loop says what limits it before a GPU does. The share of issue
slots its FMAs take bounds the FMA throughput; loads per FMA, their widths and local memory
inside a loop are defects a GPU run would only show as a low number. (In the Gram large tier it
showed that ptxas had already merged the shared loads into 128-bit ones, and that the register
staging of the panels cost 25-60% of the issue slots.) It does not model latency or occupancy,
and its counts are static: an outer loop's line counts its inner loops' bodies once.

  python3 scripts/sass_loops.py [filter] [--arch sm_90] [--fatbin PATH] [--min-fma 32]

Needs cuobjdump and nvdisasm: scripts/install_sass_tools.sh puts them in .cuda/tools.
"""

import argparse
import collections
import glob
import os
import re
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FMA_OPS = ("FFMA", "DFMA", "HFMA2", "HMMA", "DMMA", "IMMA")
INSTR = re.compile(r"\s*/\*([0-9a-f]{4,})\*/\s+(?:@!?U?P\w+\s+)?([A-Z][A-Z0-9_.]*)(.*)")


def tools_dir():
    """The directory holding cuobjdump and nvdisasm, installing them if needed."""
    for d in (os.environ.get("SPHEREKIT_SASS_TOOLS", ""),
              os.path.join(REPO, ".cuda", "tools", "nvidia", "cu13", "bin")):
        if d and os.path.exists(os.path.join(d, "cuobjdump")):
            return d
    out = subprocess.run(["bash", os.path.join(REPO, "scripts", "install_sass_tools.sh")],
                         check=True, capture_output=True, text=True).stdout
    return out.strip().splitlines()[-1]


def newest_fatbin():
    found = glob.glob(os.path.join(REPO, "target", "*", "build", "spherekit-*", "out",
                                   "spherekit.fatbin"))
    found = [f for f in found if os.path.getsize(f) > 0]
    if not found:
        sys.exit("sass_loops: no built fatbin under target/ (run cargo build with the kernels)")
    return max(found, key=os.path.getmtime)


def functions(fatbin, arch):
    """(name, [(address, opcode, operands)]) for every kernel of `arch` in the fatbin."""
    d = tools_dir()
    env = dict(os.environ, PATH=d + os.pathsep + os.environ.get("PATH", ""))
    out = subprocess.run([os.path.join(d, "cuobjdump"), "-sass", "-arch", arch, fatbin],
                         check=True, capture_output=True, text=True, env=env).stdout
    for block in out.split("Function : ")[1:]:
        name = block.split("\n", 1)[0].strip()
        code = []
        for line in block.split("\n"):
            m = INSTR.match(line)
            if m:
                code.append((int(m.group(1), 16), m.group(2), m.group(3)))
        yield name, code


def loops(code, min_fma):
    """The loops (backward branches) with at least min_fma FMA-class instructions, innermost
    (shortest) first."""
    found = []
    for addr, op, rest in code:
        if op != "BRA":
            continue
        t = re.search(r"0x([0-9a-f]+)", rest)
        if not t or int(t.group(1), 16) >= addr:
            continue
        lo = int(t.group(1), 16)
        body = [o for a, o, _ in code if lo <= a <= addr]
        if sum(o.startswith(FMA_OPS) for o in body) >= min_fma:
            found.append((lo, addr, body))
    return sorted(found, key=lambda f: len(f[2]))


def mix(body):
    c = collections.Counter(body)
    n = len(body)
    fma = sum(v for k, v in c.items() if k.startswith(FMA_OPS))

    def count(prefix, exact=False):
        return sum(v for k, v in c.items()
                   if (k.split(".")[0] == prefix if exact else k.startswith(prefix)))

    lds = collections.Counter()
    for k, v in c.items():
        if k.split(".")[0] == "LDS":
            width = [p for p in k.split(".")[1:] if p in ("64", "128", "U8", "U16", "S8", "S16")]
            lds["LDS" + ("." + width[0] if width else "")] += v
    lds_text = " ".join(f"{k} {v}" for k, v in sorted(lds.items())) or "LDS 0"
    local = count("LDL") + count("STL")
    return (f"{n:5d} instr  FMA {fma:4d} ({100 * fma // max(n, 1):2d}%)  {lds_text}  "
            f"LDG {count('LDG', True)}  LDGSTS {count('LDGSTS')}  STS {count('STS')}  "
            f"BAR {count('BAR')}  local {local}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("filter", nargs="?", default="", help="part of the kernel names")
    ap.add_argument("--arch", default="sm_90")
    ap.add_argument("--fatbin", default=None, help="default: the newest build's")
    ap.add_argument("--min-fma", type=int, default=32)
    args = ap.parse_args()
    fatbin = args.fatbin or newest_fatbin()
    print(f"# {fatbin} ({args.arch})")
    shown = 0
    for name, code in functions(fatbin, args.arch):
        if args.filter not in name:
            continue
        shown += 1
        ops = [o for _, o, _ in code]
        local = sum(o.startswith(("LDL", "STL")) for o in ops)
        print(f"{name}: {len(ops)} instr, local-memory instructions {local}")
        for lo, hi, body in loops(code, args.min_fma):
            print(f"  loop {lo:#07x}-{hi:#07x} {mix(body)}")
    if shown == 0:
        sys.exit(f"sass_loops: no {args.arch} kernel name contains {args.filter!r}")


if __name__ == "__main__":
    main()
