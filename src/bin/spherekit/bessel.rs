//! `spherekit report`, log-Bessel family: accuracy of log I_v(x) and log K_v(x) against the
//! committed mpmath golden values, per region of the algorithm and overall, for the CPU
//! reference (f64), the kernels (f64, f32) when there is a GPU, and SciPy's
//! log(ive(v, x)) + x, log(kve(v, x)) − x on the same points (values computed by
//! scripts/golden/scipy_values.py and committed), with SciPy's failures counted; then throughput.

use std::sync::Arc;
use std::time::Instant;

use cudarc::driver::{CudaSlice, CudaStream};
use spherekit::Gpu;
use spherekit::bessel::cpu::{Region, region};
use spherekit::bessel::gpu::{DeviceOrders, evaluate};
use spherekit::bessel::{Function, Orders, Real};

#[path = "../../../tests/common/golden.rs"]
mod golden;

use golden::{Stats, bessel_files, mixed, scipy_file};

/// The targets: f64 worst and median of the log error metric, f32 worst.
const F64_WORST: f64 = 1e-14;
const F64_MEDIAN: f64 = 2e-16;
const F32_WORST: f64 = 1e-6;

/// The golden points with their exact log I and log K, and SciPy's values there.
struct Points {
    v: Vec<f64>,
    x: Vec<f64>,
    log_i: Vec<f64>,
    log_k: Vec<f64>,
    scipy_i: Vec<f64>,
    scipy_k: Vec<f64>,
    region: Vec<Region>,
}

fn points() -> Points {
    let (mut v, mut x, mut log_i, mut log_k) = (vec![], vec![], vec![], vec![]);
    for g in bessel_files() {
        v.extend(g.column("v"));
        x.extend(g.column("x"));
        log_i.extend(g.column("log_iv"));
        log_k.extend(g.column("log_kv"));
    }
    let s = scipy_file();
    let (sv, sx) = (s.column("v"), s.column("x"));
    assert!(
        sv == v && sx == x,
        "tests/data/log_bessel/scipy.tsv is stale: rerun scripts/golden/scipy_values.py"
    );
    let region = v.iter().zip(&x).map(|(&a, &b)| region(a, b)).collect();
    Points {
        scipy_i: s.column("scipy_log_i"),
        scipy_k: s.column("scipy_log_k"),
        v,
        x,
        log_i,
        log_k,
        region,
    }
}

/// One implementation's values of log I and log K at every point.
struct Values {
    name: String,
    log_i: Vec<f64>,
    log_k: Vec<f64>,
    /// Targets (worst, median) when the row is checked; SciPy's row is not.
    targets: Option<(f64, f64)>,
    /// Failures are counted (non-finite where the exact value is finite) and left out of the
    /// error statistics, as for SciPy; otherwise a non-finite value is an infinite error.
    count_failures: bool,
}

/// Worst and median error over the points of `region` (None: all), and the failure count.
fn stats(
    p: &Points,
    got: &[f64],
    want: &[f64],
    region: Option<Region>,
    fails: bool,
) -> (usize, Stats, usize) {
    let mut s = Stats::default();
    let (mut n, mut failures) = (0, 0);
    for k in 0..p.v.len() {
        if region.is_some_and(|r| r != p.region[k]) {
            continue;
        }
        n += 1;
        if fails && !got[k].is_finite() && want[k].is_finite() {
            failures += 1;
            continue;
        }
        s.add(mixed(got[k], want[k]), p.v[k], p.x[k]);
    }
    (n, s, failures)
}

/// Prints the table; returns the number of rows that miss their targets.
fn table(p: &Points, rows: &[Values]) -> i32 {
    let mut failed = 0;
    println!(
        "{:<44} {:>5}  {:<22} {:>9} {:>9} {:>9} {:>9} {:>11}  status",
        "region", "n", "implementation", "I worst", "I median", "K worst", "K median", "fails I/K"
    );
    let regions: Vec<Option<Region>> = Region::ALL
        .iter()
        .copied()
        .map(Some)
        .chain(std::iter::once(None))
        .collect();
    for r in regions {
        let label = r.map_or("all", Region::describe);
        for (i, vals) in rows.iter().enumerate() {
            let (n, mut si, fi) = stats(p, &vals.log_i, &p.log_i, r, vals.count_failures);
            let (_, mut sk, fk) = stats(p, &vals.log_k, &p.log_k, r, vals.count_failures);
            let (mi, mk) = (si.median(), sk.median());
            let status = match vals.targets {
                // The median target is stated over the whole grid; per region only the worst.
                Some((worst, median)) => {
                    let ok = si.worst.0 <= worst
                        && sk.worst.0 <= worst
                        && (r.is_some() || (mi <= median && mk <= median));
                    failed += i32::from(!ok);
                    if ok { "ok" } else { "FAILED" }
                }
                None => "",
            };
            println!(
                "{:<44} {:>5}  {:<22} {:>9.1e} {:>9.1e} {:>9.1e} {:>9.1e} {:>11}  {status}",
                if i == 0 { label } else { "" },
                if i == 0 { n.to_string() } else { String::new() },
                vals.name,
                si.worst.0,
                mi,
                sk.worst.0,
                mk,
                format!("{fi}/{fk}"),
            );
        }
    }
    failed
}

