//! A prediction-optimised copy of a tree ensemble ([`Compiled`]), built lazily from the
//! serialised [`Tree`]s and never serialised itself.
//!
//! All trees share one array of 24-byte nodes laid out in depth-first preorder (a node's left
//! child is the next node). Leaves are nodes that point to themselves (their value is kept in
//! the threshold slot), so traversal is a fixed
//! step `node = next(node, row)` that can run for several rows (batch) or several trees
//! (single row) in lockstep, branch-free for numeric splits. That hides the latency of each
//! step behind the others.

use std::sync::OnceLock;

use crate::tree::Tree;

const FEATURE_MASK: u32 = 0x00FF_FFFF;
const DEFAULT_LEFT: u32 = 1 << 24;
const CATEGORICAL: u32 = 1 << 25;
const LEAF: u32 = 1 << 26;

#[derive(Debug, Clone, Copy)]
#[repr(C)]
struct PNode {
    /// Numeric split: the threshold. Leaf: the value. Categorical split: the bits of
    /// `cat_start | cat_len << 32` (see [`PNode::cat_range`]).
    thr: f64,
    /// `[left, right]` children (a leaf's own index twice), indexed by "goes right" so the
    /// step compiles to a load rather than a branch.
    child: [u32; 2],
    /// Feature index (low 24 bits) and flags.
    meta: u32,
}

impl PNode {
    #[inline(always)]
    fn cat_range(&self) -> (usize, usize) {
        let bits = self.thr.to_bits();
        ((bits & 0xFFFF_FFFF) as usize, (bits >> 32) as usize)
    }
}

/// Lanes traversed in lockstep.
const LANES: usize = 8;

/// Trees up to this depth are walked a fixed number of steps (no per-step exit test);
/// deeper ones stop when every lane has reached a leaf.
const FIXED_STEPS_MAX_DEPTH: u32 = 16;

/// The compiled ensemble.
///
/// Invariants (established by [`Compiled::new`], relied on by the unchecked reads in
/// [`Compiled::step`]): every root and child index is `< nodes.len()`, and every node's
/// feature index is `< width`.
#[derive(Debug, Clone, Default)]
pub(crate) struct Compiled {
    nodes: Vec<PNode>,
    roots: Vec<u32>,
    /// Depth (edges from the root to the deepest leaf) of each tree: that many steps take
    /// any row to its leaf.
    depths: Vec<u32>,
    cat_words: Vec<u32>,
    /// Values per row the traversal reads (the model's feature count, at least 1).
    width: usize,
}

