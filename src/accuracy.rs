//! Error metrics shared by the `spherekit report` program and the tests, so that a number
//! printed in a report means what the tests assert.

use crate::element::DType;

/// The spacing of the storage type's numbers at |v| (one ulp of `dtype` there), subnormals
/// included: below the smallest normal the spacing stays at the subnormal quantum (2^-24 for
/// f16, 2^-133 for bf16, 2^-149 for f32), so an output that small is only as exact as that.
/// Zero and non-finite `v` give the subnormal quantum.
pub fn storage_ulp(dtype: DType, v: f64) -> f64 {
    let (mant_bits, min_exp) = match dtype {
        DType::F32 => (23, -126),
        DType::F16 => (10, -14),
        DType::BF16 => (7, -126),
    };
    let a = v.abs();
    let e = if a > 0.0 && a.is_finite() {
        a.log2().floor() as i32
    } else {
        min_exp
    };
    2f64.powi(e.max(min_exp) - mant_bits)
}

/// The Euclidean norm of the finite entries of `v` (a reference segment's scale: entries that
/// are NaN or infinite by definition do not set it).
pub fn finite_norm(v: &[f64]) -> f64 {
    v.iter()
        .filter(|v| v.is_finite())
        .map(|v| v * v)
        .sum::<f64>()
        .sqrt()
}

/// How far `got` is from `want` against the tolerance the tests use for a stored output:
/// the largest |got − want| / (ulps · ulp_T(want) + rel · ‖want_seg‖) over the entries (segments
/// of `seg` entries, ulp_T from [`storage_ulp`]). At most 1 means every entry is within
/// tolerance. Entries equal on both sides (NaN with NaN, the same infinity) count as 0, a NaN
/// on one side only as infinity.
///
/// # Panics
/// If the lengths differ or `seg` is 0 (a caller bug, not a data condition).
pub fn tolerance_ratio(
    got: &[f64],
    want: &[f64],
    seg: usize,
    dtype: DType,
    ulps: f64,
    rel: f64,
) -> f64 {
    assert_eq!(got.len(), want.len(), "tolerance_ratio: lengths differ");
    assert!(seg > 0, "tolerance_ratio: zero segment length");
    let mut worst: f64 = 0.0;
    for (g, w) in got.chunks(seg).zip(want.chunks(seg)) {
        let norm = finite_norm(w);
        for (&a, &b) in g.iter().zip(w) {
            let ratio = if a == b || (a.is_nan() && b.is_nan()) {
                0.0
            } else if a.is_nan() || b.is_nan() || a.is_infinite() || b.is_infinite() {
                f64::INFINITY
            } else {
                (a - b).abs() / (ulps * storage_ulp(dtype, b) + rel * norm)
            };
            worst = worst.max(ratio);
        }
    }
    worst
}

/// Errors of a computed array against a reference, measured per segment (a row, or a group of
/// channels) relative to the reference segment's Euclidean norm: |got − want| / ‖want_seg‖.
/// This is the scale on which a normalized output's accuracy matters (its norm is the unit),
/// and it does not blow up at entries that are near zero.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SegmentErrors {
    /// Largest error.
    pub max: f64,
    /// Median over all entries.
    pub median: f64,
    /// Entries where one side is NaN and the other is not (a failure whatever the tolerance).
    pub nan_mismatches: usize,
}

