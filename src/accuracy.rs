//! Error metrics shared by the `spherekit report` program and the tests, so that a number
//! printed in a report means what the tests assert.

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
        let norm = w
            .iter()
            .filter(|v| v.is_finite())
            .map(|v| v * v)
            .sum::<f64>()
            .sqrt();
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
    fn nan_on_one_side_is_a_mismatch() {
        let e = segment_errors(&[f64::NAN, 1.0, f64::NAN], &[f64::NAN, f64::NAN, 2.0], 3);
        assert_eq!(e.nan_mismatches, 2);
        let same_inf = segment_errors(&[f64::INFINITY], &[f64::INFINITY], 1);
        assert_eq!(same_inf.max, 0.0);
    }
}
