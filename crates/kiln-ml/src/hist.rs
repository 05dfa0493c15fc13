//! Gradient/hessian histograms ([`HistBin`]) and the split search over them
//! ([`find_best_split`]).
//!
//! A histogram holds, for every bin of every feature, the sums of gradients, hessians and
//! row counts of the rows of one leaf. Building is parallelised over fixed blocks of rows
//! whose partial histograms are added in block order, so the sums (and so the model) do not
//! depend on the number of threads.

use rayon::prelude::*;

use crate::binning::{BinnedData, FeatureBins};

/// Hint the CPU to fetch `slice[i]` into cache (never faults, even out of range).
#[inline(always)]
pub(crate) fn prefetch<T>(slice: &[T], i: usize) {
    prefetch_ptr(slice.as_ptr().wrapping_add(i));
}

/// Hint the CPU to fetch `*p` into cache (a no-op off x86-64; never faults, whatever `p`).
#[inline(always)]
pub(crate) fn prefetch_ptr<T>(p: *const T) {
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: prefetching is a hint; it never faults and reads nothing architecturally.
        #[allow(unused_unsafe)]
        unsafe {
            core::arch::x86_64::_mm_prefetch(p as *const i8, core::arch::x86_64::_MM_HINT_T0)
        };
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = p;
    }
}

/// Rows ahead to prefetch in gather loops.
pub(crate) const PREFETCH_AHEAD: usize = 48;

/// Gradient and hessian of one row, as `f32` (accumulated in `f64`).
pub(crate) type GradPair = [f32; 2];

/// Sums over the rows that fall in one bin (or one leaf).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct HistBin {
    pub(crate) g: f64,
    pub(crate) h: f64,
    pub(crate) c: f64,
}

impl HistBin {
    pub(crate) const ZERO: HistBin = HistBin::new(0.0, 0.0, 0.0);

    pub(crate) const fn new(g: f64, h: f64, c: f64) -> Self {
        HistBin { g, h, c }
    }

    #[inline(always)]
    pub(crate) fn add(&mut self, o: &HistBin) {
        self.g += o.g;
        self.h += o.h;
        self.c += o.c;
    }

    #[inline(always)]
    pub(crate) fn minus(&self, o: &HistBin) -> HistBin {
        HistBin::new(self.g - o.g, self.h - o.h, self.c - o.c)
    }
}

/// A histogram over all bins of all features, stored as two arrays so the hot update touches
/// 20 bytes per bin: gradient/hessian sums (`[f64; 2]`) and row counts (`u32`). A typical
/// histogram (a few thousand bins) then stays in L1 cache while it is built.
#[derive(Debug, Clone)]
pub(crate) struct Hist {
    gh: Vec<[f64; 2]>,
    cnt: Vec<u32>,
}

impl Hist {
    pub(crate) fn new(len: usize) -> Self {
        Hist {
            gh: vec![[0.0; 2]; len],
            cnt: vec![0; len],
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.gh.len()
    }

    #[inline]
    pub(crate) fn get(&self, b: usize) -> HistBin {
        let [g, h] = self.gh[b];
        HistBin::new(g, h, self.cnt[b] as f64)
    }

    fn zero_range(&mut self, lo: usize, hi: usize) {
        self.gh[lo..hi].fill([0.0; 2]);
        self.cnt[lo..hi].fill(0);
    }

    fn add_range(&mut self, o: &Hist, lo: usize, hi: usize) {
        for (a, b) in self.gh[lo..hi].iter_mut().zip(&o.gh[lo..hi]) {
            a[0] += b[0];
            a[1] += b[1];
        }
        for (a, b) in self.cnt[lo..hi].iter_mut().zip(&o.cnt[lo..hi]) {
            *a = a.wrapping_add(*b);
        }
    }

    fn sub_range(&mut self, o: &Hist, lo: usize, hi: usize) {
        for (a, b) in self.gh[lo..hi].iter_mut().zip(&o.gh[lo..hi]) {
            a[0] -= b[0];
            a[1] -= b[1];
        }
        for (a, b) in self.cnt[lo..hi].iter_mut().zip(&o.cnt[lo..hi]) {
            *a = a.wrapping_sub(*b);
        }
    }
}

/// Rows per block for parallel histogram building. Fixed so results do not depend on the
/// thread count.
const BLOCK: usize = 16_384;

/// Which features a histogram covers: all of them, or a sorted subset.
#[derive(Debug, Clone)]
pub(crate) enum FeatureSet {
    All,
    Some(Vec<usize>),
}

impl FeatureSet {
    pub(crate) fn to_vec(&self, n_features: usize) -> Vec<usize> {
        match self {
            FeatureSet::All => (0..n_features).collect(),
            FeatureSet::Some(v) => v.clone(),
        }
    }

