//! The Gram kernels on the CPU emulator (feature `emulator`), for tests.

use super::gpu::{Tables, plan};
use super::{DenseBatch, DeviceBound, Iterations, Precision, Storage};
use crate::emulator::{Emulator, Guarded};
use crate::error::Result;
use crate::launch::{Launcher, VecArg};

impl DenseBatch {
    /// [`super::gpu::dense_bounds`] on the CPU emulator, with host slices: `out` gets one
    /// [`DeviceBound`] per matrix.
    pub fn bounds_emulated<T: Storage>(
        &self,
        emu: &Emulator,
        w: &[T],
        out: &mut [DeviceBound],
        precision: Precision,
        iterations: Iterations,
    ) -> Result<()> {
        let wg = Guarded::new("w", w);
        let mg = Guarded::new("matrices", &self.matrices);
        let rg = Guarded::new("order", &self.order);
        let og = Guarded::<DeviceBound>::poisoned("out", out.len());
        let arg = |addr, len| VecArg { addr, len };
        let tables = Tables {
            matrices: mg.addr(),
            order: rg.addr(),
        };
        if let Some(launch) = plan::<T>(
            emu,
            self,
            tables,
            &arg(wg.addr(), w.len()),
            &arg(og.addr(), out.len()),
            precision,
            iterations,
        )? {
            emu.launch(&launch)?;
        }
        wg.check_unchanged(w)?;
        mg.check_unchanged(&self.matrices)?;
        rg.check_unchanged(&self.order)?;
        og.copy_out(out)
    }
}
