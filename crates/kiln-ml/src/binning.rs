//! Feature binning for the histogram learners: [`FeatureBins`] maps raw values to small bin
//! indices, [`BinnedData`] holds the binned training matrix.
//!
//! Numeric features get up to `max_bins` quantile bins (LightGBM's greedy, distinct-value
//! aware algorithm on a deterministic sample of rows) plus one bin for missing values.
//! Categorical features get one bin per category seen in training (most frequent first; the
//! rarest ones share an "other" bin when there are more than `max_bins`) plus a missing bin.
//! The missing bin is always the last bin of a feature.
//!
//! Bins are stored row-major (`bins[row * n_features + feature]`, one byte each): histogram
//! building gathers the rows of a leaf, and row-major reads one cache line per row instead of
//! one per feature. A column-major copy serves the partitions, which read one feature.

use rayon::prelude::*;

use crate::dataset::{Dataset, FeatureKind, MISSING_CODE};
use crate::rng::Rng;

/// How the non-missing bins of one feature are defined.
#[derive(Debug, Clone)]
pub(crate) enum BinKind {
    /// `upper[b]` is the inclusive upper bound of bin `b`; the last one is `+inf`.
    Numeric { upper: Vec<f64> },
    /// `code_to_bin[code]` is the bin of a category code; `bin_codes[b]` the codes in bin `b`.
    Categorical {
        code_to_bin: Vec<u8>,
        bin_codes: Vec<Vec<u32>>,
    },
}

/// The bins of one feature.
#[derive(Debug, Clone)]
pub(crate) struct FeatureBins {
    pub(crate) kind: BinKind,
    /// Number of bins including the trailing missing bin (2..=256).
    pub(crate) n_bins: usize,
}

impl FeatureBins {
    pub(crate) fn missing_bin(&self) -> usize {
        self.n_bins - 1
    }

    pub(crate) fn is_categorical(&self) -> bool {
        matches!(self.kind, BinKind::Categorical { .. })
    }

    #[inline]
    fn bin_numeric(upper: &[f64], missing: u8, x: f64) -> u8 {
        if x.is_nan() {
            missing
        } else {
            upper.partition_point(|&u| u < x) as u8
        }
    }
}

/// Bin upper bounds for sorted, non-NaN `values` (LightGBM's `GreedyFindBin`).
fn numeric_bounds(sorted: &[f64], max_bins: usize) -> Vec<f64> {
    let mut distinct: Vec<f64> = Vec::new();
    let mut counts: Vec<usize> = Vec::new();
    for &v in sorted {
        match distinct.last() {
            Some(&last) if last == v => {
                if let Some(c) = counts.last_mut() {
                    *c += 1;
                }
            }
            _ => {
                distinct.push(v);
                counts.push(1);
            }
        }
    }
    let midpoint = |a: f64, b: f64| {
        let m = a + (b - a) / 2.0;
        if m >= b || m < a {
            a
        } else {
            m
        }
    };
    let d = distinct.len();
    if d == 0 {
        return vec![f64::INFINITY];
    }
    let mut upper = Vec::new();
    if d <= max_bins {
        for i in 0..d - 1 {
            upper.push(midpoint(distinct[i], distinct[i + 1]));
        }
        upper.push(f64::INFINITY);
        return upper;
    }
    let total: usize = counts.iter().sum();
    let mut mean_bin_size = total as f64 / max_bins as f64;
    let mut rest_bins = max_bins as f64;
    let mut rest_count = total as f64;
    let big: Vec<bool> = counts.iter().map(|&c| c as f64 >= mean_bin_size).collect();
    for (i, &b) in big.iter().enumerate() {
        if b {
            rest_bins -= 1.0;
            rest_count -= counts[i] as f64;
        }
    }
    if rest_bins > 0.0 {
        mean_bin_size = rest_count / rest_bins;
    }
    let mut uppers: Vec<f64> = Vec::new();
    let mut lowers: Vec<f64> = vec![distinct[0]];
    let mut in_bin = 0usize;
    for i in 0..d - 1 {
        if !big[i] {
            rest_count -= counts[i] as f64;
        }
        in_bin += counts[i];
        let cur = in_bin as f64;
        if big[i] || cur >= mean_bin_size || (big[i + 1] && cur >= (mean_bin_size * 0.5).max(1.0)) {
            uppers.push(distinct[i]);
            lowers.push(distinct[i + 1]);
            if uppers.len() + 1 >= max_bins {
                break;
            }
            in_bin = 0;
            if !big[i] {
                rest_bins -= 1.0;
                if rest_bins > 0.0 {
                    mean_bin_size = rest_count / rest_bins;
                }
            }
        }
    }
    for i in 0..uppers.len() {
        let m = midpoint(uppers[i], lowers[i + 1]);
        if upper.last().is_none_or(|&l| l < m) {
            upper.push(m);
        }
    }
    upper.push(f64::INFINITY);
    upper
}

