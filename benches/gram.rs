//! Gram-iteration throughput on the GPU (f32 storage):
//! - `b4096_k64`: 4096 matrices 64 × 64, T = 6;
//! - `b65536_k16`: 65536 matrices 16 × 16, T = 6 (launches and memory dominate);
//! - `net_mixed`: the dense layers of a small network in one call (mixed shapes, both tiers).
//!
//! Each in the three precisions (fast f32 arithmetic, f64, certified), CUDA events, warm-up,
//! median of runs. Printed per case: matrices/s, GFLOP/s of the plain algorithm's nominal flop
//! count (2 l k² for the first Gram and 2 k³ per squaring, k = min(m, n), l = max(m, n); the
//! kernel does about half of the squarings' products, by symmetry), and the fraction of the
//! measured device-to-device copy bandwidth that reading the matrices once at that rate would
//! take. Outputs are poisoned before and checked after (finite, 0 < lower <= upper).
//!
//! With SPHEREKIT_BENCH_DUMP=<dir> each case's inputs and bounds are written there
//! (`<case>_w.f32`, `<case>.json`, `<case>_upper.f64`) so that benches/baselines/gram.py times
//! PyTorch (torch.linalg.matrix_norm, the Gram iteration as a bmm loop) on the same matrices and
//! compares its bounds. Every figure is a `RESULT {json}` line (family "gram").

use std::sync::Arc;

use cudarc::driver::CudaStream;
use spherekit::Gpu;
use spherekit::gram::gpu::{DeviceDenseBatch, dense_bounds};
use spherekit::gram::{DenseBatch, DeviceBound, Iterations, Precision};

const T: u32 = 6;

struct Case {
    name: &'static str,
    shapes: Vec<(usize, usize)>,
}

fn cases() -> Vec<Case> {
    // A small network's dense layers (every smaller side <= 128): stems, blocks, heads.
    let mut net = Vec::new();
    for _ in 0..8 {
        net.extend([(512, 128), (128, 128), (256, 64), (64, 64), (64, 64)]);
    }
    net.extend([(32, 288); 8]);
    net.extend([(100, 10); 4]);
    vec![
        Case {
            name: "b4096_k64",
            shapes: vec![(64, 64); 4096],
        },
        Case {
            name: "b65536_k16",
            shapes: vec![(16, 16); 65536],
        },
        Case {
            name: "net_mixed",
            shapes: net,
        },
    ]
}

/// Deterministic N(0, 1)-like entries (never zeros): a xorshift and the sum of 4 uniforms.
fn entries(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed | 1;
    let mut next = || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        (s >> 11) as f64 / (1u64 << 53) as f64
    };
    (0..n)
        .map(|_| (((next() + next() + next() + next()) - 2.0) * 3f64.sqrt()) as f32)
        .collect()
}

fn nominal_flops(shapes: &[(usize, usize)]) -> f64 {
    shapes
        .iter()
        .map(|&(m, n)| {
            let (k, l) = (m.min(n) as f64, m.max(n) as f64);
            2.0 * l * k * k + f64::from(T - 1) * 2.0 * k * k * k
        })
        .sum()
}

fn dump(dir: &str, case: &Case, w: &[f32], upper: &[f64]) -> std::io::Result<()> {
    let bytes: Vec<u8> = w.iter().flat_map(|v| v.to_le_bytes()).collect();
    std::fs::write(format!("{dir}/{}_w.f32", case.name), bytes)?;
    let bytes: Vec<u8> = upper.iter().flat_map(|v| v.to_le_bytes()).collect();
    std::fs::write(format!("{dir}/{}_upper.f64", case.name), bytes)?;
    let shapes: Vec<String> = case
        .shapes
        .iter()
        .map(|(m, n)| format!("[{m},{n}]"))
        .collect();
    std::fs::write(
        format!("{dir}/{}.json", case.name),
        format!(
            "{{\"case\":\"{}\",\"shapes\":[{}],\"iterations\":{T}}}",
            case.name,
            shapes.join(",")
        ),
    )
}