fn cpu_values(p: &Points) -> Values {
    let eval = |f: Function| {
        let mut out = vec![f64::NAN; p.x.len()];
        spherekit::bessel::evaluate_cpu(f, Orders::Each(&p.v), &p.x, &mut out).expect("lengths");
        out
    };
    Values {
        name: "spherekit CPU f64".into(),
        log_i: eval(Function::LogI),
        log_k: eval(Function::LogK),
        targets: Some((F64_WORST, F64_MEDIAN)),
        count_failures: false,
    }
}

/// The kernels in storage type T. For f32 the inputs are rounded to f32 first, so the row is
/// measured against the f64 reference at those inputs (itself checked against mpmath above),
/// not against mpmath at the f64 inputs.
fn gpu_values<T: Real>(
    gpu: &Gpu,
    stream: &Arc<CudaStream>,
    p: &Points,
) -> (Values, Vec<f64>, Vec<f64>) {
    let v: Vec<T> = p.v.iter().map(|&a| T::from_f64(a)).collect();
    let x: Vec<T> = p.x.iter().map(|&a| T::from_f64(a)).collect();
    let (dv, dx) = (upload::<T>(stream, &p.v), upload::<T>(stream, &p.x));
    let eval = |f: Function| {
        // Poisoned output: an element the kernel skips shows up as NaN.
        let mut out = upload::<T>(stream, &vec![f64::NAN; x.len()]);
        launch(gpu, stream, f, &dv, &dx, &mut out);
        let host = stream.clone_dtoh(&out).expect("download");
        host.into_iter().map(Real::to_f64).collect::<Vec<f64>>()
    };
    let refs = |f: Function| -> Vec<f64> {
        v.iter()
            .zip(&x)
            .map(|(&a, &b)| f.eval(a.to_f64(), b.to_f64()))
            .collect()
    };
    let f32_storage = std::mem::size_of::<T>() == 4;
    let values = Values {
        name: format!("spherekit GPU {}", T::NAME),
        log_i: eval(Function::LogI),
        log_k: eval(Function::LogK),
        targets: Some(if f32_storage {
            (F32_WORST, 1.0)
        } else {
            (F64_WORST, F64_MEDIAN)
        }),
        count_failures: false,
    };
    if f32_storage {
        (values, refs(Function::LogI), refs(Function::LogK))
    } else {
        (values, p.log_i.clone(), p.log_k.clone())
    }
}

/// The accuracy tables and throughput; the number of rows that miss their targets.
pub fn report(gpu: Option<(&Gpu, &Arc<CudaStream>)>, quick: bool) -> i32 {
    let p = points();
    println!(
        "== log-Bessel: accuracy against mpmath (|got - exact| / max(1, |exact|)), {} points of \
         tests/data/log_bessel (grid, half-integer orders, random, region boundaries) ==",
        p.v.len()
    );
    let mut rows = vec![cpu_values(&p)];
    let mut f32_rows = None;
    if let Some((gpu, stream)) = gpu {
        rows.push(gpu_values::<f64>(gpu, stream, &p).0);
        f32_rows = Some(gpu_values::<f32>(gpu, stream, &p));
    }
    rows.push(Values {
        name: "SciPy (committed)".into(),
        log_i: p.scipy_i.clone(),
        log_k: p.scipy_k.clone(),
        targets: None,
        count_failures: true,
    });
    let mut failed = table(&p, &rows);
    println!(
        "(fails: non-finite results where the exact value is finite, left out of SciPy's errors; \
         a spherekit failure is an infinite error)"
    );
    if let (Some((vals, ri, rk)), Some((gpu, stream))) = (f32_rows, gpu) {
        println!(
            "== log-Bessel: f32 kernels against the f64 reference at the f32-rounded inputs =="
        );
        let q = Points {
            log_i: ri,
            log_k: rk,
            scipy_i: vec![],
            scipy_k: vec![],
            ..p
        };
        failed += table(&q, &[vals]);
        throughput(gpu, stream, quick);
    } else {
        cpu_throughput(quick);
    }
    failed
}