impl Compiled {
    /// Compile `trees` for rows of `n_features` values.
    pub(crate) fn new(trees: &[Tree], n_features: usize) -> Self {
        let mut c = Compiled {
            width: n_features.max(1),
            ..Compiled::default()
        };
        for t in trees {
            let cat_base = c.cat_words.len();
            c.cat_words.extend_from_slice(&t.cat_words);
            c.roots.push(c.nodes.len() as u32);
            c.depths.push(0);
            if t.nodes.is_empty() {
                let me = c.nodes.len() as u32;
                let v = t.leaf_values.first().copied().unwrap_or(0.0);
                c.nodes.push(PNode {
                    thr: v,
                    child: [me, me],
                    meta: LEAF,
                });
                continue;
            }
            // Iterative preorder walk; `fixups` remembers which node's right child is next.
            let mut stack: Vec<(i32, Option<usize>, u32)> = vec![(0, None, 0)];
            let mut max_depth = 0;
            while let Some((code, parent, depth)) = stack.pop() {
                max_depth = max_depth.max(depth);
                let me = c.nodes.len();
                if let Some(p) = parent {
                    c.nodes[p].child[1] = me as u32;
                }
                // Codes that point outside the tree become zero leaves (validated trees
                // never do this; it keeps traversal in bounds for any input).
                let node = if code >= 0 {
                    t.nodes.get(code as usize)
                } else {
                    None
                };
                match node {
                    Some(n) if code >= 0 => {
                        let mut meta = n.feature.min(FEATURE_MASK);
                        if n.default_left {
                            meta |= DEFAULT_LEFT;
                        }
                        let thr = if n.categorical {
                            meta |= CATEGORICAL;
                            let start = (cat_base + n.cat_start as usize) as u64;
                            f64::from_bits(start | (n.cat_len as u64) << 32)
                        } else {
                            n.threshold
                        };
                        c.nodes.push(PNode {
                            thr,
                            child: [me as u32 + 1, me as u32],
                            meta,
                        });
                        // Children must come later in the tree (no cycles); anything else
                        // becomes a zero leaf.
                        let safe = |ch: i32| if ch < 0 || ch > code { ch } else { i32::MIN };
                        // Right is visited after the whole left subtree.
                        stack.push((safe(n.right), Some(me), depth + 1));
                        stack.push((safe(n.left), None, depth + 1));
                    }
                    _ => {
                        let v = if code < 0 {
                            t.leaf_values.get((!code) as usize).copied().unwrap_or(0.0)
                        } else {
                            0.0
                        };
                        c.nodes.push(PNode {
                            thr: v,
                            child: [me as u32, me as u32],
                            meta: LEAF,
                        });
                    }
                }
            }
            if let Some(d) = c.depths.last_mut() {
                *d = max_depth;
            }
        }
        // A split on a feature the rows do not have (only possible in a hand-made model)
        // always takes its missing-value direction, as `NaN` would.
        for n in &mut c.nodes {
            if (n.meta & FEATURE_MASK) as usize >= c.width && n.meta & LEAF == 0 {
                let d = n.child[usize::from(n.meta & DEFAULT_LEFT == 0)];
                n.child = [d, d];
                n.meta &= !(FEATURE_MASK | CATEGORICAL);
            }
        }
        c
    }

    #[inline(always)]
    fn cat_left(&self, n: &PNode, v: f64) -> bool {
        if v.is_nan() {
            return n.meta & DEFAULT_LEFT != 0;
        }
        let code = v as u32;
        // Negative, fractional or too large values are not in the set.
        if code as f64 != v {
            return false;
        }
        let (start, len) = n.cat_range();
        let word = (code >> 5) as usize;
        if word >= len {
            return false;
        }
        let w = self.cat_words.get(start + word).copied().unwrap_or(0);
        (w >> (code & 31)) & 1 == 1
    }

    /// Whether a categorical split sends `v` right (kept out of line: it is the rare case,
    /// and a small numeric step lets the lockstep loops stay in registers).
    #[cold]
    #[inline(never)]
    fn cat_right(&self, n: &PNode, v: f64) -> u32 {
        u32::from(!self.cat_left(n, v))
    }

    /// One traversal step (leaves return themselves) for the row at
    /// `rows[base..base + self.width]`.
    ///
    /// # Safety
    /// `i` must be a node index of this ensemble (a root or a child), and
    /// `base + self.width <= rows.len()`.
    #[inline(always)]
    unsafe fn step(&self, i: u32, rows: &[f64], base: usize) -> u32 {
        // SAFETY: node indices are valid by construction (see the type's invariants).
        let n = unsafe { self.nodes.get_unchecked(i as usize) };
        let f = (n.meta & FEATURE_MASK) as usize;
        // SAFETY: f < width and base + width <= rows.len() (caller).
        let v = unsafe { *rows.get_unchecked(base + f) };
        let right = if n.meta & CATEGORICAL != 0 {
            self.cat_right(n, v)
        } else {
            // Right unless `v <= thr`, or `v` is missing and missing goes left.
            let le = u32::from(v <= n.thr);
            let nan_left = u32::from(v.is_nan()) & (n.meta >> 24);
            1 ^ ((le | nan_left) & 1)
        };
        n.child[(right & 1) as usize]
    }

