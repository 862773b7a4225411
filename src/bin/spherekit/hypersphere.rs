//! `spherekit report`, hypersphere family: GPU accuracy against the f64 reference and throughput
//! against the copy bandwidth, or without a GPU the reference's own identities and speed.

use std::sync::Arc;
use std::time::Instant;

use cudarc::driver::CudaStream;
use half::{bf16, f16};
use spherekit::accuracy::{segment_errors, tolerance_ratio};
use spherekit::hypersphere::{Axis, Eps, LerpNormalize, Normalize, Projection, cpu};
use spherekit::{DType, Element, Gpu, Rows, RowsMut, Workspace};

use crate::{Rand, time_us};

/// GPU accuracy (every dtype) and throughput; the number of failed accuracy checks.
pub fn report(gpu: &Gpu, stream: &Arc<CudaStream>, quick: bool) -> i32 {
    let mut failures = 0;
    println!("== hypersphere: accuracy, GPU against the f64 reference (error / segment norm) ==");
    println!(
        "{:<22} {:<5} {:<13} {:>9} {:>9} {:>9}  status",
        "op", "dtype", "shape", "max", "median", "max/tol"
    );
    println!(
        "(max, median: error / segment norm; max/tol: worst error over the tests' tolerance, \
         ulp_T(want) + 1e-6 (forward) or 1e-5 (backward) x segment norm, no ulp term for f32)"
    );
    failures += accuracy::<f32>(gpu, stream, quick);
    failures += accuracy::<f16>(gpu, stream, quick);
    failures += accuracy::<bf16>(gpu, stream, quick);
    println!("== hypersphere: throughput (bytes read + written per second) ==");
    throughput(gpu, stream, quick);
    failures
}

/// The tolerance of the tests: |got − want| <= ulps · ulp_T(want) + rel · ‖want_seg‖, with f32
/// arithmetic's rel (1e-6 forward, 1e-5 backward) and one ulp of the storage type for 16-bit
/// outputs (none for f32). The ulp term is per entry, subnormals included: an f16 gradient
/// whose entries are near 1e-7 is only as exact as f16's 6e-8 spacing there, however exact the
/// arithmetic before the rounding.
fn tolerance(dtype: DType, backward: bool) -> (f64, f64) {
    let rel = if backward { 1e-5 } else { 1e-6 };
    let ulps = if dtype == DType::F32 { 0.0 } else { 1.0 };
    (ulps, rel)
}

#[allow(clippy::too_many_arguments)]
fn row_of(
    status: &mut i32,
    op: &str,
    dtype: DType,
    shape: &str,
    got: &[f64],
    want: &[f64],
    seg: usize,
    backward: bool,
) {
    let e = segment_errors(got, want, seg);
    let (ulps, rel) = tolerance(dtype, backward);
    let ratio = tolerance_ratio(got, want, seg, dtype, ulps, rel);
    let ok = ratio <= 1.0 && e.nan_mismatches == 0;
    if !ok {
        *status += 1;
    }
    println!(
        "{op:<22} {:<5} {shape:<13} {:>9.2e} {:>9.2e} {ratio:>9.2}  {}",
        dtype.name(),
        e.max,
        e.median,
        if ok { "ok" } else { "FAILED" }
    );
}

fn up<T: Element>(stream: &Arc<CudaStream>, v: &[f64]) -> cudarc::driver::CudaSlice<T> {
    let host: Vec<T> = v.iter().map(|&x| T::from_f64(x)).collect();
    stream.clone_htod(&host).expect("upload")
}

fn down<T: Element>(stream: &Arc<CudaStream>, d: &cudarc::driver::CudaSlice<T>) -> Vec<f64> {
    let host = stream.clone_dtoh(d).expect("download");
    host.iter().map(|x| x.to_f64()).collect()
}

/// Rounds to the storage type and back, so references see exactly what the GPU sees.
fn stored<T: Element>(v: &[f64]) -> Vec<f64> {
    v.iter().map(|&x| T::from_f64(x).to_f64()).collect()
}

