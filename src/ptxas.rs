//! The resource report ptxas prints with `-v` (registers, stack, spills, shared memory of every
//! kernel and target), parsed. Shared by build.rs, which warns about any kernel using local
//! memory, and by `spherekit ptxas`. Plain std: build.rs includes this file by path.

/// What one kernel uses when compiled for one target.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct KernelResources {
    /// Entry point name.
    pub kernel: String,
    /// Target, e.g. `sm_90`.
    pub target: String,
    /// Registers per thread.
    pub registers: u32,
    /// Stack frame bytes per thread (local memory).
    pub stack_bytes: u32,
    /// Bytes of register spill stores per thread.
    pub spill_stores: u32,
    /// Bytes of register spill loads per thread.
    pub spill_loads: u32,
    /// Static shared memory bytes per block.
    pub shared_bytes: u32,
}

impl KernelResources {
    /// Whether the kernel uses local memory (a stack frame or spills): in a hot kernel, a defect.
    pub fn uses_local_memory(&self) -> bool {
        self.stack_bytes > 0 || self.spill_stores > 0 || self.spill_loads > 0
    }
}

/// The number before `unit` in a comma-separated ptxas line, e.g. "16 bytes smem" -> 16.
fn number_before(line: &str, unit: &str) -> Option<u32> {
    line.split(',')
        .find(|part| part.trim_end().ends_with(unit))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Parses a ptxas `-v` report. Lines look like:
///
/// ```text
/// ptxas info    : Compiling entry function 'sk_norm_fwd_f32_v2' for 'sm_90'
/// ptxas info    : Function properties for sk_norm_fwd_f32_v2
///     0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
/// ptxas info    : Used 96 registers, used 0 barriers, 1024 bytes smem
/// ```
///
/// "Function properties" lines of called (non-entry) functions are ignored.
pub fn parse(report: &str) -> Vec<KernelResources> {
    let mut out: Vec<KernelResources> = Vec::new();
    let mut properties_of_entry = false;
    for line in report.lines() {
        if let Some(rest) = line.split("Compiling entry function '").nth(1) {
            let kernel = rest.split('\'').next().unwrap_or_default().to_string();
            let target = rest
                .split(" for '")
                .nth(1)
                .unwrap_or_default()
                .trim_end_matches('\'')
                .to_string();
            out.push(KernelResources {
                kernel,
                target,
                ..Default::default()
            });
            properties_of_entry = false;
        } else if let Some(name) = line.split("Function properties for ").nth(1) {
            properties_of_entry = out.last().is_some_and(|k| k.kernel == name.trim());
        } else if line.trim_end().ends_with("bytes spill loads") {
            if let (true, Some(k)) = (properties_of_entry, out.last_mut()) {
                k.stack_bytes = number_before(line, "bytes stack frame").unwrap_or(0);
                k.spill_stores = number_before(line, "bytes spill stores").unwrap_or(0);
                k.spill_loads = number_before(line, "bytes spill loads").unwrap_or(0);
            }
            properties_of_entry = false;
        } else if let (Some(rest), Some(k)) = (line.split("Used ").nth(1), out.last_mut()) {
            k.registers = rest
                .split_whitespace()
                .next()
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            k.shared_bytes = number_before(line, "bytes smem").unwrap_or(0);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_entries_and_ignores_called_functions() {
        let report = "\
ptxas info    : Compiling entry function 'k1' for 'sm_90'
ptxas info    : Function properties for helper
    8 bytes stack frame, 8 bytes spill stores, 8 bytes spill loads
ptxas info    : Function properties for k1
    0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
ptxas info    : Used 96 registers, used 1 barriers, 1024 bytes smem
ptxas info    : Compiling entry function 'k2' for 'sm_80'
ptxas info    : Function properties for k2
    16 bytes stack frame, 20 bytes spill stores, 12 bytes spill loads
ptxas info    : Used 64 registers, used 0 barriers, 16 bytes cumulative stack size
";
        let k = parse(report);
        assert_eq!(k.len(), 2);
        assert_eq!(
            (k[0].kernel.as_str(), k[0].target.as_str(), k[0].registers),
            ("k1", "sm_90", 96)
        );
        assert_eq!(k[0].shared_bytes, 1024);
        assert!(!k[0].uses_local_memory());
        assert_eq!(
            (k[1].stack_bytes, k[1].spill_stores, k[1].spill_loads),
            (16, 20, 12)
        );
        assert!(k[1].uses_local_memory());
        assert_eq!(k[1].shared_bytes, 0);
    }
}
