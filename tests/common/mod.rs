//! Shared test plumbing: the GPU probe with a visible skip, seeded random inputs, host matrices
//! with strides and offsets, output poisoning and tolerances.
#![allow(dead_code)]

use std::io::Write as _;
use std::sync::{Arc, OnceLock};

use cudarc::driver::CudaStream;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use rand_distr::{Distribution, StandardNormal};
use spherekit::{DType, Element, Gpu};

/// Whether GPU tests must run (SPHEREKIT_REQUIRE_GPU=1 turns every skip into a failure).
pub fn gpu_required() -> bool {
    std::env::var("SPHEREKIT_REQUIRE_GPU").is_ok_and(|v| v == "1")
}

/// The GPU, or None after printing a visible skip line. libtest captures print!/eprint! of
/// passing tests, so the line goes straight to the process's stderr.
pub fn gpu(test: &str) -> Option<(Gpu, Arc<CudaStream>)> {
    static OPENED: OnceLock<Result<Gpu, String>> = OnceLock::new();
    match OPENED.get_or_init(|| Gpu::open(0).map_err(|e| e.to_string())) {
        Ok(gpu) => {
            let stream = gpu.context().new_stream().expect("create a stream");
            Some((gpu.clone(), stream))
        }
        Err(why) => {
            if gpu_required() {
                panic!("{test}: SPHEREKIT_REQUIRE_GPU=1 but no GPU: {why}");
            }
            let _ = writeln!(std::io::stderr(), "{test}: skipped: no CUDA device ({why})");
            None
        }
    }
}

/// A seed: SPHEREKIT_SEED if set (to reproduce a failure), else fresh each run.
pub fn seed() -> u64 {
    if let Ok(s) = std::env::var("SPHEREKIT_SEED") {
        return s.parse().expect("SPHEREKIT_SEED is a u64");
    }
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    t.as_nanos() as u64 ^ (std::process::id() as u64).rotate_left(32)
}

/// A random generator with its seed, printed in failure messages.
pub struct Rng {
    pub seed: u64,
    rng: StdRng,
}

impl Rng {
    pub fn new() -> Self {
        let seed = seed();
        Rng {
            seed,
            rng: StdRng::seed_from_u64(seed),
        }
    }
    /// A fixed seed, for tests of one particular input (ignores SPHEREKIT_SEED).
    pub fn seeded(seed: u64) -> Self {
        Rng {
            seed,
            rng: StdRng::seed_from_u64(seed),
        }
    }
    pub fn normal(&mut self) -> f64 {
        StandardNormal.sample(&mut self.rng)
    }
    pub fn uniform(&mut self, lo: f64, hi: f64) -> f64 {
        self.rng.random_range(lo..hi)
    }
    pub fn below(&mut self, n: usize) -> usize {
        self.rng.random_range(0..n)
    }
}

/// A row-major host matrix with a row stride and a leading offset (to test misalignment).
#[derive(Debug, Clone)]
pub struct Mat<T> {
    pub data: Vec<T>,
    pub rows: usize,
    pub cols: usize,
    pub stride: usize,
    pub offset: usize,
}

impl<T: Element> Mat<T> {
    /// A matrix filled with NaN (the padding between rows too), to be written by a kernel.
    pub fn poisoned(rows: usize, cols: usize, stride: usize, offset: usize) -> Self {
        let len = offset + (rows - 1) * stride + cols;
        Mat {
            data: vec![T::from_f64(f64::NAN); len],
            rows,
            cols,
            stride,
            offset,
        }
    }

    /// A matrix whose entries come from `f(row, col)`, rounded to T; padding is NaN so that a
    /// kernel reading it shows.
    pub fn from_fn(
        rows: usize,
        cols: usize,
        stride: usize,
        offset: usize,
        mut f: impl FnMut(usize, usize) -> f64,
    ) -> Self {
        let mut m = Self::poisoned(rows, cols, stride, offset);
        for r in 0..rows {
            for c in 0..cols {
                m.data[offset + r * stride + c] = T::from_f64(f(r, c));
            }
        }
        m
    }

    /// The data region the kernels see (from the offset on).
    pub fn view(&self) -> &[T] {
        &self.data[self.offset..]
    }
    pub fn view_mut(&mut self) -> &mut [T] {
        &mut self.data[self.offset..]
    }

    pub fn get(&self, r: usize, c: usize) -> T {
        self.data[self.offset + r * self.stride + c]
    }

    /// The entries as contiguous f64 (exact widening), for the references.
    pub fn to_f64(&self) -> Vec<f64> {
        let mut out = Vec::with_capacity(self.rows * self.cols);
        for r in 0..self.rows {
            for c in 0..self.cols {
                out.push(self.get(r, c).to_f64());
            }
        }
        out
    }

    /// Checks that the padding between rows (and before the offset) still holds NaN: a kernel
    /// wrote nothing outside its rows.
    pub fn padding_untouched(&self) -> bool {
        let inside = |i: usize| {
            i >= self.offset && {
                let k = i - self.offset;
                k / self.stride < self.rows && k % self.stride < self.cols
            }
        };
        self.data
            .iter()
            .enumerate()
            .all(|(i, v)| inside(i) || v.to_f64().is_nan())
    }
}

