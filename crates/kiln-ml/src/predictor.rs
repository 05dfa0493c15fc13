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

/// The compiled ensemble.
#[derive(Debug, Clone, Default)]
pub(crate) struct Compiled {
    nodes: Vec<PNode>,
    roots: Vec<u32>,
    cat_words: Vec<u32>,
}

impl Compiled {
    pub(crate) fn new(trees: &[Tree]) -> Self {
        let mut c = Compiled::default();
        for t in trees {
            let cat_base = c.cat_words.len();
            c.cat_words.extend_from_slice(&t.cat_words);
            c.roots.push(c.nodes.len() as u32);
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
            let mut stack: Vec<(i32, Option<usize>)> = vec![(0, None)];
            while let Some((code, parent)) = stack.pop() {
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
                        stack.push((safe(n.right), Some(me)));
                        stack.push((safe(n.left), None));
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

    /// One traversal step (leaves return themselves).
    #[inline(always)]
    fn step(&self, i: u32, row: &[f64]) -> u32 {
        let n = &self.nodes[i as usize];
        let v = row
            .get((n.meta & FEATURE_MASK) as usize)
            .copied()
            .unwrap_or(f64::NAN);
        let right = if n.meta & CATEGORICAL != 0 {
            u32::from(!self.cat_left(n, v))
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
        let full = n_rows / LANES * LANES;
        for (t, &root) in self.roots.iter().enumerate() {
            let k = t % n_out;
            let mut r0 = 0;
            while r0 < full {
                let rws: [&[f64]; LANES] =
                    std::array::from_fn(|j| &rows[(r0 + j) * nf..(r0 + j + 1) * nf]);
                let mut pos = [root; LANES];
                loop {
                    let mut moved = 0u32;
                    for (p, row) in pos.iter_mut().zip(rws) {
                        let next = self.step(*p, row);
                        moved |= next ^ *p;
                        *p = next;
                    }
                    if moved == 0 {
                        break;
                    }
                }
                for j in 0..LANES {
                    acc[(r0 + j) * n_out + k] += self.nodes[pos[j] as usize].thr;
                }
                r0 += LANES;
            }
            for r in full..n_rows {
                let row = &rows[r * nf..(r + 1) * nf];
                let mut p = root;
                loop {
                    let next = self.step(p, row);
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
        let nt = self.roots.len();
        let full = nt / LANES * LANES;
        let mut t0 = 0;
        while t0 < full {
            let mut pos = [0u32; LANES];
            pos.copy_from_slice(&self.roots[t0..t0 + LANES]);
            loop {
                let mut moved = 0u32;
                for p in pos.iter_mut() {
                    let next = self.step(*p, row);
                    moved |= next ^ *p;
                    *p = next;
                }
                if moved == 0 {
                    break;
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
                let next = self.step(p, row);
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
    pub(crate) fn get(&self, trees: &[Tree]) -> &Compiled {
        self.0.get_or_init(|| Compiled::new(trees))
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
    use crate::tree::Node;

    #[test]
    fn compiled_matches_tree_traversal() {
        let t = Tree {
            nodes: vec![
                Node {
                    threshold: 1.5,
                    feature: 0,
                    left: 1,
                    right: !2,
                    cat_start: 0,
                    cat_len: 0,
                    default_left: false,
                    categorical: false,
                },
                Node {
                    threshold: 0.0,
                    feature: 1,
                    left: !0,
                    right: !1,
                    cat_start: 0,
                    cat_len: 1,
                    default_left: true,
                    categorical: true,
                },
            ],
            leaf_values: vec![10.0, 20.0, 30.0],
            cat_words: vec![0b101],
            split_gain: vec![1.0, 1.0],
            node_count: vec![3.0, 2.0],
            leaf_count: vec![1.0, 1.0, 1.0],
        };
        let trees: Vec<Tree> = (0..11).map(|_| t.clone()).collect();
        let c = Compiled::new(&trees);
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
    }
}