fn accuracy<T: Element>(gpu: &Gpu, stream: &Arc<CudaStream>, quick: bool) -> i32 {
    let dtype = T::DTYPE;
    let mut rng = Rand(0x5eed ^ dtype.size() as u64);
    let mut failures = 0;
    let shapes: &[(usize, usize, Option<usize>)] = if quick {
        &[(256, 512, None), (512, 256, Some(64))]
    } else {
        &[
            (256, 512, None),
            (512, 256, Some(64)),
            (64, 4097, None),
            (16, 20_000, None),
        ]
    };
    for &(rows, cols, group) in shapes {
        let shape = format!(
            "{rows}x{cols}{}",
            group.map_or(String::new(), |g| format!("/{g}"))
        );
        eprint!("\r  accuracy {} {shape} ...          ", dtype.name());
        let x = stored::<T>(&rng.matrix(rows, cols));
        let dy = stored::<T>(&rng.matrix(rows, cols));
        let s = stored::<T>(&(0..cols).map(|_| 0.5 + rng.next()).collect::<Vec<_>>());
        let mut op = Normalize::new(Eps::Clamp(1e-8));
        op.group = group;
        let seg = group.unwrap_or(cols);
        let (dx_, ds_, ddy) = (
            up::<T>(stream, &x),
            up::<T>(stream, &s),
            up::<T>(stream, &dy),
        );
        let mut dout = up::<T>(stream, &vec![f64::NAN; rows * cols]);
        let mut dds = up::<T>(stream, &vec![f64::NAN; cols]);
        let xr = Rows::new(dx_.slice(..), rows, cols).unwrap();
        let dyr = Rows::new(ddy.slice(..), rows, cols).unwrap();
        op.forward(
            gpu,
            stream,
            &xr,
            Some(&ds_.slice(..)),
            &mut RowsMut::new(dout.slice_mut(..), rows, cols).unwrap(),
        )
        .expect("normalize");
        let want = cpu::normalize_forward(&op, rows, cols, &x, Some(&s)).unwrap();
        row_of(
            &mut failures,
            "normalize",
            dtype,
            &shape,
            &down(stream, &dout),
            &want,
            seg,
            false,
        );
        let mut ws = Workspace::new();
        op.backward(
            gpu,
            stream,
            &xr,
            Some(&ds_.slice(..)),
            &dyr,
            &mut RowsMut::new(dout.slice_mut(..), rows, cols).unwrap(),
            Some(&mut dds.slice_mut(..)),
            &mut ws,
        )
        .expect("normalize backward");
        let want = cpu::normalize_backward(&op, rows, cols, &x, Some(&s), &dy).unwrap();
        row_of(
            &mut failures,
            "normalize backward dx",
            dtype,
            &shape,
            &down(stream, &dout),
            &want.dx,
            seg,
            true,
        );
        let dsw = want.dscale.unwrap();
        let got_ds = down(stream, &dds);
        row_of(
            &mut failures,
            "normalize backward ds",
            dtype,
            &shape,
            &got_ds,
            &dsw,
            cols,
            true,
        );

        if group.is_none() {
            let u = stored::<T>(&rng.matrix(rows, cols));
            let p = stored::<T>(&(0..cols).map(|_| rng.normal()).collect::<Vec<_>>());
            let lerp = LerpNormalize::ngpt(0.05);
            let (du_, dp_) = (up::<T>(stream, &u), up::<T>(stream, &p));
            let ur = Rows::new(du_.slice(..), rows, cols).unwrap();
            lerp.forward(
                gpu,
                stream,
                &xr,
                &ur,
                &dp_.slice(..),
                &mut RowsMut::new(dout.slice_mut(..), rows, cols).unwrap(),
            )
            .expect("lerp");
            let want = cpu::lerp_normalize_forward(&lerp, rows, cols, &x, &u, &p).unwrap();
            row_of(
                &mut failures,
                "lerp_normalize",
                dtype,
                &shape,
                &down(stream, &dout),
                &want,
                cols,
                false,
            );
            let mut dout2 = up::<T>(stream, &vec![f64::NAN; rows * cols]);
            let mut ddp = up::<T>(stream, &vec![f64::NAN; cols]);
            lerp.backward(
                gpu,
                stream,
                &xr,
                &ur,
                &dp_.slice(..),
                &dyr,
                &mut RowsMut::new(dout.slice_mut(..), rows, cols).unwrap(),
                &mut RowsMut::new(dout2.slice_mut(..), rows, cols).unwrap(),
                Some(&mut ddp.slice_mut(..)),
                &mut ws,
            )
            .expect("lerp backward");
            let want = cpu::lerp_normalize_backward(&lerp, rows, cols, &x, &u, &p, &dy).unwrap();
            row_of(
                &mut failures,
                "lerp backward dh",
                dtype,
                &shape,
                &down(stream, &dout),
                &want.dh,
                cols,
                true,
            );
            row_of(
                &mut failures,
                "lerp backward du",
                dtype,
                &shape,
                &down(stream, &dout2),
                &want.du,
                cols,
                true,
            );
            row_of(
                &mut failures,
                "lerp backward dp",
                dtype,
                &shape,
                &down(stream, &ddp),
                &want.dp,
                cols,
                true,
            );

            let mut w = up::<T>(stream, &x);
            for axis in [Axis::Rows, Axis::Cols] {
                let proj = Projection::new(Eps::None);
                stream
                    .memcpy_htod(
                        &x.iter().map(|&v| T::from_f64(v)).collect::<Vec<_>>(),
                        &mut w,
                    )
                    .unwrap();
                proj.project(
                    gpu,
                    stream,
                    &mut RowsMut::new(w.slice_mut(..), rows, cols).unwrap(),
                    axis,
                )
                .expect("project");
                let mut want = x.clone();
                cpu::project(&proj, rows, cols, &mut want, axis).unwrap();
                let got = down(stream, &w);
                let (g, wv, seg) = match axis {
                    Axis::Rows => (got, want, cols),
                    Axis::Cols => (
                        transpose(&got, rows, cols),
                        transpose(&want, rows, cols),
                        rows,
                    ),
                };
                row_of(
                    &mut failures,
                    &format!("project {axis:?}"),
                    dtype,
                    &shape,
                    &g,
                    &wv,
                    seg,
                    false,
                );
            }
        }
    }
    eprint!("\r                                                  \r");
    failures
}