/// Compute the bins of every feature of `data`.
///
/// `max_bins` (2..=255) caps the non-missing bins of a feature; numeric bounds are computed
/// from at most `sample_rows` rows chosen deterministically from `seed`.
pub(crate) fn compute_bins(
    data: &Dataset,
    max_bins: usize,
    sample_rows: usize,
    seed: u64,
) -> Vec<FeatureBins> {
    let n = data.n_rows();
    let max_bins = max_bins.clamp(2, 255);
    let sample: Option<Vec<usize>> = if n > sample_rows && sample_rows > 0 {
        Some(Rng::new(seed, 0xB1_B1).sample_sorted(n, sample_rows))
    } else {
        None
    };
    data.features()
        .par_iter()
        .map(|f| match &f.kind {
            FeatureKind::Numeric(values) => {
                let mut vals: Vec<f64> = match &sample {
                    Some(s) => s
                        .iter()
                        .map(|&i| values[i])
                        .filter(|v| !v.is_nan())
                        .collect(),
                    None => values.iter().copied().filter(|v| !v.is_nan()).collect(),
                };
                vals.sort_unstable_by(f64::total_cmp);
                // -0.0 and 0.0 compare equal; normalise so distinct counting sees one value.
                for v in &mut vals {
                    if *v == 0.0 {
                        *v = 0.0;
                    }
                }
                let upper = numeric_bounds(&vals, max_bins);
                let n_bins = upper.len() + 1;
                FeatureBins {
                    kind: BinKind::Numeric { upper },
                    n_bins,
                }
            }
            FeatureKind::Categorical { codes, categories } => {
                let mut counts = vec![0usize; categories.len()];
                for &c in codes {
                    if c != MISSING_CODE {
                        if let Some(slot) = counts.get_mut(c as usize) {
                            *slot += 1;
                        }
                    }
                }
                let mut seen: Vec<u32> = (0..categories.len() as u32)
                    .filter(|&c| counts[c as usize] > 0)
                    .collect();
                // Most frequent first; ties by code, so the order is deterministic.
                seen.sort_by(|&a, &b| counts[b as usize].cmp(&counts[a as usize]).then(a.cmp(&b)));
                let own = if seen.len() <= max_bins {
                    seen.len()
                } else {
                    max_bins - 1
                };
                let mut bin_codes: Vec<Vec<u32>> = seen[..own].iter().map(|&c| vec![c]).collect();
                if seen.len() > own {
                    let mut other: Vec<u32> = seen[own..].to_vec();
                    other.sort_unstable();
                    bin_codes.push(other);
                }
                if bin_codes.is_empty() {
                    bin_codes.push(Vec::new());
                }
                let mut code_to_bin = vec![0u8; categories.len()];
                for (b, cs) in bin_codes.iter().enumerate() {
                    for &c in cs {
                        code_to_bin[c as usize] = b as u8;
                    }
                }
                let n_bins = bin_codes.len() + 1;
                FeatureBins {
                    kind: BinKind::Categorical {
                        code_to_bin,
                        bin_codes,
                    },
                    n_bins,
                }
            }
        })
        .collect()
}

/// The binned training matrix, row-major.
#[derive(Debug, Clone)]
pub(crate) struct BinnedData {
    pub(crate) n_features: usize,
    /// `bins[row * n_features + feature]` (histograms gather whole rows).
    pub(crate) bins: Vec<u8>,
    /// The same, column-major: `cols[feature * n_rows + row]` (partitions read one feature).
    pub(crate) cols: Vec<u8>,
    pub(crate) n_rows: usize,
    /// Start of each feature's bins in a flat histogram.
    pub(crate) offsets: Vec<usize>,
    /// Number of bins of each feature (including its missing bin).
    pub(crate) n_bins: Vec<usize>,
    /// Total histogram length (sum of `n_bins`).
    pub(crate) total_bins: usize,
}