    /// `(lo, hi)` histogram ranges of the covered features.
    fn ranges(&self, data: &BinnedData) -> Vec<(usize, usize)> {
        match self {
            FeatureSet::All => vec![(0, data.total_bins)],
            FeatureSet::Some(list) => list
                .iter()
                .map(|&f| (data.offsets[f], data.offsets[f] + data.n_bins[f]))
                .collect(),
        }
    }
}

/// Add the rows `rows` into `hist` (which must be zero on the features covered).
fn accumulate(
    hist: &mut Hist,
    rows: &[u32],
    data: &BinnedData,
    gh: &[GradPair],
    feats: &FeatureSet,
) {
    let nf = data.n_features;
    let bins = &data.bins;
    let (hgh, hcnt) = (&mut hist.gh[..], &mut hist.cnt[..]);
    match feats {
        FeatureSet::All => {
            let offsets = &data.offsets[..nf];
            for (i, &r) in rows.iter().enumerate() {
                if let Some(&ahead) = rows.get(i + PREFETCH_AHEAD) {
                    prefetch(bins, ahead as usize * nf);
                    prefetch(gh, ahead as usize);
                }
                let r = r as usize;
                let [g, h] = gh[r];
                let (g, h) = (g as f64, h as f64);
                let row = &bins[r * nf..r * nf + nf];
                for (&b, &off) in row.iter().zip(offsets) {
                    let k = off + b as usize;
                    let e = &mut hgh[k];
                    e[0] += g;
                    e[1] += h;
                    hcnt[k] += 1;
                }
            }
        }
        FeatureSet::Some(list) => {
            let sel: Vec<(usize, usize)> = list.iter().map(|&f| (f, data.offsets[f])).collect();
            accumulate_selected(hgh, hcnt, rows, data, gh, &sel);
        }
    }
}

/// Add `rows` into `hgh`/`hcnt` for the selected `(feature, histogram offset)` pairs only; the
/// offsets are relative to the start of the slices.
#[inline]
fn accumulate_selected(
    hgh: &mut [[f64; 2]],
    hcnt: &mut [u32],
    rows: &[u32],
    data: &BinnedData,
    gh: &[GradPair],
    sel: &[(usize, usize)],
) {
    let nf = data.n_features;
    let bins = &data.bins;
    for (i, &r) in rows.iter().enumerate() {
        if let Some(&ahead) = rows.get(i + PREFETCH_AHEAD) {
            prefetch(bins, ahead as usize * nf);
            prefetch(gh, ahead as usize);
        }
        let r = r as usize;
        let [g, h] = gh[r];
        let (g, h) = (g as f64, h as f64);
        let row = &bins[r * nf..r * nf + nf];
        for &(f, off) in sel {
            let k = off + row[f] as usize;
            let e = &mut hgh[k];
            e[0] += g;
            e[1] += h;
            hcnt[k] += 1;
        }
    }
}

/// Build the histogram of `rows` into `out` (length `data.total_bins`), covering `feats`.
/// With `parallel`, rows are split into fixed blocks built in parallel and added in order.
pub(crate) fn build(
    out: &mut Hist,
    rows: &[u32],
    data: &BinnedData,
    gh: &[GradPair],
    feats: &FeatureSet,
    parallel: bool,
) {
    let ranges = feats.ranges(data);
    for &(lo, hi) in &ranges {
        out.zero_range(lo, hi);
    }
    let list = feats.to_vec(data.n_features);
    let groups = rayon::current_num_threads().min(list.len());
    if parallel && rows.len() <= FEATURE_PARALLEL_MAX_ROWS && rows.len() >= 1024 && groups > 1 {
        build_by_features(out, rows, data, gh, &list, groups);
        return;
    }
    if !parallel || rows.len() <= BLOCK {
        accumulate(out, rows, data, gh, feats);
        return;
    }
    let total = data.total_bins;
    let parts: Vec<Hist> = rows
        .par_chunks(BLOCK)
        .map(|chunk| {
            let mut h = Hist::new(total);
            accumulate(&mut h, chunk, data, gh, feats);
            h
        })
        .collect();
    for p in &parts {
        for &(lo, hi) in &ranges {
            out.add_range(p, lo, hi);
        }
    }
}

/// Leaves up to this many rows build their histogram feature-parallel (each thread owns some
/// features and sums every row for them, in row order: no partial histograms, and the sums are
/// those of a sequential build whatever the thread count). Bigger ones use row blocks.
const FEATURE_PARALLEL_MAX_ROWS: usize = 65_536;

/// One feature group's share of a histogram: its gradient/hessian and count slices, the
/// histogram index they start at, and its features.
type FeatureGroupJob<'a> = (&'a mut [[f64; 2]], &'a mut [u32], usize, &'a [usize]);