fn transpose(v: &[f64], rows: usize, cols: usize) -> Vec<f64> {
    (0..cols)
        .flat_map(|c| (0..rows).map(move |r| v[r * cols + c]))
        .collect()
}

fn throughput(gpu: &Gpu, stream: &Arc<CudaStream>, quick: bool) {
    let n: usize = if quick { 1 << 25 } else { 1 << 27 }; // bf16 elements per tensor
    let mut rng = Rand(99);
    let host: Vec<bf16> = (0..n).map(|_| bf16::from_f64(rng.normal())).collect();
    let a = stream.clone_htod(&host).unwrap();
    let mut b = stream.alloc_zeros::<bf16>(n).unwrap();
    let copy_us = time_us(stream, 10, || stream.memcpy_dtod(&a, &mut b).unwrap());
    let copy = 4.0 * n as f64 / copy_us / 1e3;
    println!("device-to-device copy: {copy:.0} GB/s");
    println!(
        "{:<16} {:<5} {:<14} {:>9} {:>8} {:>8}",
        "op", "dtype", "shape", "µs", "GB/s", "% copy"
    );
    let mut c = stream.alloc_zeros::<bf16>(n).unwrap();
    let p = stream.clone_htod(&host[..4096]).unwrap();
    let mut ws = Workspace::new();
    for cols in [128usize, 4096] {
        let rows = n / cols;
        let ar = Rows::new(a.slice(..), rows, cols).unwrap();
        let norm = Normalize::new(Eps::Clamp(1e-12));
        let lerp = LerpNormalize::ngpt(0.05);
        let cases: [(&str, usize); 4] = [
            ("normalize", 2),
            ("normalize bwd", 3),
            ("lerp_normalize", 3),
            ("lerp bwd", 5),
        ];
        for (name, tensors) in cases {
            eprint!("\r  timing {name} {rows}x{cols} ...      ");
            let us = time_us(stream, 10, || {
                let mut br = RowsMut::new(b.slice_mut(..), rows, cols).unwrap();
                match name {
                    "normalize" => norm.forward(gpu, stream, &ar, None, &mut br),
                    "normalize bwd" => {
                        norm.backward(gpu, stream, &ar, None, &ar, &mut br, None, &mut ws)
                    }
                    "lerp_normalize" => {
                        lerp.forward(gpu, stream, &ar, &ar, &p.slice(..cols), &mut br)
                    }
                    _ => {
                        let mut cr = RowsMut::new(c.slice_mut(..), rows, cols).unwrap();
                        lerp.backward(
                            gpu,
                            stream,
                            &ar,
                            &ar,
                            &p.slice(..cols),
                            &ar,
                            &mut br,
                            &mut cr,
                            None,
                            &mut ws,
                        )
                    }
                }
                .expect("launch")
            });
            let gbps = (tensors * rows * cols * 2) as f64 / us / 1e3;
            eprint!("\r                                              \r");
            println!(
                "{name:<16} bf16  {:<14} {us:>9.1} {gbps:>8.0} {:>7.0}%",
                format!("{rows}x{cols}"),
                100.0 * gbps / copy
            );
        }
    }
}