/// Random inputs over the accuracy grid's box: log10 v in [-3, 7], log10 x in [-10, 8].
fn uniform_mix(n: usize) -> (Vec<f64>, Vec<f64>) {
    let mut rng = crate::Rand(12345);
    (0..n)
        .map(|_| {
            (
                10f64.powf(-3.0 + 10.0 * rng.next()),
                10f64.powf(-10.0 + 18.0 * rng.next()),
            )
        })
        .unzip()
}

fn cpu_throughput(quick: bool) {
    let n = if quick { 1 << 14 } else { 1 << 17 };
    let (v, x) = uniform_mix(n);
    let threads = std::thread::available_parallelism().map_or(1, |t| t.get());
    println!(
        "== log-Bessel: CPU reference throughput, f64, {n} random (v, x) over the grid's box \
         (benches/bessel.rs and scripts/bench_bessel_cpu.sh compare with SciPy) =="
    );
    for f in [Function::LogI, Function::LogK] {
        let mut out = vec![0.0; n];
        let mut time = |t: usize| {
            let start = Instant::now();
            spherekit::bessel::evaluate_cpu_threads(f, Orders::Each(&v), &x, &mut out, t)
                .expect("lengths");
            start.elapsed().as_secs_f64()
        };
        time(threads); // warm-up
        let one = time(1);
        let all = time(threads);
        println!(
            "{:<6} 1 thread {:>6.1} ns/eval   {threads} threads {:>10.3e} evals/s ({:.1}x)",
            f.name(),
            one * 1e9 / n as f64,
            n as f64 / all,
            one / all
        );
    }
}

fn throughput(gpu: &Gpu, stream: &Arc<CudaStream>, quick: bool) {
    let n: usize = if quick { 1 << 24 } else { 1 << 26 };
    let (v, x) = uniform_mix(n);
    let copy = crate::copy_bandwidth(stream, n * 8);
    println!(
        "== log-Bessel: GPU throughput, {n} random (v, x) over the grid's box, per-element orders =="
    );
    println!("device-to-device copy: {copy:.0} GB/s (bytes read + written)");
    println!(
        "{:<6} {:<5} {:>10} {:>12} {:>14}",
        "op", "dtype", "µs", "evals/s", "% memory bound"
    );
    gpu_rate::<f64>(gpu, stream, &v, &x, copy);
    gpu_rate::<f32>(gpu, stream, &v, &x, copy);
}

fn gpu_rate<T: Real>(gpu: &Gpu, stream: &Arc<CudaStream>, v: &[f64], x: &[f64], copy_gbps: f64) {
    let (dv, dx) = (upload::<T>(stream, v), upload::<T>(stream, x));
    let mut out = stream.alloc_zeros::<T>(x.len()).expect("alloc");
    for f in [Function::LogI, Function::LogK] {
        let us = crate::time_us(stream, 10, || launch(gpu, stream, f, &dv, &dx, &mut out));
        let evals = x.len() as f64 / (us * 1e-6);
        let bytes = 3.0 * std::mem::size_of::<T>() as f64;
        println!(
            "{:<6} {:<5} {us:>10.1} {evals:>12.3e} {:>13.1}%",
            f.name(),
            T::NAME,
            100.0 * evals * bytes / (copy_gbps * 1e9)
        );
    }
}

/// `v` rounded to T, on the device.
fn upload<T: Real>(stream: &Arc<CudaStream>, v: &[f64]) -> CudaSlice<T> {
    let host: Vec<T> = v.iter().map(|&a| T::from_f64(a)).collect();
    stream.clone_htod(&host).expect("upload")
}

/// out[i] = f(v[i], x[i]) on `stream`, per-element orders.
fn launch<T: Real>(
    gpu: &Gpu,
    stream: &Arc<CudaStream>,
    f: Function,
    v: &CudaSlice<T>,
    x: &CudaSlice<T>,
    out: &mut CudaSlice<T>,
) {
    evaluate(
        gpu,
        stream,
        f,
        DeviceOrders::Each(&v.slice(..)),
        &x.slice(..),
        &mut out.slice_mut(..),
    )
    .expect("launch");
}