/// Feature-parallel histogram of `rows` over the (sorted) features `list`, split into
/// `groups` contiguous groups. `out` must be zero on those features.
fn build_by_features(
    out: &mut Hist,
    rows: &[u32],
    data: &BinnedData,
    gh: &[GradPair],
    list: &[usize],
    groups: usize,
) {
    let per = list.len().div_ceil(groups);
    // Carve disjoint histogram slices, one per feature group.
    let mut jobs: Vec<FeatureGroupJob<'_>> = Vec::new();
    let (mut gh_rest, mut cnt_rest) = (&mut out.gh[..], &mut out.cnt[..]);
    let mut consumed = 0;
    for fs in list.chunks(per) {
        let (Some(&first), Some(&last)) = (fs.first(), fs.last()) else {
            continue;
        };
        let lo = data.offsets[first];
        let hi = data.offsets[last] + data.n_bins[last];
        let (_, g_tail) = std::mem::take(&mut gh_rest).split_at_mut(lo - consumed);
        let (g_mid, g_tail) = g_tail.split_at_mut(hi - lo);
        let (_, c_tail) = std::mem::take(&mut cnt_rest).split_at_mut(lo - consumed);
        let (c_mid, c_tail) = c_tail.split_at_mut(hi - lo);
        gh_rest = g_tail;
        cnt_rest = c_tail;
        consumed = hi;
        jobs.push((g_mid, c_mid, lo, fs));
    }
    jobs.into_par_iter().for_each(|(hgh, hcnt, base, fs)| {
        let sel: Vec<(usize, usize)> = fs.iter().map(|&f| (f, data.offsets[f] - base)).collect();
        accumulate_selected(hgh, hcnt, rows, data, gh, &sel);
    });
}

/// `parent -= child` on the features in `feats` (the subtraction trick).
pub(crate) fn subtract(parent: &mut Hist, child: &Hist, data: &BinnedData, feats: &FeatureSet) {
    for (lo, hi) in feats.ranges(data) {
        parent.sub_range(child, lo, hi);
    }
}

/// Constraints and regularisation of the split search.
#[derive(Debug, Clone)]
pub(crate) struct SplitParams {
    pub(crate) min_data_in_leaf: f64,
    pub(crate) min_sum_hessian: f64,
    pub(crate) lambda_l1: f64,
    pub(crate) lambda_l2: f64,
    pub(crate) min_gain_to_split: f64,
    pub(crate) max_cat_to_onehot: usize,
    pub(crate) max_cat_threshold: usize,
    pub(crate) cat_smooth: f64,
    pub(crate) cat_l2: f64,
    pub(crate) min_data_per_group: f64,
}

/// A bitset over the (at most 256) bins of one feature.
pub(crate) type BinSet = [u64; 4];

#[inline(always)]
pub(crate) fn binset_has(s: &BinSet, b: usize) -> bool {
    (s[b >> 6] >> (b & 63)) & 1 == 1
}

#[inline(always)]
fn binset_set(s: &mut BinSet, b: usize) {
    s[b >> 6] |= 1 << (b & 63);
}

/// The best split of a leaf.
#[derive(Debug, Clone)]
pub(crate) struct SplitCandidate {
    pub(crate) feature: usize,
    pub(crate) gain: f64,
    pub(crate) left: HistBin,
    pub(crate) right: HistBin,
    /// Bins of `feature` that go left (the missing bin included when missing goes left).
    pub(crate) left_bins: BinSet,
    /// For numeric splits: bins `<= threshold_bin` go left.
    pub(crate) threshold_bin: usize,
    pub(crate) default_left: bool,
}

#[inline(always)]
fn threshold_l1(g: f64, l1: f64) -> f64 {
    if l1 <= 0.0 {
        g
    } else {
        g.signum() * (g.abs() - l1).max(0.0)
    }
}

