//! The committed log-Bessel golden values (tests/data/log_bessel/, made by
//! scripts/golden/log_bessel.py from mpmath at 60 and 80 digits) and the error metrics and
//! statistics that the tests and `spherekit report` measure with. Shared by tests/bessel.rs and
//! src/bin/spherekit.rs through `#[path]`, so the files are embedded, not read at run time.
#![allow(dead_code)]

/// One golden file: named columns of numbers.
pub struct Golden {
    pub name: &'static str,
    pub columns: Vec<String>,
    pub rows: Vec<Vec<f64>>,
}

macro_rules! data {
    ($file:literal) => {
        include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/data/log_bessel/",
            $file
        ))
    };
}

impl Golden {
    /// Parses a tab-separated file: `#` comments, a header line of column names, then numbers
    /// (`inf`, `-inf`, `nan` allowed). A non-numeric field (a file name) reads as NaN.
    pub fn parse(name: &'static str, text: &str) -> Golden {
        let mut lines = text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty());
        let columns: Vec<String> = lines
            .next()
            .expect("a header line")
            .split('\t')
            .map(str::to_string)
            .collect();
        let rows = lines
            .map(|l| {
                l.split('\t')
                    .map(|f| match f {
                        "inf" | "+inf" => f64::INFINITY,
                        "-inf" => f64::NEG_INFINITY,
                        _ => f.parse::<f64>().unwrap_or(f64::NAN),
                    })
                    .collect::<Vec<f64>>()
            })
            .collect();
        Golden {
            name,
            columns,
            rows,
        }
    }

    /// The index of a column.
    pub fn col(&self, name: &str) -> usize {
        self.columns
            .iter()
            .position(|c| c == name)
            .unwrap_or_else(|| panic!("{}: no column {name}", self.name))
    }

    /// One column's values.
    pub fn column(&self, name: &str) -> Vec<f64> {
        let i = self.col(name);
        self.rows.iter().map(|r| r[i]).collect()
    }
}

/// log I, log K and the derived values at the grid, half-integer (vMF orders), random and
/// region-boundary points.
pub fn bessel_files() -> Vec<Golden> {
    vec![
        Golden::parse("grid", data!("grid.tsv")),
        Golden::parse("half_integer", data!("half_integer.tsv")),
        Golden::parse("random", data!("random.tsv")),
        Golden::parse("extra", data!("extra.tsv")),
    ]
}

/// log C_d(κ), A_d(κ), 1 − A_d(κ) and A′_d(κ) for vMF dimensions d.
pub fn vmf_file() -> Golden {
    Golden::parse("vmf", data!("vmf.tsv"))
}

/// SciPy's log(ive(v, x)) + x and log(kve(v, x)) − x at the points of [`bessel_files`], in the
/// same order (scripts/golden/scipy_values.py).
pub fn scipy_file() -> Golden {
    Golden::parse("scipy", data!("scipy.tsv"))
}

/// The error metric of a log value: |got − want| / max(1, |want|). Equal infinities are exact.
pub fn mixed(got: f64, want: f64) -> f64 {
    if got == want {
        return 0.0;
    }
    (got - want).abs() / want.abs().max(1.0)
}

/// Relative error. Equal values (zeros, infinities) are exact.
pub fn relative(got: f64, want: f64) -> f64 {
    if got == want {
        return 0.0;
    }
    (got - want).abs() / want.abs()
}

/// Relative error for f32 results, which cannot be more precise than f32's smallest normal.
pub fn relative_f32(got: f64, want: f64) -> f64 {
    if got == want {
        return 0.0;
    }
    (got - want).abs() / want.abs().max(f64::from(f32::MIN_POSITIVE))
}

/// Error statistics of one quantity; a NaN error counts as infinite.
#[derive(Default)]
pub struct Stats {
    pub errors: Vec<f64>,
    /// (error, v, x) of the worst point.
    pub worst: (f64, f64, f64),
}

impl Stats {
    pub fn add(&mut self, err: f64, v: f64, x: f64) {
        let err = if err.is_nan() { f64::INFINITY } else { err };
        self.errors.push(err);
        if err > self.worst.0 {
            self.worst = (err, v, x);
        }
    }

    /// The median error (0 for no points).
    pub fn median(&mut self) -> f64 {
        self.errors.sort_by(f64::total_cmp);
        self.errors
            .get(self.errors.len() / 2)
            .copied()
            .unwrap_or(0.0)
    }
}