    /// Add the ensemble's outputs for the row-major block `rows` (`n_rows x nf`) into `acc`
    /// (`n_rows x n_out`, tree `t` feeding output `t % n_out`).
    pub(crate) fn predict_block(&self, rows: &[f64], nf: usize, n_out: usize, acc: &mut [f64]) {
        let n_rows = acc.len() / n_out;
        if nf != self.width || rows.len() < n_rows * nf {
            // Rows narrower than the model (no features): pad with missing values.
            let w = self.width;
            let mut padded = vec![f64::NAN; n_rows * w];
            for r in 0..n_rows {
                for f in 0..nf.min(w) {
                    padded[r * w + f] = rows.get(r * nf + f).copied().unwrap_or(f64::NAN);
                }
            }
            return self.predict_block(&padded, w, n_out, acc);
        }
        let full = n_rows / LANES * LANES;
        for (t, (&root, &depth)) in self.roots.iter().zip(&self.depths).enumerate() {
            let k = t % n_out;
            let mut r0 = 0;
            while r0 < full {
                let base: [usize; LANES] = std::array::from_fn(|j| (r0 + j) * nf);
                let mut pos = [root; LANES];
                if depth <= FIXED_STEPS_MAX_DEPTH {
                    // `depth` steps take every row to its leaf (leaves point to themselves).
                    for _ in 0..depth {
                        for j in 0..LANES {
                            // SAFETY: pos[j] starts at a root and follows children; row
                            // r0 + j < n_rows, so base[j] + nf <= rows.len() (checked above).
                            pos[j] = unsafe { self.step(pos[j], rows, base[j]) };
                        }
                    }
                } else {
                    // Deep (e.g. random-forest) trees: stop once every lane is at a leaf.
                    loop {
                        let mut moved = 0u32;
                        for j in 0..LANES {
                            // SAFETY: as above.
                            let next = unsafe { self.step(pos[j], rows, base[j]) };
                            moved |= next ^ pos[j];
                            pos[j] = next;
                        }
                        if moved == 0 {
                            break;
                        }
                    }
                }
                for j in 0..LANES {
                    acc[(r0 + j) * n_out + k] += self.nodes[pos[j] as usize].thr;
                }
                r0 += LANES;
            }
            for r in full..n_rows {
                let mut p = root;
                loop {
                    // SAFETY: as above, r < n_rows.
                    let next = unsafe { self.step(p, rows, r * nf) };
                    if next == p {
                        break;
                    }
                    p = next;
                }
                acc[r * n_out + k] += self.nodes[p as usize].thr;
            }
        }
    }

    /// Add one row's outputs into `out` (length `n_out`), walking trees in lockstep.
    pub(crate) fn predict_row(&self, row: &[f64], n_out: usize, out: &mut [f64]) {
        if row.len() < self.width {
            let mut padded = row.to_vec();
            padded.resize(self.width, f64::NAN);
            return self.predict_row(&padded, n_out, out);
        }
        let nt = self.roots.len();
        let full = nt / LANES * LANES;
        let mut t0 = 0;
        while t0 < full {
            let mut pos = [0u32; LANES];
            pos.copy_from_slice(&self.roots[t0..t0 + LANES]);
            let depth = self.depths[t0..t0 + LANES]
                .iter()
                .copied()
                .max()
                .unwrap_or(0);
            if depth <= FIXED_STEPS_MAX_DEPTH {
                for _ in 0..depth {
                    for p in pos.iter_mut() {
                        // SAFETY: *p starts at a root; row.len() >= width (checked above).
                        *p = unsafe { self.step(*p, row, 0) };
                    }
                }
            } else {
                loop {
                    let mut moved = 0u32;
                    for p in pos.iter_mut() {
                        // SAFETY: as above.
                        let next = unsafe { self.step(*p, row, 0) };
                        moved |= next ^ *p;
                        *p = next;
                    }
                    if moved == 0 {
                        break;
                    }
                }
            }
            for (j, &p) in pos.iter().enumerate() {
                out[(t0 + j) % n_out] += self.nodes[p as usize].thr;
            }
            t0 += LANES;
        }
        for t in full..nt {
            let mut p = self.roots[t];
            loop {
                // SAFETY: as above.
                let next = unsafe { self.step(p, row, 0) };
                if next == p {
                    break;
                }
                p = next;
            }
            out[t % n_out] += self.nodes[p as usize].thr;
        }
    }
}