fn run_case(gpu: &Gpu, stream: &Arc<CudaStream>, case: &Case, copy_gbps: f64, quick: bool) {
    let batch = DenseBatch::packed(&case.shapes).expect("valid shapes");
    let mut tables = DeviceDenseBatch::new(gpu, stream, &batch).expect("tables");
    let w = entries(batch.span(), 7 + case.shapes.len() as u64);
    let dw = stream.clone_htod(&w).unwrap();
    let poison = DeviceBound {
        upper: f64::NAN,
        lower: f64::NAN,
        iterations: u32::MAX,
        flags: 0,
    };
    let mut dout = stream.clone_htod(&vec![poison; batch.len()]).unwrap();
    let flops = nominal_flops(&case.shapes);
    let bytes = 4.0 * batch.span() as f64;
    let runs = if quick { 10 } else { 30 };
    for (precision, pname) in [
        (Precision::Fast, "fast"),
        (Precision::F64, "f64"),
        (Precision::Certified, "certified"),
    ] {
        stream
            .memcpy_htod(&vec![poison; batch.len()], &mut dout)
            .unwrap();
        let mut call = || {
            dense_bounds(
                gpu,
                stream,
                &mut tables,
                &dw.slice(..),
                &mut dout.slice_mut(..),
                precision,
                Iterations::Fixed(T),
            )
        };
        let line = match call().and_then(|()| {
            spherekit::timing::median_us(stream, 3, runs, || call().expect("launch"))
        }) {
            Ok(us) => {
                let out = stream.clone_dtoh(&dout).unwrap();
                let bad = out
                    .iter()
                    .filter(|b| !(b.upper.is_finite() && b.lower > 0.0 && b.lower <= b.upper))
                    .count();
                if precision == Precision::Fast
                    && let Ok(dir) = std::env::var("SPHEREKIT_BENCH_DUMP")
                {
                    let upper: Vec<f64> = out.iter().map(|b| b.upper).collect();
                    if let Err(e) = dump(&dir, case, &w, &upper) {
                        eprintln!("gram bench: could not dump {}: {e}", case.name);
                    }
                }
                let secs = us * 1e-6;
                let error = if bad > 0 {
                    format!(",\"error\":\"{bad} invalid bounds\"")
                } else {
                    String::new()
                };
                format!(
                    "\"median_us\":{us:.2},\"matrices_per_s\":{:.4e},\"gflops\":{:.1},\"frac_copy\":{:.4}{error}",
                    batch.len() as f64 / secs,
                    flops / secs / 1e9,
                    bytes / secs / (copy_gbps * 1e9)
                )
            }
            Err(e) => format!("\"error\":\"{}\"", e.to_string().replace('"', "'")),
        };
        println!(
            "RESULT {{\"family\":\"gram\",\"op\":\"dense\",\"case\":\"{}\",\"dtype\":\"f32\",\"precision\":\"{pname}\",\"impl\":\"spherekit_gpu\",\"matrices\":{},\"iterations\":{T},{line}}}",
            case.name,
            batch.len()
        );
    }
}

fn gpu_benches(gpu: &Gpu) {
    let quick = std::env::var("SPHEREKIT_BENCH_QUICK").is_ok_and(|v| v == "1");
    let stream = gpu.context().new_stream().expect("stream");
    let n = 1usize << 27;
    let src = stream.clone_htod(&entries(n, 3)).unwrap();
    let mut dst = stream.alloc_zeros::<f32>(n).unwrap();
    let copy_us = spherekit::timing::median_us(&stream, 3, 20, || {
        stream.memcpy_dtod(&src, &mut dst).unwrap()
    })
    .unwrap();
    let copy_gbps = 8.0 * n as f64 / copy_us / 1e3;
    println!(
        "RESULT {{\"family\":\"gram\",\"op\":\"copy\",\"impl\":\"copy_d2d\",\"gbps\":{copy_gbps:.1}}}"
    );
    for case in cases() {
        run_case(gpu, &stream, &case, copy_gbps, quick);
    }
}

fn main() {
    // `cargo test --benches` runs bench binaries without --bench: nothing to do then.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    match Gpu::open(0) {
        Ok(gpu) => gpu_benches(&gpu),
        Err(e) => println!("gram bench: skipped: no CUDA device ({e})"),
    }
}
