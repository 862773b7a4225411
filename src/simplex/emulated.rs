//! The simplex-random-feature kernels on the CPU emulator (feature `emulator`), for tests.

use super::FeatureMap;
use super::gpu::{ProjectionArg, plan_features};
use crate::element::Element;
use crate::emulator::{Emulator, HostRows, HostRowsMut, Output, Staged};
use crate::error::{Error, Result};
use crate::launch::Launcher;

impl FeatureMap {
    /// [`FeatureMap::features`] on the CPU emulator: `w` is W (m x d, f32, row-major).
    pub fn features_emulated<T: Element>(
        &self,
        emu: &Emulator,
        w: &[f32],
        features: usize,
        x: &HostRows<'_, T>,
        out: &mut HostRowsMut<'_, T>,
        shift: &mut [f32],
    ) -> Result<()> {
        let mut staged_x = Staged::new();
        let xa = staged_x.rows("x", x);
        if features == 0 || w.len() != features * xa.cols {
            return Err(Error::shape(format!(
                "W has {} elements, not {features} x {}",
                w.len(),
                xa.cols
            )));
        }
        let mut staged_w = Staged::new();
        let wa = staged_w.vector("w", w);
        let wa = ProjectionArg {
            addr: wa.addr,
            features,
            dim: xa.cols,
        };
        let (oo, oa) = Output::rows("out", out);
        let (so, sa) = Output::vector("shift", shift);
        for launch in plan_features::<T>(self, emu, &wa, &xa, &oa, &sa)? {
            emu.launch(&launch)?;
        }
        staged_x.check()?;
        staged_w.check()?;
        oo.finish_rows(out)?;
        so.finish_vector(shift)
    }
}
