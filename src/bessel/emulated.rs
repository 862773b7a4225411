//! The log-Bessel kernels on the CPU emulator (feature `emulator`), for tests.

use super::{Function, Orders, Real, check_lengths, gpu::plan};
use crate::emulator::{Emulator, Output, Staged};
use crate::error::Result;
use crate::launch::Launcher;

impl Function {
    /// [`super::gpu::evaluate`] on the CPU emulator, with host slices.
    pub fn evaluate_emulated<T: Real>(
        self,
        emu: &Emulator,
        orders: Orders<'_, T>,
        x: &[T],
        out: &mut [T],
    ) -> Result<()> {
        check_lengths(&orders, x.len(), out.len())?;
        let mut staged = Staged::new();
        let xa = staged.vector("x", x);
        let oa = match orders {
            Orders::Each(v) => Ok(staged.vector("orders", v)),
            Orders::All(v) => Err(Real::to_f64(v)),
        };
        let (o, outa) = Output::vector("out", out);
        if let Some(launch) = plan::<T>(self, emu, oa, &xa, &outa)? {
            emu.launch(&launch)?;
        }
        staged.check()?;
        o.finish_vector(out)
    }
}