/// The objective reduction of a leaf with these sums: `T(G)^2 / (H + l2)`.
#[inline(always)]
pub(crate) fn leaf_gain(g: f64, h: f64, l1: f64, l2: f64) -> f64 {
    let t = threshold_l1(g, l1);
    t * t / (h + l2)
}

/// The output of a leaf with these sums: `-T(G) / (H + l2)`.
#[inline]
pub(crate) fn leaf_output(g: f64, h: f64, l1: f64, l2: f64) -> f64 {
    let d = h + l2;
    if d <= 0.0 {
        0.0
    } else {
        -threshold_l1(g, l1) / d
    }
}

struct Best {
    gain: f64,
    cand: Option<SplitCandidate>,
}

impl Best {
    fn offer(&mut self, gain: f64, make: impl FnOnce() -> SplitCandidate) {
        if gain > self.gain {
            self.gain = gain;
            self.cand = Some(make());
        }
    }
}

/// The best split over `feats` of a leaf with histogram `hist` and sums `total`, or `None`
/// when no split satisfies the constraints and improves the objective.
pub(crate) fn find_best_split(
    hist: &Hist,
    data: &BinnedData,
    fbins: &[FeatureBins],
    feats: &[usize],
    total: HistBin,
    p: &SplitParams,
) -> Option<SplitCandidate> {
    if total.c < 2.0 * p.min_data_in_leaf || total.h < 2.0 * p.min_sum_hessian {
        return None;
    }
    let mut best = Best {
        gain: f64::NEG_INFINITY,
        cand: None,
    };
    let mut h: Vec<HistBin> = Vec::with_capacity(256);
    for &f in feats {
        let off = data.offsets[f];
        h.clear();
        h.extend((off..off + data.n_bins[f]).map(|b| hist.get(b)));
        if fbins[f].is_categorical() {
            categorical_split(f, &h, total, p, &mut best);
        } else {
            numeric_split(f, &h, total, p, &mut best);
        }
    }
    best.cand
}

#[inline(always)]
fn fits(s: &HistBin, p: &SplitParams) -> bool {
    s.c >= p.min_data_in_leaf && s.h >= p.min_sum_hessian
}

/// The smallest gain worth splitting for: `min_gain_to_split`, and a relative epsilon so that
/// rounding noise never splits a pure leaf.
#[inline(always)]
fn min_gain(parent: f64, p: &SplitParams) -> f64 {
    p.min_gain_to_split.max(0.0) + 1e-12 * parent.abs().max(1e-300)
}

fn numeric_split(f: usize, h: &[HistBin], total: HistBin, p: &SplitParams, best: &mut Best) {
    let nb = h.len();
    let n_real = nb - 1;
    let miss = h[n_real];
    let parent = leaf_gain(total.g, total.h, p.lambda_l1, p.lambda_l2);
    let shift = parent + min_gain(parent, p);
    // Pass 1: missing values go right. `t = n_real - 1` splits "non-missing | missing".
    let mut left = HistBin::ZERO;
    let mut best_t: Option<(usize, f64, HistBin)> = None;
    for (t, bin) in h[..n_real].iter().enumerate() {
        if bin.c == 0.0 {
            continue;
        }
        left.add(bin);
        if !fits(&left, p) {
            continue;
        }
        let right = total.minus(&left);
        if !fits(&right, p) {
            break;
        }
        let gain = leaf_gain(left.g, left.h, p.lambda_l1, p.lambda_l2)
            + leaf_gain(right.g, right.h, p.lambda_l1, p.lambda_l2);
        if gain > shift && best_t.is_none_or(|(_, bg, _)| gain > bg) {
            best_t = Some((t, gain, left));
        }
    }
    let mut best_dl = false;
    // Pass 2: missing values go left.
    if miss.c > 0.0 {
        let mut left = miss;
        for (t, bin) in h[..n_real.saturating_sub(1)].iter().enumerate() {
            if bin.c == 0.0 {
                continue;
            }
            left.add(bin);
            if !fits(&left, p) {
                continue;
            }
            let right = total.minus(&left);
            if !fits(&right, p) {
                break;
            }
            let gain = leaf_gain(left.g, left.h, p.lambda_l1, p.lambda_l2)
                + leaf_gain(right.g, right.h, p.lambda_l1, p.lambda_l2);
            if gain > shift && best_t.is_none_or(|(_, bg, _)| gain > bg) {
                best_t = Some((t, gain, left));
                best_dl = true;
            }
        }
    }
    let Some((t, gain, left)) = best_t else {
        return;
    };
    let right = total.minus(&left);
    // With no missing values in this leaf, missing values follow the bigger child.
    let default_left = if miss.c > 0.0 {
        best_dl
    } else {
        left.c >= right.c
    };
    best.offer(gain - parent, || {
        let mut left_bins = [0u64; 4];
        for b in 0..=t {
            binset_set(&mut left_bins, b);
        }
        if default_left {
            binset_set(&mut left_bins, n_real);
        }
        SplitCandidate {
            feature: f,
            gain: gain - parent,
            left,
            right,
            left_bins,
            threshold_bin: t,
            default_left,
        }
    });
}

