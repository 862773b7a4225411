//! log-Bessel throughput.
//!
//! CPU (always): the f64 reference through the batch API on one thread (ns per evaluation, median
//! of repeated passes) and on every core (with the scaling over thread counts), for three mixes:
//! - `uniform`: log10 v uniform in [-3, 7], log10 x in [-10, 8] (the accuracy grid's box);
//! - `debye`: v and x in [50, 1e4] (one region of the algorithm);
//! - `broadcast`: one order v = 12.3 for the batch (passed once, as `Orders::All`), log10 x
//!   uniform in [-10, 8].
//!
//! With SPHEREKIT_BENCH_DUMP=<dir> the inputs are written there as raw little-endian f64
//! (`<mix>_v.f64`, `<mix>_x.f64`) so that benches/baselines/bessel.py times SciPy on exactly
//! the same inputs (scripts/bench_bessel_cpu.sh runs both and prints the comparison).
//!
//! GPU (when present): 2^26 elements, f64 and f32, the three mixes plus `uniform` sorted by
//! region (same inputs, no divergence inside warps: the difference is the cost of divergence;
//! the kernels sort each warp's batch of 256 by region, so it is what divergence still costs
//! beyond that),
//! evaluations per second and the fraction of the memory-bound limit (bytes read + written over
//! the measured device-to-device copy bandwidth). CUDA events, warm-up, median of runs.
//!
//! Every figure is a `RESULT {json}` line (family "bessel").

use std::time::Instant;

use spherekit::Gpu;
use spherekit::bessel::gpu::{DeviceOrders, evaluate};
use spherekit::bessel::{Function, Orders, Real, cpu};

const CPU_N: usize = 1 << 16;
const GPU_N: usize = 1 << 26;

struct Mix {
    name: &'static str,
    v: Vec<f64>,
    x: Vec<f64>,
    broadcast: Option<f64>,
}

fn uniform(n: usize, seed: u64, lo: f64, hi: f64) -> Vec<f64> {
    let mut s = seed | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            let u = (s >> 11) as f64 / (1u64 << 53) as f64;
            10f64.powf(lo + (hi - lo) * u)
        })
        .collect()
}

fn mixes(n: usize) -> Vec<Mix> {
    vec![
        Mix {
            name: "uniform",
            v: uniform(n, 1, -3.0, 7.0),
            x: uniform(n, 2, -10.0, 8.0),
            broadcast: None,
        },
        Mix {
            name: "debye",
            v: uniform(n, 3, 50f64.log10(), 4.0),
            x: uniform(n, 4, 50f64.log10(), 4.0),
            broadcast: None,
        },
        Mix {
            name: "broadcast",
            v: vec![12.3; n],
            x: uniform(n, 5, -10.0, 8.0),
            broadcast: Some(12.3),
        },
    ]
}

fn result(op: &str, dtype: &str, mix: &str, imp: &str, n: usize, extra: &str) {
    println!(
        "RESULT {{\"family\":\"bessel\",\"op\":\"{op}\",\"dtype\":\"{dtype}\",\"mix\":\"{mix}\",\"impl\":\"{imp}\",\"n\":{n}{extra}}}"
    );
}

fn cpu_benches() {
    let dump = std::env::var("SPHEREKIT_BENCH_DUMP").ok();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    for mix in mixes(CPU_N) {
        if let Some(dir) = &dump {
            for (suffix, data) in [("v", &mix.v), ("x", &mix.x)] {
                let bytes: Vec<u8> = data.iter().flat_map(|d| d.to_le_bytes()).collect();
                std::fs::write(format!("{dir}/{}_{suffix}.f64", mix.name), bytes)
                    .expect("write inputs");
            }
        }
        for f in [Function::LogI, Function::LogK] {
            // One thread: median over passes of the per-evaluation time.
            let mut out = vec![0.0; CPU_N];
            let mut samples = Vec::new();
            for _ in 0..7 {
                let t = Instant::now();
                // The batch API on one thread (a broadcast mix passes its one order, as users do).
                let orders = match mix.broadcast {
                    Some(v) => Orders::All(v),
                    None => Orders::Each(&mix.v),
                };
                spherekit::bessel::evaluate_cpu_threads(f, orders, &mix.x, &mut out, 1)
                    .expect("equal lengths");
                samples.push(t.elapsed().as_secs_f64() * 1e9 / CPU_N as f64);
                std::hint::black_box(&out);
            }
            samples.sort_by(f64::total_cmp);
            let ns = samples[samples.len() / 2];
            result(
                f.name(),
                "f64",
                mix.name,
                "spherekit_cpu_1thread",
                CPU_N,
                &format!(",\"ns_per_eval\":{ns:.2}"),
            );
            // Every core, and the scaling.
            for t in [1, 2, 4, 8, 16, 32]
                .into_iter()
                .filter(|&t| t <= threads)
                .chain(std::iter::once(threads))
            {
                let start = Instant::now();
                let reps = 5;
                for _ in 0..reps {
                    spherekit::bessel::evaluate_cpu_threads(
                        f,
                        match mix.broadcast {
                            Some(v) => Orders::All(v),
                            None => Orders::Each(&mix.v),
                        },
                        &mix.x,
                        &mut out,
                        t,
                    )
                    .expect("equal lengths");
                }
                let secs = start.elapsed().as_secs_f64() / reps as f64;
                result(
                    f.name(),
                    "f64",
                    mix.name,
                    &format!("spherekit_cpu_{t}threads"),
                    CPU_N,
                    &format!(",\"evals_per_s\":{:.4e}", CPU_N as f64 / secs),
                );
            }
        }
    }
}

