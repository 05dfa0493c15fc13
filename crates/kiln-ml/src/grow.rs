//! The histogram tree learner shared by the GBDT and the random forest ([`grow`]).
//!
//! Rows are kept in one index array; every leaf owns a contiguous range of it, split by a
//! stable partition so each leaf's rows stay in ascending order (cache-friendly gathers).
//! Two modes:
//! - *best-first with subtraction* (GBDT): the leaf with the largest gain is split next, up
//!   to `num_leaves`; only the smaller child's histogram is built, the larger one is the
//!   parent's minus it.
//! - *depth-first, per-node features* (random forest): each node samples its candidate
//!   features and builds a histogram over just those; no histograms are kept between nodes.

use rayon::prelude::*;

use crate::binning::{BinKind, BinnedData, FeatureBins};
use crate::hist::{
    self, binset_has, prefetch, FeatureSet, GradPair, Hist, HistBin, SplitCandidate, SplitParams,
    PREFETCH_AHEAD,
};
use crate::rng::Rng;
use crate::tree::{Node, Tree};

/// Growth settings.
#[derive(Debug, Clone)]
pub(crate) struct GrowParams {
    pub(crate) split: SplitParams,
    /// Maximum number of leaves (`usize::MAX`: unlimited).
    pub(crate) num_leaves: usize,
    pub(crate) max_depth: Option<usize>,
    /// Random-forest mode: depth-first, each node samples `features_per_node` features.
    pub(crate) features_per_node: Option<usize>,
    /// Parallelise histogram building and partitioning over row blocks.
    pub(crate) parallel: bool,
}

/// A split node of a tree being grown.
#[derive(Debug, Clone)]
pub(crate) struct GrownNode {
    pub(crate) split: SplitCandidate,
    pub(crate) left: i32,
    pub(crate) right: i32,
    pub(crate) count: f64,
}

/// A leaf of a tree being grown: its rows are `idx[start..end]` of the workspace.
#[derive(Debug, Clone)]
pub(crate) struct GrownLeaf {
    pub(crate) start: usize,
    pub(crate) end: usize,
    pub(crate) sum: HistBin,
    depth: usize,
    parent: Option<(usize, bool)>,
}

/// The result of [`grow`].
#[derive(Debug, Clone)]
pub(crate) struct GrownTree {
    pub(crate) nodes: Vec<GrownNode>,
    pub(crate) leaves: Vec<GrownLeaf>,
}

impl GrownTree {
    /// The leaf a binned training row falls in.
    pub(crate) fn leaf_of_binned(&self, row: &[u8]) -> usize {
        if self.nodes.is_empty() {
            return 0;
        }
        let mut i = 0usize;
        loop {
            let n = &self.nodes[i];
            let b = row[n.split.feature] as usize;
            let c = if binset_has(&n.split.left_bins, b) {
                n.left
            } else {
                n.right
            };
            if c < 0 {
                return !c as usize;
            }
            i = c as usize;
        }
    }

    /// Convert to a prediction [`Tree`] on raw values, with the given leaf outputs.
    pub(crate) fn to_tree(&self, fbins: &[FeatureBins], leaf_values: Vec<f64>) -> Tree {
        let mut nodes = Vec::with_capacity(self.nodes.len());
        let mut cat_words: Vec<u32> = Vec::new();
        for n in &self.nodes {
            let s = &n.split;
            let fb = &fbins[s.feature];
            let mut node = Node {
                threshold: 0.0,
                feature: s.feature as u32,
                left: n.left,
                right: n.right,
                cat_start: 0,
                cat_len: 0,
                default_left: s.default_left,
                categorical: false,
            };
            match &fb.kind {
                BinKind::Numeric { upper } => {
                    node.threshold = upper.get(s.threshold_bin).copied().unwrap_or(f64::INFINITY);
                }
                BinKind::Categorical { bin_codes, .. } => {
                    let mut codes: Vec<u32> = Vec::new();
                    for (b, cs) in bin_codes.iter().enumerate() {
                        if binset_has(&s.left_bins, b) {
                            codes.extend_from_slice(cs);
                        }
                    }
                    let words = codes
                        .iter()
                        .map(|&c| (c >> 5) as usize + 1)
                        .max()
                        .unwrap_or(0);
                    let start = cat_words.len();
                    cat_words.resize(start + words, 0);
                    for c in codes {
                        cat_words[start + (c >> 5) as usize] |= 1 << (c & 31);
                    }
                    node.categorical = true;
                    node.cat_start = start as u32;
                    node.cat_len = words as u32;
                }
            }
            nodes.push(node);
        }
        Tree {
            nodes,
            leaf_values,
            cat_words,
            split_gain: self.nodes.iter().map(|n| n.split.gain).collect(),
            node_count: self.nodes.iter().map(|n| n.count).collect(),
            leaf_count: self.leaves.iter().map(|l| l.sum.c).collect(),
        }
    }
}