impl BinnedData {
    /// Bin `data` with `bins` (computed by [`compute_bins`] on the same columns).
    pub(crate) fn new(data: &Dataset, bins: &[FeatureBins]) -> Self {
        let n = data.n_rows();
        let nf = data.features().len();
        let mut out = vec![0u8; n * nf];
        const CHUNK: usize = 8192;
        if nf > 0 {
            out.par_chunks_mut(CHUNK * nf)
                .enumerate()
                .for_each(|(ci, chunk)| {
                    let start = ci * CHUNK;
                    let rows = chunk.len() / nf;
                    for (f, (feat, fb)) in data.features().iter().zip(bins).enumerate() {
                        let missing = fb.missing_bin() as u8;
                        match (&feat.kind, &fb.kind) {
                            (FeatureKind::Numeric(values), BinKind::Numeric { upper }) => {
                                for r in 0..rows {
                                    chunk[r * nf + f] =
                                        FeatureBins::bin_numeric(upper, missing, values[start + r]);
                                }
                            }
                            (
                                FeatureKind::Categorical { codes, .. },
                                BinKind::Categorical { code_to_bin, .. },
                            ) => {
                                for r in 0..rows {
                                    let c = codes[start + r];
                                    chunk[r * nf + f] =
                                        code_to_bin.get(c as usize).copied().unwrap_or(missing);
                                }
                            }
                            // compute_bins derives the kinds from the same columns.
                            _ => {
                                for r in 0..rows {
                                    chunk[r * nf + f] = missing;
                                }
                            }
                        }
                    }
                });
        }
        let n_bins: Vec<usize> = bins.iter().map(|b| b.n_bins).collect();
        let mut offsets = Vec::with_capacity(nf);
        let mut total = 0;
        for &b in &n_bins {
            offsets.push(total);
            total += b;
        }
        let mut cols = vec![0u8; n * nf];
        cols.par_chunks_mut(n.max(1))
            .enumerate()
            .for_each(|(f, col)| {
                for (r, c) in col.iter_mut().enumerate() {
                    *c = out[r * nf + f];
                }
            });
        Self {
            n_features: nf,
            bins: out,
            cols,
            n_rows: n,
            offsets,
            n_bins,
            total_bins: total,
        }
    }

    #[inline]
    pub(crate) fn row(&self, r: usize) -> &[u8] {
        &self.bins[r * self.n_features..(r + 1) * self.n_features]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataset::Feature;

    #[test]
    fn few_distinct_values_get_one_bin_each() {
        let v: Vec<f64> = vec![1.0, 1.0, 2.0, 3.0, 3.0, 3.0];
        let up = numeric_bounds(&v, 255);
        assert_eq!(up, vec![1.5, 2.5, f64::INFINITY]);
    }

    #[test]
    fn many_values_are_capped_and_balanced() {
        let v: Vec<f64> = (0..10_000).map(|i| i as f64).collect();
        let up = numeric_bounds(&v, 16);
        assert!(up.len() <= 16, "{}", up.len());
        assert!(up.len() >= 15);
        assert!(up.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn binning_is_consistent_with_thresholds() {
        let vals = vec![0.5, f64::NAN, 3.0, -1.0, 2.0, 2.0, 7.5];
        let ds = Dataset::new(vec![
            Feature::numeric("x", vals.clone()),
            Feature::categorical(
                "c",
                vec![0, 1, 1, MISSING_CODE, 2, 2, 2],
                vec!["a".into(), "b".into(), "c".into()],
            ),
        ])
        .unwrap();
        let bins = compute_bins(&ds, 255, 1000, 0);
        let bd = BinnedData::new(&ds, &bins);
        let BinKind::Numeric { upper } = &bins[0].kind else {
            panic!()
        };
        for (r, &x) in vals.iter().enumerate() {
            let b = bd.row(r)[0] as usize;
            if x.is_nan() {
                assert_eq!(b, bins[0].missing_bin());
            } else {
                assert!(x <= upper[b]);
                assert!(b == 0 || x > upper[b - 1]);
            }
        }
        // Most frequent category (code 2) gets bin 0; missing gets the last bin.
        assert_eq!(bd.row(4)[1], 0);
        assert_eq!(bd.row(3)[1] as usize, bins[1].missing_bin());
    }
}
