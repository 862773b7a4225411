//! Gram-iteration throughput on the GPU (f32 storage), T = 6:
//! - `b4096_k64`: 4096 matrices 64 × 64;
//! - `b65536_k16`: 65536 matrices 16 × 16 (launches and memory dominate);
//! - `net_mixed`: the dense layers of a small network in one call (mixed shapes, both tiers);
//! - `d4096`: one 4096 × 4096 matrix (the large tier, Gram powers in global memory): its GFLOP/s
//!   against a measured f32 GEMM of the same size (benches/baselines/gram.py's `torch_gemm`) is
//!   the per-iteration throughput ratio (the nominal count is 2 k³ per step for a square matrix);
//! - `resnet18_conv` (op "conv"): the 20 convolution layers of a ResNet-18 at 224 × 224 ImageNet
//!   resolution in one `conv_bounds` call (circular padding; the strided layers, conv1, the
//!   first conv of layers 2-4 and the 1 × 1 downsamples, are bounded as stride 1 on their input
//!   side n, which bounds the strided ones too), with He-scaled weights so the bounds are O(1):
//!   conv1 64×3×7×7 at n = 224; layer1 4 × 64×64×3×3 at 56; layers 2-4 (c = 128, 256, 512 at
//!   n = 56, 28, 14): c×c/2×3×3 at n, 3 × c×c×3×3 at n/2, the downsample c×c/2×1×1 at n.
//!   Every layer is n (n/2 + 1) frequency blocks (channel blocks up to 512 × 512: the large
//!   tier).
//!
//! Each in the three precisions (fast f32 arithmetic, f64, certified), CUDA events, warm-up,
//! median of runs (fewer for the two heavy cases). Printed per dense case: matrices/s, GFLOP/s
//! of the plain algorithm's nominal flop count (2 l k² for the first Gram and 2 k³ per squaring,
//! k = min(m, n), l = max(m, n); the kernel does about half of the squarings' products, by
//! symmetry), and the fraction of the measured device-to-device copy bandwidth that reading the
//! matrices once at that rate would take; per convolution case: layers, frequency blocks,
//! layers/s and blocks/s. Outputs are poisoned before and checked after (finite,
//! 0 < lower <= upper, the last up to 16 roundoffs of the arithmetic: both are σ₁ up to rounding,
//! and they may cross by an ulp when the top singular value dominates).
//!
//! With SPHEREKIT_BENCH_DUMP=<dir> each case's inputs and fast-mode upper bounds are written
//! there (`<case>_w.f32`, `<case>.json`, `<case>_upper.f64`; for `resnet18_conv` the kernels
//! packed as `ConvBatch::packed` lays them out, the JSON's "kind" "conv" and "layers"
//! [[c_out, c_in, k, n], ...], one upper bound per layer) so that benches/baselines/gram.py times
//! PyTorch on the same data (torch.linalg.matrix_norm, the Gram iteration as a bmm loop, an f32
//! GEMM for `d4096`, the 2023 rfft2 + bmm method layer by layer for the convolutions) and
//! compares its bounds. Every figure is a `RESULT {json}` line (family "gram").

use std::sync::Arc;

use cudarc::driver::{CudaSlice, CudaStream};
use spherekit::Gpu;
use spherekit::gram::cpu::ConvShape;
use spherekit::gram::gpu::{DeviceConvBatch, DeviceDenseBatch, conv_bounds, dense_bounds};
use spherekit::gram::{ConvBatch, DenseBatch, DeviceBound, Iterations, Precision};

const T: u32 = 6;

const PRECISIONS: [(Precision, &str); 3] = [
    (Precision::Fast, "fast"),
    (Precision::F64, "f64"),
    (Precision::Certified, "certified"),
];

const POISON: DeviceBound = DeviceBound {
    upper: f64::NAN,
    lower: f64::NAN,
    iterations: u32::MAX,
    flags: 0,
};

struct Case {
    name: &'static str,
    shapes: Vec<(usize, usize)>,
    /// Tens of milliseconds per call in f64: fewer runs.
    heavy: bool,
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
            heavy: false,
        },
        Case {
            name: "b65536_k16",
            shapes: vec![(16, 16); 65536],
            heavy: false,
        },
        Case {
            name: "net_mixed",
            shapes: net,
            heavy: false,
        },
        Case {
            name: "d4096",
            shapes: vec![(4096, 4096)],
            heavy: true,
        },
    ]
}

/// ResNet-18's 20 convolution layers at 224 × 224 (see the module comment; strided layers as
/// stride 1 on their input side).
fn resnet18_conv() -> Vec<ConvShape> {
    let conv = |c_out, c_in, k, n| ConvShape { c_out, c_in, k, n };
    let mut layers = vec![conv(64, 3, 7, 224)];
    layers.extend([conv(64, 64, 3, 56); 4]);
    for (c, n) in [(128, 56), (256, 28), (512, 14)] {
        layers.push(conv(c, c / 2, 3, n));
        layers.extend([conv(c, c, 3, n / 2); 3]);
        layers.push(conv(c, c / 2, 1, n));
    }
    layers
}