/// Reusable buffers of the learner.
#[derive(Debug, Default)]
pub(crate) struct Workspace {
    /// Row indices; `idx[..n]` are the rows of the current tree.
    pub(crate) idx: Vec<u32>,
    scratch: Vec<u32>,
    pool: Vec<Hist>,
}

impl Workspace {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    fn take_hist(&mut self, len: usize) -> Hist {
        match self.pool.pop() {
            Some(h) if h.len() == len => h,
            _ => Hist::new(len),
        }
    }

    fn give_hist(&mut self, h: Hist) {
        self.pool.push(h);
    }
}

/// Rows per parallel partition block (any value gives the same, stable, partition).
const PART_BLOCK: usize = 8_192;

/// Rows per block when summing gradients (fixed: it sets the floating-point summation order).
const SUM_BLOCK: usize = 65_536;

/// Stable partition of `idx` by `table[bin of feature f]`; returns the number going left.
fn partition(
    idx: &mut [u32],
    scratch: &mut [u32],
    data: &BinnedData,
    f: usize,
    table: &[u8; 256],
    parallel: bool,
) -> usize {
    let col = &data.cols[f * data.n_rows..(f + 1) * data.n_rows];
    let block = |idx: &mut [u32], scratch: &mut [u32]| -> usize {
        let mut nl = 0usize;
        let mut nr = 0usize;
        for i in 0..idx.len() {
            if let Some(&ahead) = idx.get(i + 4 * PREFETCH_AHEAD) {
                prefetch(col, ahead as usize);
            }
            let r = idx[i];
            let go = table[col[r as usize] as usize] as usize;
            idx[nl] = r;
            scratch[nr] = r;
            nl += go;
            nr += 1 - go;
        }
        nl
    };
    let n = idx.len();
    let scratch = &mut scratch[..n];
    if !parallel || n <= 2 * PART_BLOCK {
        let nl = block(idx, scratch);
        idx[nl..].copy_from_slice(&scratch[..n - nl]);
        return nl;
    }
    let lefts: Vec<usize> = idx
        .par_chunks_mut(PART_BLOCK)
        .zip(scratch.par_chunks_mut(PART_BLOCK))
        .map(|(i, s)| block(i, s))
        .collect();
    let mut pos = 0;
    for (b, &nl) in lefts.iter().enumerate() {
        let bs = b * PART_BLOCK;
        idx.copy_within(bs..bs + nl, pos);
        pos += nl;
    }
    let total_left = pos;
    for (b, &nl) in lefts.iter().enumerate() {
        let bs = b * PART_BLOCK;
        let len = PART_BLOCK.min(n - bs);
        let nr = len - nl;
        idx[pos..pos + nr].copy_from_slice(&scratch[bs..bs + nr]);
        pos += nr;
    }
    total_left
}

/// Sum of the gradients of `rows` (fixed-block order when parallel).
fn sum_rows(rows: &[u32], gh: &[GradPair], parallel: bool) -> HistBin {
    let one = |rows: &[u32]| {
        let mut s = HistBin::ZERO;
        for &r in rows {
            let [g, h] = gh[r as usize];
            s.g += g as f64;
            s.h += h as f64;
        }
        s.c = rows.len() as f64;
        s
    };
    if !parallel {
        return one(rows);
    }
    let parts: Vec<HistBin> = rows.par_chunks(SUM_BLOCK).map(one).collect();
    let mut s = HistBin::ZERO;
    for p in &parts {
        s.add(p);
    }
    s
}