/// No GPU: the f64 references' own checks (exact identities and finite differences) and speed.
pub fn cpu_report(quick: bool) -> i32 {
    println!("== hypersphere: CPU reference (no GPU: the kernels were not run) ==");
    let mut rng = Rand(7);
    let (rows, cols) = if quick { (64, 512) } else { (512, 1024) };
    let x = rng.matrix(rows, cols);
    let dy = rng.matrix(rows, cols);
    let mut failures = 0;
    for eps in [
        Eps::None,
        Eps::Clamp(1e-8),
        Eps::Add(1e-6),
        Eps::Inside(1e-12),
    ] {
        let op = Normalize::new(eps);
        let t = Instant::now();
        let y = cpu::normalize_forward(&op, rows, cols, &x, None).unwrap();
        let secs = t.elapsed().as_secs_f64();
        // Identity: every row of N(x) has norm ||x|| r(||x||) (1 for None).
        let worst_norm = y
            .chunks(cols)
            .zip(x.chunks(cols))
            .map(|(yr, xr)| {
                let n = cpu::norm2(xr);
                let want = match eps {
                    Eps::None => 1.0,
                    Eps::Clamp(e) => n / n.max(f64::from(e)),
                    Eps::Add(e) => n / (n + f64::from(e)),
                    Eps::Inside(e) => n / (n * n + f64::from(e)).sqrt(),
                };
                (cpu::norm2(yr) - want).abs()
            })
            .fold(0.0f64, f64::max);
        // Finite differences of L = <dy, N(x)> on a few rows.
        let grads = cpu::normalize_backward(&op, rows, cols, &x, None, &dy).unwrap();
        let mut worst_fd: f64 = 0.0;
        for row in 0..4.min(rows) {
            let xr = &x[row * cols..(row + 1) * cols];
            let dyr = &dy[row * cols..(row + 1) * cols];
            let loss = |v: &[f64]| {
                let y = cpu::normalize_forward(&op, 1, cols, v, None).unwrap();
                y.iter().zip(dyr).map(|(a, b)| a * b).sum::<f64>()
            };
            let h = 1e-6 * cpu::norm2(xr);
            let gnorm = cpu::norm2(&grads.dx[row * cols..(row + 1) * cols]);
            for c in (0..cols).step_by(cols / 16) {
                let (mut xp, mut xm) = (xr.to_vec(), xr.to_vec());
                xp[c] += h;
                xm[c] -= h;
                let fd = (loss(&xp) - loss(&xm)) / (2.0 * h);
                worst_fd = worst_fd.max((fd - grads.dx[row * cols + c]).abs() / gnorm);
            }
        }
        let ok = worst_norm < 1e-13 && worst_fd < 1e-6;
        failures += i32::from(!ok);
        println!(
            "normalize {:<18} norm identity {worst_norm:.1e}  backward vs finite differences {worst_fd:.1e}  \
             {:.0} M elements/s  {}",
            format!("{eps:?}"),
            (rows * cols) as f64 / secs / 1e6,
            if ok { "ok" } else { "FAILED" }
        );
    }
    let p: Vec<f64> = (0..cols).map(|_| rng.normal()).collect();
    let t = Instant::now();
    let y =
        cpu::lerp_normalize_forward(&LerpNormalize::ngpt(0.05), rows, cols, &x, &dy, &p).unwrap();
    let secs = t.elapsed().as_secs_f64();
    let worst = y
        .chunks(cols)
        .map(|r| (cpu::norm2(r) - 1.0).abs())
        .fold(0.0f64, f64::max);
    let ok = worst < 1e-13;
    failures += i32::from(!ok);
    println!(
        "lerp_normalize (nGPT)        unit rows {worst:.1e}  {:.0} M elements/s  {}",
        (rows * cols) as f64 / secs / 1e6,
        if ok { "ok" } else { "FAILED" }
    );
    i32::from(failures > 0)
}
