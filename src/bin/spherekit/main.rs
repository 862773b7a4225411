//! `spherekit`: the command-line program.
//!
//! - `spherekit report [--quick]`: runs every kernel family on the GPU if there is one (accuracy
//!   against the f64 CPU references, throughput against the measured copy bandwidth), else runs
//!   the CPU references' self-checks (exact identities, finite differences) and their speed. The
//!   log-Bessel accuracy table (CPU reference, kernels, SciPy; against the committed mpmath
//!   values, per region of the algorithm) is printed in both cases. Exit status 1 when a check
//!   misses its target.
//! - `spherekit info`: how the crate was built and what device it sees.
//! - `spherekit ptxas`: registers, stack and spills of every kernel, from the build's ptxas report.
//! - `spherekit lipschitz <file.safetensors> [options]`: per-layer spectral-norm bounds of a
//!   network's weights (dense layers, convolutions) by Gram iteration, on the GPU or the f64 CPU
//!   reference, and their product, a bound on the network's Lipschitz constant (`lipschitz.rs`;
//!   the file is read by the strict parser of `safetensors.rs`).
//!
//! Built on the public API only.

mod bessel;
mod hypersphere;
mod lipschitz;
mod safetensors;

use std::sync::Arc;

use cudarc::driver::CudaStream;
use spherekit::{Gpu, build_info};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let quick = args.iter().any(|a| a == "--quick");
    let code = match args.first().map(String::as_str) {
        Some("report") => report(quick),
        Some("info") => {
            info();
            0
        }
        Some("ptxas") => ptxas(),
        Some("lipschitz") => lipschitz::main(&args[1..]),
        Some("help" | "--help" | "-h") | None => {
            println!(
                "usage: spherekit <report [--quick] | info | ptxas | lipschitz <file.safetensors> [options]>\n\
                 (`spherekit lipschitz --help` for its options)"
            );
            0
        }
        Some(other) => {
            eprintln!("unknown command {other:?}; try `spherekit help`");
            2
        }
    };
    std::process::exit(code);
}

fn info() -> Option<Gpu> {
    println!("== build ==");
    if build_info::KERNELS_BUILT {
        println!("kernels: {}", build_info::KERNELS_STATUS);
    } else {
        println!("kernels: NOT built ({})", build_info::KERNELS_STATUS);
    }
    println!("== device ==");
    match Gpu::open(0) {
        Ok(gpu) => {
            let i = gpu.info();
            println!(
                "GPU 0: {} ({} SMs, compute capability {}.{}, {:.1} GiB, L2 {} MiB)",
                i.name,
                i.sm_count,
                i.compute_capability.0,
                i.compute_capability.1,
                i.total_memory as f64 / (1u64 << 30) as f64,
                i.l2_bytes >> 20
            );
            Some(gpu)
        }
        Err(e) => {
            println!("no GPU: {e}");
            None
        }
    }
}

fn ptxas() -> i32 {
    let kernels = build_info::kernel_resources();
    if kernels.is_empty() {
        println!("no ptxas report: {}", build_info::KERNELS_STATUS);
        return 1;
    }
    println!(
        "{:<30} {:<8} {:>5} {:>6} {:>6} {:>6} {:>6}",
        "kernel", "target", "regs", "smem", "stack", "spill", "fill"
    );
    for k in &kernels {
        println!(
            "{:<30} {:<8} {:>5} {:>6} {:>6} {:>6} {:>6}",
            k.kernel,
            k.target,
            k.registers,
            k.shared_bytes,
            k.stack_bytes,
            k.spill_stores,
            k.spill_loads
        );
    }
    let local = kernels.iter().filter(|k| k.uses_local_memory()).count();
    println!(
        "{} kernels x targets, {local} using local memory",
        kernels.len()
    );
    i32::from(local > 0)
}

/// Random inputs: normal entries, rows of different magnitudes.
struct Rand(u64);
impl Rand {
    fn next(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
    fn normal(&mut self) -> f64 {
        let (u, v) = (self.next().max(1e-300), self.next());
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    }
    fn matrix(&mut self, rows: usize, cols: usize) -> Vec<f64> {
        let mut out = Vec::with_capacity(rows * cols);
        for _ in 0..rows {
            let scale = 10f64.powf(4.0 * self.next() - 2.0);
            out.extend((0..cols).map(|_| scale * self.normal()));
        }
        out
    }
}

fn report(quick: bool) -> i32 {
    let Some(gpu) = info() else {
        println!(
            "(no GPU: the CPU references' own checks and speed; `cargo test` runs the kernels on the CPU emulator)"
        );
        let failures = hypersphere::cpu_report(quick) + bessel::report(None, quick);
        return i32::from(failures > 0);
    };
    let stream = gpu.context().new_stream().expect("stream");
    let failures =
        hypersphere::report(&gpu, &stream, quick) + bessel::report(Some((&gpu, &stream)), quick);
    if failures > 0 {
        println!("{failures} accuracy check(s) FAILED");
        1
    } else {
        0
    }
}

/// Median µs of `f` on `stream` (CUDA events, 3 warm-up runs).
fn time_us(stream: &Arc<CudaStream>, runs: usize, f: impl FnMut()) -> f64 {
    spherekit::timing::median_us(stream, 3, runs, f).expect("timing")
}

/// Device-to-device copy bandwidth in GB/s (bytes read + written) for a `bytes`-long buffer of
/// random (not zero) data.
fn copy_bandwidth(stream: &Arc<CudaStream>, bytes: usize) -> f64 {
    let mut rng = Rand(5);
    let host: Vec<f64> = (0..bytes / 8).map(|_| rng.normal()).collect();
    let a = stream.clone_htod(&host).expect("upload");
    let mut b = stream.alloc_zeros::<f64>(host.len()).expect("alloc");
    let us = time_us(stream, 10, || stream.memcpy_dtod(&a, &mut b).expect("copy"));
    2.0 * (host.len() * 8) as f64 / us / 1e3
}