struct Pending {
    leaf: usize,
    split: SplitCandidate,
    hist: Option<Hist>,
}

/// Grow one tree on the rows `ws.idx[..n_rows]` with per-row gradients `gh`, considering the
/// features `feats`. `rng` drives per-node feature sampling (random-forest mode).
#[allow(clippy::too_many_arguments)]
pub(crate) fn grow(
    ws: &mut Workspace,
    n_rows: usize,
    data: &BinnedData,
    fbins: &[FeatureBins],
    gh: &[GradPair],
    feats: &FeatureSet,
    p: &GrowParams,
    rng: &mut Rng,
) -> GrownTree {
    if ws.scratch.len() < n_rows {
        ws.scratch.resize(n_rows, 0);
    }
    let total_bins = data.total_bins;
    let feat_list = feats.to_vec(data.n_features);
    let rf_mode = p.features_per_node.is_some();
    let sum = sum_rows(&ws.idx[..n_rows], gh, p.parallel);
    let mut tree = GrownTree {
        nodes: Vec::new(),
        leaves: vec![GrownLeaf {
            start: 0,
            end: n_rows,
            sum,
            depth: 0,
            parent: None,
        }],
    };
    let mut pending: Vec<Pending> = Vec::new();
    let can_split = |l: &GrownLeaf| {
        p.max_depth.is_none_or(|d| l.depth < d)
            && l.sum.c >= 2.0 * p.split.min_data_in_leaf
            && l.sum.h >= 2.0 * p.split.min_sum_hessian
            && l.end - l.start >= 2
    };

    // Evaluate the root.
    if can_split(&tree.leaves[0]) {
        if rf_mode {
            if let Some(s) = rf_evaluate(ws, &tree.leaves[0], data, fbins, gh, &feat_list, p, rng) {
                pending.push(Pending {
                    leaf: 0,
                    split: s,
                    hist: None,
                });
            }
        } else {
            let mut h = ws.take_hist(total_bins);
            hist::build(&mut h, &ws.idx[..n_rows], data, gh, feats, p.parallel);
            match hist::find_best_split(&h, data, fbins, &feat_list, sum, &p.split) {
                Some(s) => pending.push(Pending {
                    leaf: 0,
                    split: s,
                    hist: Some(h),
                }),
                None => ws.give_hist(h),
            }
        }
    }

    while tree.leaves.len() < p.num_leaves && !pending.is_empty() {
        let pick = if rf_mode {
            pending.len() - 1
        } else {
            // Largest gain; ties go to the lowest leaf index.
            let mut bi = 0;
            for (i, c) in pending.iter().enumerate() {
                let b = &pending[bi];
                if c.split.gain > b.split.gain || (c.split.gain == b.split.gain && c.leaf < b.leaf)
                {
                    bi = i;
                }
            }
            bi
        };
        let Pending {
            leaf: l,
            split,
            hist: parent_hist,
        } = pending.swap_remove(pick);
        let parent = tree.leaves[l].clone();
        let mut table = [0u8; 256];
        for (b, t) in table.iter_mut().enumerate() {
            *t = binset_has(&split.left_bins, b) as u8;
        }
        let nl = partition(
            &mut ws.idx[parent.start..parent.end],
            &mut ws.scratch,
            data,
            split.feature,
            &table,
            p.parallel,
        );
        let node_id = tree.nodes.len();
        let right_leaf = tree.leaves.len();
        if let Some((pn, is_left)) = parent.parent {
            if is_left {
                tree.nodes[pn].left = node_id as i32;
            } else {
                tree.nodes[pn].right = node_id as i32;
            }
        }
        let (ls, rs) = (split.left, split.right);
        tree.nodes.push(GrownNode {
            split,
            left: !(l as i32),
            right: !(right_leaf as i32),
            count: parent.sum.c,
        });
        let mid = parent.start + nl;
        tree.leaves[l] = GrownLeaf {
            start: parent.start,
            end: mid,
            sum: ls,
            depth: parent.depth + 1,
            parent: Some((node_id, true)),
        };
        tree.leaves.push(GrownLeaf {
            start: mid,
            end: parent.end,
            sum: rs,
            depth: parent.depth + 1,
            parent: Some((node_id, false)),
        });
        if tree.leaves.len() >= p.num_leaves {
            if let Some(h) = parent_hist {
                ws.give_hist(h);
            }
            break;
        }
        let children = [l, right_leaf];
        let splittable = [
            can_split(&tree.leaves[l]),
            can_split(&tree.leaves[right_leaf]),
        ];
        if rf_mode {
            for (k, &c) in children.iter().enumerate() {
                if splittable[k] {
                    let leaf = tree.leaves[c].clone();
                    if let Some(s) = rf_evaluate(ws, &leaf, data, fbins, gh, &feat_list, p, rng) {
                        pending.push(Pending {
                            leaf: c,
                            split: s,
                            hist: None,
                        });
                    }
                }
            }
            continue;
        }
        let Some(mut parent_hist) = parent_hist else {
            continue;
        };
        if !splittable[0] && !splittable[1] {
            ws.give_hist(parent_hist);
            continue;
        }
        // Build the smaller child; the larger is parent minus smaller.
        let small = if tree.leaves[l].sum.c <= tree.leaves[right_leaf].sum.c {
            0
        } else {
            1
        };
        let large = 1 - small;
        let sl = &tree.leaves[children[small]];
        let mut small_hist = ws.take_hist(total_bins);
        hist::build(
            &mut small_hist,
            &ws.idx[sl.start..sl.end],
            data,
            gh,
            feats,
            p.parallel,
        );
        let mut hists: [Option<Hist>; 2] = [None, None];
        if splittable[large] {
            hist::subtract(&mut parent_hist, &small_hist, data, feats);
            hists[large] = Some(parent_hist);
        } else {
            ws.give_hist(parent_hist);
        }
        hists[small] = Some(small_hist);
        for k in 0..2 {
            let Some(h) = hists[k].take() else { continue };
            let c = children[k];
            let found = if splittable[k] {
                hist::find_best_split(&h, data, fbins, &feat_list, tree.leaves[c].sum, &p.split)
            } else {
                None
            };
            match found {
                Some(s) => pending.push(Pending {
                    leaf: c,
                    split: s,
                    hist: Some(h),
                }),
                None => ws.give_hist(h),
            }
        }
    }
    for pnd in pending {
        if let Some(h) = pnd.hist {
            ws.give_hist(h);
        }
    }
    tree
}