/// Rounds a vector of f64 to T.
pub fn rounded<T: Element>(v: &[f64]) -> Vec<T> {
    v.iter().map(|&x| T::from_f64(x)).collect()
}

/// Widens a vector of T to f64.
pub fn widened<T: Element>(v: &[T]) -> Vec<f64> {
    v.iter().map(|x| x.to_f64()).collect()
}

/// The spacing of the storage type's numbers at |v| (one ulp of T), including subnormals.
pub fn ulp(dtype: DType, v: f64) -> f64 {
    spherekit::accuracy::storage_ulp(dtype, v)
}

/// Largest finite value of the storage type.
pub fn max_finite(dtype: DType) -> f64 {
    match dtype {
        DType::F32 => f32::MAX as f64,
        DType::F16 => 65504.0,
        DType::BF16 => 3.3895313892515355e38,
    }
}

/// Compares `got` with `want` segment by segment (each `seg` consecutive entries of a row),
/// allowing |got - want| <= ulps * ulp_T(want) + rel * ||want_segment||. NaN must meet NaN, and
/// a reference beyond the storage type's range (max + half an ulp, by more than the tolerance)
/// must meet the infinity it rounds to; within the tolerance of that threshold either the
/// infinity or a finite value within tolerance is right.
/// Returns the worst error relative to the segment norm, or a message naming the first failure.
pub fn compare(
    what: &str,
    dtype: DType,
    got: &[f64],
    want: &[f64],
    seg: usize,
    ulps: f64,
    rel: f64,
) -> Result<f64, String> {
    let norms: Vec<f64> = want.chunks(seg).map(finite_norm).collect();
    compare_scaled(what, dtype, got, want, seg, ulps, rel, &norms)
}

/// The Euclidean norm of the finite entries.
pub fn finite_norm(v: &[f64]) -> f64 {
    spherekit::accuracy::finite_norm(v)
}

/// As [`compare`], with the magnitude of each segment given (for outputs that can cancel to
/// nearly zero, like gradients orthogonal to a row).
#[allow(clippy::too_many_arguments)]
pub fn compare_scaled(
    what: &str,
    dtype: DType,
    got: &[f64],
    want: &[f64],
    seg: usize,
    ulps: f64,
    rel: f64,
    norms: &[f64],
) -> Result<f64, String> {
    assert_eq!(got.len(), want.len(), "{what}: lengths differ");
    let mut worst: f64 = 0.0;
    // Round to nearest overflows from max + half an ulp there (ties go to infinity: the largest
    // finite value has an odd significand).
    let overflow_at = max_finite(dtype) + ulp(dtype, max_finite(dtype)) / 2.0;
    for (s, ((g, w), &norm)) in got.chunks(seg).zip(want.chunks(seg)).zip(norms).enumerate() {
        for (i, (&a, &b)) in g.iter().zip(w).enumerate() {
            if b.is_nan() || a.is_nan() {
                if !(a.is_nan() && b.is_nan()) {
                    return Err(format!(
                        "{what}: segment {s} entry {i}: got {a:e}, want {b:e}"
                    ));
                }
                continue;
            }
            if b.is_infinite() {
                if a != b {
                    return Err(format!(
                        "{what}: segment {s} entry {i}: got {a:e}, want {b:e}"
                    ));
                }
                continue;
            }
            let tol = ulps * ulp(dtype, b) + rel * norm;
            // Near the overflow threshold either side of it is within tolerance; beyond it by
            // more than the tolerance only the infinity of b's sign is right.
            if a.is_infinite() {
                if a.signum() == b.signum() && b.abs() + tol >= overflow_at {
                    continue;
                }
                return Err(format!(
                    "{what}: segment {s} entry {i}: got {a:e}, want {b:e} (tolerance {tol:e}, \
                     overflow at {overflow_at:e})"
                ));
            }
            if b.abs() - tol > overflow_at {
                return Err(format!(
                    "{what}: segment {s} entry {i}: got {a:e}, want {b:e} (overflows)"
                ));
            }
            let err = (a - b).abs();
            if err > tol {
                return Err(format!(
                    "{what}: segment {s} entry {i}: got {a:e}, want {b:e}, error {err:e} > \
                     tolerance {tol:e} (segment norm {norm:e})"
                ));
            }
            if norm > 0.0 {
                worst = worst.max(err / norm);
            }
        }
    }
    Ok(worst)
}

/// f32-level tolerance of a forward output relative to its segment norm (the 1e-6).
pub const FWD_REL: f64 = 1e-6;
/// Backward outputs chain two or three normalizations: a few f32 roundings more.
pub const BWD_REL: f64 = 1e-5;

/// One rounding of the storage type for 16-bit outputs; none for f32 (its error is in `rel`).
pub fn storage_ulps(dtype: DType) -> f64 {
    if dtype == DType::F32 { 0.0 } else { 1.0 }
}
