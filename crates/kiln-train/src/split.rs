//! Deterministic train/validation/test splits.

use serde::Serialize;

use crate::TrainError;

/// Fractions of the rows for training, validation and test.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct SplitSpec {
    pub train: f64,
    pub valid: f64,
    pub test: f64,
}

impl Default for SplitSpec {
    fn default() -> Self {
        Self {
            train: 0.8,
            valid: 0.0,
            test: 0.2,
        }
    }
}

impl SplitSpec {
    /// `0.8/0.2` (train/test) or `0.7/0.15/0.15` (train/validation/test); fractions sum to 1.
    pub fn parse(text: &str) -> Result<Self, TrainError> {
        let bad = |why: &str| {
            TrainError::Input(format!(
                "Invalid --split `{text}`: {why}; expected e.g. 0.8/0.2 or 0.7/0.15/0.15"
            ))
        };
        let parts: Vec<f64> = text
            .split('/')
            .map(|p| p.trim().parse::<f64>().map_err(|_| bad("not a number")))
            .collect::<Result<_, _>>()?;
        let spec = match parts.as_slice() {
            [train, test] => Self {
                train: *train,
                valid: 0.0,
                test: *test,
            },
            [train, valid, test] => Self {
                train: *train,
                valid: *valid,
                test: *test,
            },
            _ => return Err(bad("give two or three fractions")),
        };
        if [spec.train, spec.valid, spec.test]
            .iter()
            .any(|f| !(0.0..=1.0).contains(f))
            || spec.train <= 0.0
        {
            return Err(bad("fractions must be in [0, 1] and train > 0"));
        }
        if ((spec.train + spec.valid + spec.test) - 1.0).abs() > 1e-6 {
            return Err(bad("fractions must sum to 1"));
        }
        Ok(spec)
    }

    pub fn describe(&self) -> String {
        if self.valid > 0.0 {
            format!("{}/{}/{}", self.train, self.valid, self.test)
        } else {
            format!("{}/{}", self.train, self.test)
        }
    }
}

/// SplitMix64: a small, fast, seedable generator (deterministic across platforms).
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        #[allow(clippy::cast_possible_truncation)]
        let r = ((u128::from(self.next()) * n as u128) >> 64) as usize;
        r
    }
}

fn shuffle(items: &mut [usize], rng: &mut SplitMix64) {
    for i in (1..items.len()).rev() {
        let j = rng.below(i + 1);
        items.swap(i, j);
    }
}

/// Row indices of each part. With `strata` (class per row) every part keeps the class
/// proportions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SplitRows {
    pub train: Vec<usize>,
    pub valid: Vec<usize>,
    pub test: Vec<usize>,
}

#[allow(
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss
)]
fn cut(rows: &[usize], spec: &SplitSpec, out: &mut SplitRows) {
    let n = rows.len();
    let n_test = (n as f64 * spec.test).round() as usize;
    let n_valid = ((n as f64 * spec.valid).round() as usize).min(n - n_test.min(n));
    let n_test = n_test.min(n);
    out.test.extend_from_slice(&rows[..n_test]);
    out.valid.extend_from_slice(&rows[n_test..n_test + n_valid]);
    out.train.extend_from_slice(&rows[n_test + n_valid..]);
}

/// Split `n` rows with `seed`, optionally stratified by `strata`.
pub fn split_rows(n: usize, spec: &SplitSpec, seed: u64, strata: Option<&[f64]>) -> SplitRows {
    let mut rng = SplitMix64(seed);
    let mut out = SplitRows {
        train: Vec::new(),
        valid: Vec::new(),
        test: Vec::new(),
    };
    match strata {
        Some(labels) => {
            let mut classes: Vec<u64> = labels.iter().map(|v| v.to_bits()).collect();
            classes.sort_unstable();
            classes.dedup();
            for class in classes {
                let mut rows: Vec<usize> =
                    (0..n).filter(|&i| labels[i].to_bits() == class).collect();
                shuffle(&mut rows, &mut rng);
                cut(&rows, spec, &mut out);
            }
            out.train.sort_unstable();
            out.valid.sort_unstable();
            out.test.sort_unstable();
        }
        None => {
            let mut rows: Vec<usize> = (0..n).collect();
            shuffle(&mut rows, &mut rng);
            cut(&rows, spec, &mut out);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_splits_deterministically() {
        let spec = SplitSpec::parse("0.7/0.15/0.15").unwrap();
        let a = split_rows(1000, &spec, 7, None);
        let b = split_rows(1000, &spec, 7, None);
        assert_eq!(a, b);
        assert_eq!(
            (a.train.len(), a.valid.len(), a.test.len()),
            (700, 150, 150)
        );
        let c = split_rows(1000, &spec, 8, None);
        assert_ne!(a, c);
        assert!(SplitSpec::parse("0.5/0.2").is_err());
        assert!(SplitSpec::parse("a/b").is_err());
    }

    #[test]
    fn stratified_keeps_proportions() {
        let labels: Vec<f64> = (0..1000)
            .map(|i| if i % 10 == 0 { 1.0 } else { 0.0 })
            .collect();
        let s = split_rows(1000, &SplitSpec::default(), 1, Some(&labels));
        let pos = s.test.iter().filter(|&&i| labels[i] == 1.0).count();
        assert_eq!(s.test.len(), 200);
        assert_eq!(pos, 20);
    }
}