/// Random-forest mode: sample features for this node, build their histogram, find a split.
#[allow(clippy::too_many_arguments)]
fn rf_evaluate(
    ws: &mut Workspace,
    leaf: &GrownLeaf,
    data: &BinnedData,
    fbins: &[FeatureBins],
    gh: &[GradPair],
    feat_list: &[usize],
    p: &GrowParams,
    rng: &mut Rng,
) -> Option<SplitCandidate> {
    let m = p
        .features_per_node
        .unwrap_or(feat_list.len())
        .clamp(1, feat_list.len().max(1));
    let mut chosen: Vec<usize> = if m >= feat_list.len() {
        feat_list.to_vec()
    } else {
        let mut all = feat_list.to_vec();
        // Partial Fisher-Yates: the first m entries are a uniform sample.
        for i in 0..m {
            let j = i + rng.below(all.len() - i);
            all.swap(i, j);
        }
        all.truncate(m);
        all
    };
    chosen.sort_unstable();
    let set = FeatureSet::Some(chosen);
    let mut h = ws.take_hist(data.total_bins);
    hist::build(&mut h, &ws.idx[leaf.start..leaf.end], data, gh, &set, false);
    let FeatureSet::Some(list) = &set else {
        return None;
    };
    let s = hist::find_best_split(&h, data, fbins, list, leaf.sum, &p.split);
    ws.give_hist(h);
    s
}