/// Sorts a mix by the algorithm's region and, within it, by ρ (the series' and continued
/// fractions' lengths grow with ρ), so that warps do not diverge: a counting sort on a small key
/// computed once per element (2^26 elements).
fn sorted_by_region(v: &[f64], x: &[f64]) -> (Vec<f64>, Vec<f64>) {
    const BUCKETS: usize = 3 * 128;
    let key = |i: usize| {
        let r = cpu::region(v[i], x[i]) as usize;
        let rho = v[i].hypot(x[i]).max(1e-12);
        // Half-octave steps of ρ from 2^-35 to 2^29 (the grid's box), per region.
        r * 128 + ((rho.log2() * 2.0).floor() as i64 + 70).clamp(0, 127) as usize
    };
    let keys: Vec<usize> = (0..v.len()).map(key).collect();
    let mut start = vec![0usize; BUCKETS + 1];
    for &k in &keys {
        start[k + 1] += 1;
    }
    for b in 0..BUCKETS {
        start[b + 1] += start[b];
    }
    let (mut sv, mut sx) = (vec![0.0; v.len()], vec![0.0; v.len()]);
    for (i, &k) in keys.iter().enumerate() {
        sv[start[k]] = v[i];
        sx[start[k]] = x[i];
        start[k] += 1;
    }
    (sv, sx)
}

fn gpu_benches(gpu: &Gpu) {
    let stream = gpu.context().new_stream().expect("stream");
    // Copy bandwidth, bytes read + written.
    let n = 1usize << 28;
    let src = stream.alloc_zeros::<f32>(n).unwrap();
    let mut dst = stream.alloc_zeros::<f32>(n).unwrap();
    let copy_us = spherekit::timing::median_us(&stream, 3, 20, || {
        stream.memcpy_dtod(&src, &mut dst).unwrap()
    })
    .unwrap();
    let copy_gbps = 8.0 * n as f64 / copy_us / 1e3;
    println!(
        "RESULT {{\"family\":\"bessel\",\"op\":\"copy\",\"impl\":\"copy_d2d\",\"gbps\":{copy_gbps:.1}}}"
    );
    let mut all = mixes(GPU_N);
    let (sv, sx) = sorted_by_region(&all[0].v, &all[0].x);
    all.push(Mix {
        name: "uniform_sorted",
        v: sv,
        x: sx,
        broadcast: None,
    });
    for mix in &all {
        run_gpu::<f64>(gpu, &stream, mix, copy_gbps);
        run_gpu::<f32>(gpu, &stream, mix, copy_gbps);
    }
}

fn run_gpu<T: Real>(
    gpu: &Gpu,
    stream: &std::sync::Arc<cudarc::driver::CudaStream>,
    mix: &Mix,
    copy_gbps: f64,
) {
    let size = std::mem::size_of::<T>();
    let v: Vec<T> = mix.v.iter().map(|&a| T::from_f64(a)).collect();
    let x: Vec<T> = mix.x.iter().map(|&a| T::from_f64(a)).collect();
    let dv = stream.clone_htod(&v).unwrap();
    let dx = stream.clone_htod(&x).unwrap();
    let mut dout = stream.alloc_zeros::<T>(x.len()).unwrap();
    for f in [Function::LogI, Function::LogK] {
        let vview = dv.slice(..);
        let us = spherekit::timing::median_us(stream, 2, 10, || {
            let orders = match mix.broadcast {
                Some(o) => DeviceOrders::All(o),
                None => DeviceOrders::Each(&vview),
            };
            evaluate(
                gpu,
                stream,
                f,
                orders,
                &dx.slice(..),
                &mut dout.slice_mut(..),
            )
            .expect("launch")
        })
        .unwrap();
        let per_elem = if mix.broadcast.is_some() {
            2 * size
        } else {
            3 * size
        };
        let evals = x.len() as f64 / (us * 1e-6);
        let bound = copy_gbps * 1e9 / per_elem as f64;
        result(
            f.name(),
            T::NAME,
            mix.name,
            "spherekit_gpu",
            x.len(),
            &format!(
                ",\"median_us\":{us:.1},\"evals_per_s\":{evals:.4e},\"frac_memory_bound\":{:.4}",
                evals / bound
            ),
        );
    }
}

fn main() {
    // `cargo test --benches` runs bench binaries with --bench absent: nothing to do then.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    cpu_benches();
    match Gpu::open(0) {
        Ok(gpu) => gpu_benches(&gpu),
        Err(e) => println!("bessel bench (GPU part): skipped: no CUDA device ({e})"),
    }
}