/// (warm-up calls, timed runs).
fn runs(quick: bool, heavy: bool) -> (usize, usize) {
    match (heavy, quick) {
        (false, true) => (3, 10),
        (false, false) => (3, 30),
        (true, true) => (1, 5),
        (true, false) => (2, 15),
    }
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

/// The RESULT's error field for outputs that are not a valid enclosure (finite, 0 < lower, and
/// lower <= upper up to 16 units of the arithmetic's roundoff: both bounds are σ₁ up to rounding,
/// and when the top singular value dominates they agree to the last bit and may cross by an
/// ulp), with the first one's values; empty when all are valid.
fn error_field(out: &[DeviceBound], precision: Precision) -> String {
    let roundoff = match precision {
        Precision::Fast => f64::from(f32::EPSILON) / 2.0,
        _ => f64::EPSILON / 2.0,
    };
    let valid = |b: &DeviceBound| {
        b.upper.is_finite() && b.lower > 0.0 && b.lower <= b.upper * (1.0 + 16.0 * roundoff)
    };
    let bad = out.iter().filter(|b| !valid(b)).count();
    match out.iter().position(|b| !valid(b)) {
        Some(i) => format!(
            ",\"error\":\"{bad} invalid bounds (first: #{i}, upper {:e}, lower {:e})\"",
            out[i].upper, out[i].lower
        ),
        None => String::new(),
    }
}

/// Writes `<name>_w.f32`, `<name>_upper.f64` and `<name>.json` (`meta`) into `dir`.
fn dump(dir: &str, name: &str, w: &[f32], upper: &[f64], meta: &str) -> std::io::Result<()> {
    let bytes: Vec<u8> = w.iter().flat_map(|v| v.to_le_bytes()).collect();
    std::fs::write(format!("{dir}/{name}_w.f32"), bytes)?;
    let bytes: Vec<u8> = upper.iter().flat_map(|v| v.to_le_bytes()).collect();
    std::fs::write(format!("{dir}/{name}_upper.f64"), bytes)?;
    std::fs::write(format!("{dir}/{name}.json"), meta)
}

/// With SPHEREKIT_BENCH_DUMP set, dumps a case's inputs and fast upper bounds.
fn dump_if_asked(name: &str, w: &[f32], out: &[DeviceBound], meta: impl FnOnce() -> String) {
    if let Ok(dir) = std::env::var("SPHEREKIT_BENCH_DUMP") {
        let upper: Vec<f64> = out.iter().map(|b| b.upper).collect();
        if let Err(e) = dump(&dir, name, w, &upper, &meta()) {
            eprintln!("gram bench: could not dump {name}: {e}");
        }
    }
}

/// Per precision: its name, and the median µs with the outputs or the error's text.
type Timings = Vec<(
    Precision,
    &'static str,
    Result<(f64, Vec<DeviceBound>), String>,
)>;

/// Times `call` (one launch writing all of `dout`) in each precision, `dout` poisoned before.
fn time_precisions(
    stream: &Arc<CudaStream>,
    dout: &mut CudaSlice<DeviceBound>,
    (warmup, runs): (usize, usize),
    mut call: impl FnMut(Precision, &mut CudaSlice<DeviceBound>) -> spherekit::Result<()>,
) -> Timings {
    let mut results = Vec::new();
    for (precision, pname) in PRECISIONS {
        stream.memcpy_htod(&vec![POISON; dout.len()], dout).unwrap();
        let mut once = || call(precision, dout);
        let timed = once().and_then(|()| {
            spherekit::timing::median_us(stream, warmup, runs, || once().expect("launch"))
        });
        let result = match timed {
            Ok(us) => Ok((us, stream.clone_dtoh(&*dout).unwrap())),
            Err(e) => Err(e.to_string().replace('"', "'")),
        };
        results.push((precision, pname, result));
    }
    results
}

fn run_case(gpu: &Gpu, stream: &Arc<CudaStream>, case: &Case, copy_gbps: f64, quick: bool) {
    let batch = DenseBatch::packed(&case.shapes).expect("valid shapes");
    let mut tables = DeviceDenseBatch::new(gpu, stream, &batch).expect("tables");
    let w = entries(batch.span(), 7 + case.shapes.len() as u64);
    let dw = stream.clone_htod(&w).unwrap();
    let mut dout = stream.clone_htod(&vec![POISON; batch.len()]).unwrap();
    let flops = nominal_flops(&case.shapes);
    let bytes = 4.0 * batch.span() as f64;
    let results = time_precisions(stream, &mut dout, runs(quick, case.heavy), |p, out| {
        dense_bounds(
            gpu,
            stream,
            &mut tables,
            &dw.slice(..),
            &mut out.slice_mut(..),
            p,
            Iterations::Fixed(T),
        )
    });
    for (precision, pname, result) in results {
        let line = match result {
            Ok((us, out)) => {
                if precision == Precision::Fast {
                    dump_if_asked(case.name, &w, &out, || {
                        let shapes: Vec<String> = case
                            .shapes
                            .iter()
                            .map(|(m, n)| format!("[{m},{n}]"))
                            .collect();
                        format!(
                            "{{\"case\":\"{}\",\"kind\":\"dense\",\"shapes\":[{}],\"iterations\":{T}}}",
                            case.name,
                            shapes.join(",")
                        )
                    });
                }
                let secs = us * 1e-6;
                format!(
                    "\"median_us\":{us:.2},\"matrices_per_s\":{:.4e},\"gflops\":{:.1},\"frac_copy\":{:.4}{}",
                    batch.len() as f64 / secs,
                    flops / secs / 1e9,
                    bytes / secs / (copy_gbps * 1e9),
                    error_field(&out, precision)
                )
            }
            Err(e) => format!("\"error\":\"{e}\""),
        };
        println!(
            "RESULT {{\"family\":\"gram\",\"op\":\"dense\",\"case\":\"{}\",\"dtype\":\"f32\",\"precision\":\"{pname}\",\"impl\":\"spherekit_gpu\",\"matrices\":{},\"iterations\":{T},{line}}}",
            case.name,
            batch.len()
        );
    }
}

/// A convolution case: every layer in one `conv_bounds` call.
fn run_conv_case(
    gpu: &Gpu,
    stream: &Arc<CudaStream>,
    name: &str,
    shapes: &[ConvShape],
    quick: bool,
) {
    let batch = ConvBatch::packed(shapes).expect("valid shapes");
    let mut tables = DeviceConvBatch::new(gpu, stream, &batch).expect("tables");
    // He-scaled kernels (variance 2 / fan-in): every layer's bound is O(1).
    let mut w = entries(batch.span(), 11 + shapes.len() as u64);
    for i in 0..batch.len() {
        let (offset, s) = batch.layer(i).expect("layer");
        let fan_in = s.c_in * s.k * s.k;
        let scale = (2.0 / fan_in as f64).sqrt() as f32;
        for v in &mut w[offset..offset + s.c_out * fan_in] {
            *v *= scale;
        }
    }
    let dw = stream.clone_htod(&w).unwrap();
    let mut dout = stream.clone_htod(&vec![POISON; batch.len()]).unwrap();
    let results = time_precisions(stream, &mut dout, runs(quick, true), |p, out| {
        conv_bounds(
            gpu,
            stream,
            &mut tables,
            &dw.slice(..),
            &mut out.slice_mut(..),
            p,
            Iterations::Fixed(T),
        )
    });
    for (precision, pname, result) in results {
        let line = match result {
            Ok((us, out)) => {
                if precision == Precision::Fast {
                    dump_if_asked(name, &w, &out, || {
                        let layers: Vec<String> = shapes
                            .iter()
                            .map(|s| format!("[{},{},{},{}]", s.c_out, s.c_in, s.k, s.n))
                            .collect();
                        format!(
                            "{{\"case\":\"{name}\",\"kind\":\"conv\",\"layers\":[{}],\"iterations\":{T}}}",
                            layers.join(",")
                        )
                    });
                }
                let secs = us * 1e-6;
                format!(
                    "\"median_us\":{us:.2},\"layers_per_s\":{:.4e},\"blocks_per_s\":{:.4e}{}",
                    batch.len() as f64 / secs,
                    batch.blocks() as f64 / secs,
                    error_field(&out, precision)
                )
            }
            Err(e) => format!("\"error\":\"{e}\""),
        };
        println!(
            "RESULT {{\"family\":\"gram\",\"op\":\"conv\",\"case\":\"{name}\",\"dtype\":\"f32\",\"precision\":\"{pname}\",\"impl\":\"spherekit_gpu\",\"layers\":{},\"blocks\":{},\"iterations\":{T},{line}}}",
            batch.len(),
            batch.blocks()
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
    drop((src, dst));
    let copy_gbps = 8.0 * n as f64 / copy_us / 1e3;
    println!(
        "RESULT {{\"family\":\"gram\",\"op\":\"copy\",\"impl\":\"copy_d2d\",\"gbps\":{copy_gbps:.1}}}"
    );
    for case in cases() {
        run_case(gpu, &stream, &case, copy_gbps, quick);
    }
    run_conv_case(gpu, &stream, "resnet18_conv", &resnet18_conv(), quick);
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