fn categorical_split(f: usize, h: &[HistBin], total: HistBin, p: &SplitParams, best: &mut Best) {
    let nb = h.len();
    let missing_bin = nb - 1;
    let used: Vec<usize> = (0..nb).filter(|&b| h[b].c > 0.0).collect();
    if used.len() < 2 {
        return;
    }
    let make = |set: &[usize], left: HistBin, gain: f64| {
        let mut left_bins = [0u64; 4];
        for &b in set {
            binset_set(&mut left_bins, b);
        }
        let right = total.minus(&left);
        let default_left = if h[missing_bin].c > 0.0 {
            binset_has(&left_bins, missing_bin)
        } else {
            // No missing values here: they follow the bigger child.
            left.c >= right.c
        };
        if default_left {
            binset_set(&mut left_bins, missing_bin);
        }
        SplitCandidate {
            feature: f,
            gain,
            left,
            right,
            left_bins,
            threshold_bin: 0,
            default_left,
        }
    };
    if used.len() <= p.max_cat_to_onehot {
        // One category against the rest.
        let parent = leaf_gain(total.g, total.h, p.lambda_l1, p.lambda_l2);
        let shift = parent + min_gain(parent, p);
        for &b in &used {
            let left = h[b];
            let right = total.minus(&left);
            if !fits(&left, p) || !fits(&right, p) {
                continue;
            }
            let gain = leaf_gain(left.g, left.h, p.lambda_l1, p.lambda_l2)
                + leaf_gain(right.g, right.h, p.lambda_l1, p.lambda_l2);
            if gain > shift {
                best.offer(gain - parent, || make(&[b], left, gain - parent));
            }
        }
        return;
    }
    // Many categories: order them by gradient/hessian ratio and scan prefixes from both ends.
    let l2 = p.lambda_l2 + p.cat_l2;
    let parent = leaf_gain(total.g, total.h, p.lambda_l1, l2);
    let shift = parent + min_gain(parent, p);
    let mut sorted: Vec<usize> = used
        .iter()
        .copied()
        .filter(|&b| h[b].c >= p.cat_smooth)
        .collect();
    if sorted.is_empty() {
        return;
    }
    let ctr = |b: usize| h[b].g / (h[b].h + p.cat_smooth);
    sorted.sort_by(|&a, &b| ctr(a).total_cmp(&ctr(b)).then(a.cmp(&b)));
    let max_num = p.max_cat_threshold.min(used.len().div_ceil(2)).max(1);
    let mut best_local: Option<(f64, bool, usize, HistBin)> = None;
    for dir in [false, true] {
        let mut left = HistBin::ZERO;
        let mut group = 0.0;
        for i in 0..sorted.len().min(max_num) {
            let b = if dir {
                sorted[sorted.len() - 1 - i]
            } else {
                sorted[i]
            };
            left.add(&h[b]);
            group += h[b].c;
            if !fits(&left, p) {
                continue;
            }
            let right = total.minus(&left);
            if !fits(&right, p) {
                break;
            }
            if group < p.min_data_per_group {
                continue;
            }
            group = 0.0;
            let gain = leaf_gain(left.g, left.h, p.lambda_l1, l2)
                + leaf_gain(right.g, right.h, p.lambda_l1, l2);
            if gain > shift && best_local.is_none_or(|(bg, ..)| gain > bg) {
                best_local = Some((gain, dir, i, left));
            }
        }
    }
    if let Some((gain, dir, i, left)) = best_local {
        let set: Vec<usize> = if dir {
            sorted[sorted.len() - 1 - i..].to_vec()
        } else {
            sorted[..=i].to_vec()
        };
        best.offer(gain - parent, || make(&set, left, gain - parent));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params() -> SplitParams {
        SplitParams {
            min_data_in_leaf: 1.0,
            min_sum_hessian: 0.0,
            lambda_l1: 0.0,
            lambda_l2: 0.0,
            min_gain_to_split: 0.0,
            max_cat_to_onehot: 4,
            max_cat_threshold: 32,
            cat_smooth: 1.0,
            cat_l2: 0.0,
            min_data_per_group: 1.0,
        }
    }

    fn sum(h: &[HistBin]) -> HistBin {
        let mut t = HistBin::ZERO;
        for b in h {
            t.add(b);
        }
        t
    }

    #[test]
    fn numeric_split_finds_the_step_and_missing_direction() {
        // Bins 0,1 have negative gradients, 2,3 positive; missing behaves like bins 0,1.
        let h = vec![
            HistBin::new(-5.0, 5.0, 5.0),
            HistBin::new(-5.0, 5.0, 5.0),
            HistBin::new(5.0, 5.0, 5.0),
            HistBin::new(5.0, 5.0, 5.0),
            HistBin::new(-3.0, 3.0, 3.0),
        ];
        let mut best = Best {
            gain: f64::NEG_INFINITY,
            cand: None,
        };
        numeric_split(0, &h, sum(&h), &params(), &mut best);
        let c = best.cand.unwrap();
        assert_eq!(c.threshold_bin, 1);
        assert!(c.default_left);
        assert_eq!(c.left.c, 13.0);
    }

    #[test]
    fn categorical_split_groups_similar_categories() {
        let mut h: Vec<HistBin> = (0..8)
            .map(|i| {
                let g = if i % 2 == 0 { -4.0 } else { 4.0 };
                HistBin::new(g, 4.0, 4.0)
            })
            .collect();
        h.push(HistBin::ZERO); // missing bin
        let mut best = Best {
            gain: f64::NEG_INFINITY,
            cand: None,
        };
        categorical_split(0, &h, sum(&h), &params(), &mut best);
        let c = best.cand.unwrap();
        let left: Vec<usize> = (0..8).filter(|&b| binset_has(&c.left_bins, b)).collect();
        assert!(
            left == vec![0, 2, 4, 6] || left == vec![1, 3, 5, 7],
            "{left:?}"
        );
    }
}

/// Micro-benchmark of histogram building (`cargo test -p kiln-ml --release --lib hist_kernel
/// -- --ignored --nocapture`); timed in on-CPU thread time so a busy machine matters less.
#[cfg(test)]
mod bench {
    use super::*;
    use crate::rng::Rng;

    fn data(n: usize) -> (BinnedData, Vec<GradPair>) {
        // Cardinalities like the churn benchmark's features.
        let card = [72usize, 255, 255, 12, 255, 255, 5, 73, 4, 5];
        let nf = card.len();
        let mut rng = Rng::new(1, 2);
        let mut bins = vec![0u8; n * nf];
        for r in 0..n {
            for f in 0..nf {
                bins[r * nf + f] = rng.below(card[f]) as u8;
            }
        }
        let n_bins: Vec<usize> = card.iter().map(|c| c + 1).collect();
        let mut offsets = Vec::new();
        let mut t = 0;
        for &b in &n_bins {
            offsets.push(t);
            t += b;
        }
        let gh = (0..n).map(|i| [(i % 7) as f32 * 0.1 - 0.3, 0.25]).collect();
        (
            BinnedData {
                n_features: nf,
                bins,
                cols: Vec::new(),
                n_rows: n,
                offsets,
                n_bins,
                total_bins: t,
            },
            gh,
        )
    }

    fn thread_cpu_ns() -> f64 {
        std::fs::read_to_string("/proc/thread-self/schedstat")
            .ok()
            .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()))
            .unwrap_or(f64::NAN)
    }

    #[test]
    #[ignore]
    fn hist_kernel() {
        let n = 800_000;
        let (d, gh) = data(n);
        let all: Vec<u32> = (0..n as u32).collect();
        let sparse: Vec<u32> = Rng::new(3, 4)
            .sample_sorted(n, n / 4)
            .into_iter()
            .map(|i| i as u32)
            .collect();
        let mut h = Hist::new(d.total_bins);
        for (name, rows) in [("dense", &all), ("sparse 1/4", &sparse)] {
            let mut best = f64::INFINITY;
            for _ in 0..5 {
                let t = thread_cpu_ns();
                for _ in 0..20 {
                    build(&mut h, rows, &d, &gh, &FeatureSet::All, false);
                }
                best = best.min((thread_cpu_ns() - t) / 20.0);
            }
            eprintln!("{name:<12} {:.2} ns/row", best / rows.len() as f64);
        }
    }
}