/// Measures `got` against `want` in segments of `seg` entries. Entries where both are NaN, or
/// both the same infinity, count as exact; segments of zero norm use an absolute error.
///
/// # Panics
/// If the lengths differ or `seg` is 0 (a caller bug, not a data condition).
pub fn segment_errors(got: &[f64], want: &[f64], seg: usize) -> SegmentErrors {
    assert_eq!(got.len(), want.len(), "segment_errors: lengths differ");
    assert!(seg > 0, "segment_errors: zero segment length");
    let mut errors = Vec::with_capacity(got.len());
    let mut nan_mismatches = 0;
    for (g, w) in got.chunks(seg).zip(want.chunks(seg)) {
        let norm = finite_norm(w);
        let scale = if norm > 0.0 { norm } else { 1.0 };
        for (&a, &b) in g.iter().zip(w) {
            if a.is_nan() || b.is_nan() {
                if a.is_nan() != b.is_nan() {
                    nan_mismatches += 1;
                }
                errors.push(0.0);
            } else if a == b {
                errors.push(0.0);
            } else {
                errors.push((a - b).abs() / scale);
            }
        }
    }
    errors.sort_by(f64::total_cmp);
    SegmentErrors {
        max: errors.last().copied().unwrap_or(0.0),
        median: errors.get(errors.len() / 2).copied().unwrap_or(0.0),
        nan_mismatches,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_relative_to_the_segment_norm() {
        let want = [3.0, 4.0, 0.0, 0.0];
        let got = [3.0, 4.5, 0.0, 1e-3];
        let e = segment_errors(&got, &want, 2);
        assert_eq!(e.max, 0.1); // 0.5 / 5 in the first segment
        assert_eq!(e.nan_mismatches, 0);
        // A zero-norm segment measures absolute error.
        assert_eq!(segment_errors(&[1e-3], &[0.0], 1).max, 1e-3);
    }

    #[test]
    fn storage_ulp_is_the_spacing_of_each_type() {
        for (dtype, bits) in [(DType::F32, 23), (DType::F16, 10), (DType::BF16, 7)] {
            assert_eq!(storage_ulp(dtype, 1.0), 2f64.powi(-bits));
            assert_eq!(storage_ulp(dtype, -1.5), 2f64.powi(-bits));
            assert_eq!(storage_ulp(dtype, 0.75), 2f64.powi(-bits - 1));
        }
        // Below the smallest normal the spacing is the subnormal quantum.
        assert_eq!(storage_ulp(DType::F16, 1e-7), 2f64.powi(-24));
        assert_eq!(storage_ulp(DType::F16, 0.0), 2f64.powi(-24));
        assert_eq!(storage_ulp(DType::F32, 1e-40), 2f64.powi(-149));
        assert_eq!(storage_ulp(DType::BF16, 1e-40), 2f64.powi(-133));
        // The f16 value 3 * 2^-24 (a subnormal) and its neighbours are one quantum apart.
        let q = 2f64.powi(-24);
        assert_eq!(half::f16::from_f64(3.4 * q).to_f64(), 3.0 * q);
    }

    #[test]
    fn tolerance_ratio_measures_against_ulp_plus_relative() {
        // Segment norm 5; tolerance 1 ulp(f16 at 4.0) = 2^-8 plus 1e-3 * 5.
        let want = [3.0, 4.0];
        let tol = 2f64.powi(-8) + 5e-3;
        let r = tolerance_ratio(&[3.0, 4.0 + tol / 2.0], &want, 2, DType::F16, 1.0, 1e-3);
        assert!((r - 0.5).abs() < 1e-12, "{r}");
        assert_eq!(tolerance_ratio(&want, &want, 2, DType::F16, 1.0, 1e-3), 0.0);
        let nan = tolerance_ratio(&[f64::NAN, 4.0], &want, 2, DType::F16, 1.0, 1e-3);
        assert!(nan.is_infinite());
        // A subnormal f16 output one quantum off a tiny reference passes with one ulp.
        let q = 2f64.powi(-24);
        let r = tolerance_ratio(&[3.0 * q], &[2.5 * q], 1, DType::F16, 1.0, 0.0);
        assert_eq!(r, 0.5);
    }

    #[test]
    fn nan_on_one_side_is_a_mismatch() {
        let e = segment_errors(&[f64::NAN, 1.0, f64::NAN], &[f64::NAN, f64::NAN, 2.0], 3);
        assert_eq!(e.nan_mismatches, 2);
        let same_inf = segment_errors(&[f64::INFINITY], &[f64::INFINITY], 1);
        assert_eq!(same_inf.max, 0.0);
    }
}
