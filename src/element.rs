//! Storage types the kernels accept: f32, f16 and bf16. Arithmetic is always f32 or wider;
//! these only say how values are stored and how they round.

use cudarc::driver::{DeviceRepr, ValidAsZeroBits};
use half::{bf16, f16};

/// A storage type's identity, used to pick a kernel and to describe shapes in messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DType {
    /// IEEE binary32.
    F32,
    /// IEEE binary16.
    F16,
    /// bfloat16: binary32's exponent range with an 8-bit significand.
    BF16,
}

impl DType {
    /// The name used in kernel names and reports (`f32`, `f16`, `bf16`).
    pub const fn name(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::F16 => "f16",
            DType::BF16 => "bf16",
        }
    }

    /// Bytes per element.
    pub const fn size(self) -> usize {
        match self {
            DType::F32 => 4,
            DType::F16 | DType::BF16 => 2,
        }
    }

    /// Elements per 16-byte vector access.
    pub const fn vector_width(self) -> usize {
        16 / self.size()
    }

    /// Unit roundoff u = 2^-p of the storage type (half an ulp at 1): 2^-24, 2^-11, 2^-8.
    pub const fn unit_roundoff(self) -> f64 {
        match self {
            DType::F32 => 5.960_464_477_539_063e-8,
            DType::F16 => 4.882_812_5e-4,
            DType::BF16 => 3.906_25e-3,
        }
    }

    /// All storage types, in a fixed order.
    pub const ALL: [DType; 3] = [DType::F32, DType::F16, DType::BF16];
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for f32 {}
    impl Sealed for half::f16 {}
    impl Sealed for half::bf16 {}
}

/// A storage type of the kernels: `f32`, [`half::f16`] or [`half::bf16`].
///
/// Conversions from f64 round to nearest even once (no double rounding through f32).
pub trait Element:
    DeviceRepr
    + ValidAsZeroBits
    + Copy
    + Default
    + Send
    + Sync
    + std::fmt::Debug
    + 'static
    + sealed::Sealed
{
    /// The storage type's identity.
    const DTYPE: DType;
    /// Widens exactly to f64.
    fn to_f64(self) -> f64;
    /// Rounds an f64 to this type (nearest, ties to even).
    fn from_f64(v: f64) -> Self;
}

impl Element for f32 {
    const DTYPE: DType = DType::F32;
    fn to_f64(self) -> f64 {
        f64::from(self)
    }
    fn from_f64(v: f64) -> Self {
        v as f32
    }
}

/// f64 to f32 rounding to odd: exact values stay, inexact ones land on whichever neighbour has
/// an odd last bit. Rounding that result to a format at least two bits narrower (f16, bf16)
/// to nearest-even gives the correctly rounded f64 result, without the double-rounding error
/// of going through round-to-nearest f32 (which `half`'s from_f64 makes).
fn f64_to_f32_round_odd(v: f64) -> f32 {
    let t = v as f32;
    if !t.is_finite() || f64::from(t) == v || t.to_bits() & 1 == 1 {
        return t;
    }
    // Inexact with an even last bit: step one ulp toward v (the other neighbour is odd).
    let bits = t.to_bits();
    let away_from_zero = f64::from(t).abs() < v.abs();
    f32::from_bits(if away_from_zero { bits + 1 } else { bits - 1 })
}

impl Element for f16 {
    const DTYPE: DType = DType::F16;
    fn to_f64(self) -> f64 {
        self.to_f64()
    }
    fn from_f64(v: f64) -> Self {
        f16::from_f32(f64_to_f32_round_odd(v))
    }
}

impl Element for bf16 {
    const DTYPE: DType = DType::BF16;
    fn to_f64(self) -> f64 {
        self.to_f64()
    }
    fn from_f64(v: f64) -> Self {
        bf16::from_f32(f64_to_f32_round_odd(v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_f64_rounds_once() {
        // 1 + 2^-8 + 2^-30 lies just above the midpoint of 1 and 1 + 2^-7 (bf16 neighbours);
        // rounding through f32 would land exactly on the midpoint and round down to even.
        let v = 1.0 + 2f64.powi(-8) + 2f64.powi(-30);
        assert_eq!(<bf16 as Element>::from_f64(v).to_f64(), 1.0 + 2f64.powi(-7));
        assert_eq!(
            <bf16 as Element>::from_f64(-v).to_f64(),
            -(1.0 + 2f64.powi(-7))
        );
        let w = 1.0 + 2f64.powi(-11) + 2f64.powi(-40);
        assert_eq!(<f16 as Element>::from_f64(w).to_f64(), 1.0 + 2f64.powi(-10));
        // Just below the midpoint rounds down; exact values and ties behave as nearest-even.
        let below = 1.0 + 2f64.powi(-8) - 2f64.powi(-30);
        assert_eq!(<bf16 as Element>::from_f64(below).to_f64(), 1.0);
        assert_eq!(
            <bf16 as Element>::from_f64(1.0 + 2f64.powi(-8)).to_f64(),
            1.0
        );
        assert_eq!(<bf16 as Element>::from_f64(1.5).to_f64(), 1.5);
        // Subnormal f16 results and overflow.
        assert_eq!(
            <f16 as Element>::from_f64(2f64.powi(-24) * 0.75).to_f64(),
            2f64.powi(-24)
        );
        assert!(<f16 as Element>::from_f64(1e6).to_f64().is_infinite());
        assert!(<bf16 as Element>::from_f64(f64::NAN).to_f64().is_nan());
    }

    #[test]
    fn from_f64_matches_exact_rounding_on_random_values() {
        // Against a rounding computed on the exact binary expansion: the nearest of the two
        // bf16 neighbours of v, ties to even.
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..20_000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let v = f64::from_bits((state >> 2) | 0x3ff0_0000_0000_0000) - 1.0 + 0.5; // [0.5, 1.5)
            let got = <bf16 as Element>::from_f64(v).to_f64();
            let lo = bf16::from_bits(bf16::from_f64(v).to_bits()).to_f64();
            let (a, b) = if lo <= v {
                (lo, next_bf16(lo))
            } else {
                (prev_bf16(lo), lo)
            };
            let want = if v - a < b - v
                || (v - a == b - v && bf16::from_f64(a).to_bits().is_multiple_of(2))
            {
                a
            } else {
                b
            };
            assert_eq!(got, want, "v = {v:e}");
        }
    }

    fn next_bf16(x: f64) -> f64 {
        bf16::from_bits(bf16::from_f64(x).to_bits() + 1).to_f64()
    }
    fn prev_bf16(x: f64) -> f64 {
        bf16::from_bits(bf16::from_f64(x).to_bits() - 1).to_f64()
    }

    #[test]
    fn dtype_facts() {
        assert_eq!(DType::BF16.vector_width(), 8);
        assert_eq!(DType::F32.vector_width(), 4);
        assert_eq!(DType::F16.unit_roundoff(), 2f64.powi(-11));
        assert_eq!(DType::BF16.unit_roundoff(), 2f64.powi(-8));
        assert_eq!(DType::F32.unit_roundoff(), 2f64.powi(-24));
    }
}