/// A lazily built [`Compiled`] kept next to the trees; equal to every other (it is derived
/// data) and skipped by serde.
#[derive(Debug, Clone, Default)]
pub(crate) struct LazyCompiled(OnceLock<Compiled>);

impl LazyCompiled {
    pub(crate) fn get(&self, trees: &[Tree], n_features: usize) -> &Compiled {
        self.0.get_or_init(|| Compiled::new(trees, n_features))
    }
}

impl PartialEq for LazyCompiled {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tree::tests::stump;
    use crate::tree::Node;

    #[test]
    fn compiled_matches_tree_traversal() {
        let t = stump();
        let trees: Vec<Tree> = (0..11).map(|_| t.clone()).collect();
        let c = Compiled::new(&trees, 2);
        let rows: Vec<[f64; 2]> = vec![
            [1.0, 0.0],
            [1.0, 2.0],
            [1.0, 1.0],
            [1.0, 99.0],
            [1.0, f64::NAN],
            [2.0, 0.0],
            [f64::NAN, 0.0],
            [1.0, -1.0],
            [1.0, 0.5],
            [0.0, 2.0],
        ];
        let flat: Vec<f64> = rows.iter().flatten().copied().collect();
        let mut acc = vec![0.0; rows.len()];
        c.predict_block(&flat, 2, 1, &mut acc);
        for (r, row) in rows.iter().enumerate() {
            let want: f64 = trees.iter().map(|t| t.predict_row(row)).sum();
            assert_eq!(acc[r], want, "row {r}");
            let mut out = [0.0];
            c.predict_row(row, 1, &mut out);
            assert_eq!(out[0], want, "row {r}");
        }
        // Compiled for 1-feature rows, the split on feature 1 follows its missing direction.
        let narrow = Compiled::new(&trees, 1);
        for row in &rows {
            let want: f64 = trees.iter().map(|t| t.predict_row(&row[..1])).sum();
            let mut out = [0.0];
            narrow.predict_row(&row[..1], 1, &mut out);
            assert_eq!(out[0], want);
            let mut acc = [0.0];
            narrow.predict_block(&row[..1], 1, 1, &mut acc);
            assert_eq!(acc[0], want);
        }
    }

    #[test]
    fn large_category_sets_use_the_shared_bitset() {
        let t = Tree {
            nodes: vec![Node {
                threshold: 0.0,
                feature: 0,
                left: !0,
                right: !1,
                cat_start: 0,
                cat_len: 3,
                default_left: false,
                categorical: true,
            }],
            leaf_values: vec![1.0, 2.0],
            cat_words: vec![0b1, 0, 1 << 6],
            split_gain: vec![1.0],
            node_count: vec![2.0],
            leaf_count: vec![1.0, 1.0],
        };
        let trees = vec![t.clone(); 9];
        let c = Compiled::new(&trees, 1);
        for v in [0.0, 1.0, 70.0, 71.0, 64.0, -1.0, 70.5, f64::NAN, 1e12] {
            let want: f64 = trees.iter().map(|t| t.predict_row(&[v])).sum();
            let mut out = [0.0];
            c.predict_row(&[v], 1, &mut out);
            assert_eq!(out[0], want, "{v}");
            let mut acc = [0.0; 9];
            c.predict_block(&[v; 9], 1, 1, &mut acc);
            assert!(acc.iter().all(|&a| a == want), "{v}");
        }
        assert_eq!(t.predict_row(&[70.0]), 1.0);
        assert_eq!(t.predict_row(&[71.0]), 2.0);
    }
}
