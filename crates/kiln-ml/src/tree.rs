//! The fitted decision tree ([`Tree`], [`Node`]) shared by the GBDT and the random forest,
//! stored as flat arrays for fast prediction on raw feature values.
//!
//! Numeric splits keep their threshold as a raw `f64` (`x <= threshold` goes left) and
//! categorical splits a bitset of the category codes that go left, so prediction needs no
//! binning. Missing values (`NaN`) follow each node's learned default direction; category
//! codes not in the bitset (including ones never seen in training) go right.

use serde::{Deserialize, Serialize};

/// One internal node of a [`Tree`].
///
/// Children are node indices when `>= 0`; a negative child `c` is the leaf `!c` (i.e.
/// `-c - 1`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Node {
    /// Numeric split threshold: a value `x <= threshold` goes left. Unused (0) for
    /// categorical splits.
    #[serde(with = "crate::serde_f64")]
    pub threshold: f64,
    /// The feature index tested.
    pub feature: u32,
    /// Left child (node index, or `!leaf`).
    pub left: i32,
    /// Right child (node index, or `!leaf`).
    pub right: i32,
    /// Start of this node's category bitset in [`Tree::cat_words`] (categorical splits).
    pub cat_start: u32,
    /// Length in 32-bit words of the category bitset (0 for numeric splits).
    pub cat_len: u32,
    /// Whether missing values go left.
    pub default_left: bool,
    /// Whether this is a categorical split.
    pub categorical: bool,
}

/// A fitted regression tree.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tree {
    /// Internal nodes; node 0 is the root. Empty for a single-leaf tree.
    pub nodes: Vec<Node>,
    /// Output of each leaf (already multiplied by the learning rate for GBDT).
    pub leaf_values: Vec<f64>,
    /// Category bitsets of the categorical nodes, 32 codes per word.
    pub cat_words: Vec<u32>,
    /// Gain of each internal node's split (for feature importance).
    pub split_gain: Vec<f64>,
    /// Training rows (sum of sample counts) reaching each internal node.
    pub node_count: Vec<f64>,
    /// Training rows reaching each leaf.
    pub leaf_count: Vec<f64>,
}

impl Tree {
    /// A tree with a single leaf.
    pub fn constant(value: f64, count: f64) -> Self {
        Tree {
            nodes: Vec::new(),
            leaf_values: vec![value],
            cat_words: Vec::new(),
            split_gain: Vec::new(),
            node_count: Vec::new(),
            leaf_count: vec![count],
        }
    }

    /// Number of leaves.
    pub fn n_leaves(&self) -> usize {
        self.leaf_values.len()
    }

    #[inline(always)]
    fn goes_left(&self, node: &Node, v: f64) -> bool {
        if v.is_nan() {
            return node.default_left;
        }
        if node.categorical {
            // Codes that are negative, fractional or beyond the bitset are not in the set.
            let code = v as u32;
            if code as f64 != v {
                return false;
            }
            let word = (code >> 5) as usize;
            if word >= node.cat_len as usize {
                return false;
            }
            let w = self
                .cat_words
                .get(node.cat_start as usize + word)
                .copied()
                .unwrap_or(0);
            (w >> (code & 31)) & 1 == 1
        } else {
            v <= node.threshold
        }
    }

    /// The leaf reached by `row` (features by index; a missing index reads as `NaN`).
    #[inline]
    pub fn leaf_index(&self, row: &[f64]) -> usize {
        if self.nodes.is_empty() {
            return 0;
        }
        let mut i = 0usize;
        loop {
            let Some(node) = self.nodes.get(i) else {
                return 0;
            };
            let v = row.get(node.feature as usize).copied().unwrap_or(f64::NAN);
            let child = if self.goes_left(node, v) {
                node.left
            } else {
                node.right
            };
            if child < 0 {
                return !child as usize;
            }
            i = child as usize;
        }
    }

    /// The output of the leaf reached by `row`.
    #[inline]
    pub fn predict_row(&self, row: &[f64]) -> f64 {
        self.leaf_values
            .get(self.leaf_index(row))
            .copied()
            .unwrap_or(0.0)
    }

    /// Check internal consistency (child indices, bitset ranges) of a deserialised tree, so
    /// that prediction never indexes out of range.
    pub(crate) fn validate(&self, n_features: usize) -> Result<(), String> {
        let nn = self.nodes.len() as i64;
        let nl = self.leaf_values.len() as i64;
        if nl != nn + 1 {
            return Err(format!(
                "tree has {nn} nodes and {nl} leaves; expected nodes + 1 leaves"
            ));
        }
        for (i, n) in self.nodes.iter().enumerate() {
            if n.feature as usize >= n_features {
                return Err(format!(
                    "node {i} tests feature {} of {n_features}",
                    n.feature
                ));
            }
            for c in [n.left, n.right] {
                let ok = if c >= 0 {
                    (c as i64) > i as i64 && (c as i64) < nn
                } else {
                    (!c as i64) < nl
                };
                if !ok {
                    return Err(format!("node {i} has an invalid child {c}"));
                }
            }
            if n.categorical && n.cat_start as usize + n.cat_len as usize > self.cat_words.len() {
                return Err(format!("node {i} has a category bitset out of range"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Two nodes: a numeric split on feature 0, then a categorical one on feature 1.
    pub(crate) fn stump() -> Tree {
        Tree {
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
        }
    }

    #[test]
    fn routes_numeric_categorical_and_missing() {
        let t = stump();
        t.validate(2).unwrap();
        assert_eq!(t.predict_row(&[1.0, 0.0]), 10.0);
        assert_eq!(t.predict_row(&[1.0, 2.0]), 10.0);
        assert_eq!(t.predict_row(&[1.0, 1.0]), 20.0);
        assert_eq!(t.predict_row(&[1.0, 99.0]), 20.0); // unseen category goes right
        assert_eq!(t.predict_row(&[1.0, f64::NAN]), 10.0); // default left
        assert_eq!(t.predict_row(&[2.0, 0.0]), 30.0);
        assert_eq!(t.predict_row(&[f64::NAN, 0.0]), 30.0); // default right
        assert_eq!(t.predict_row(&[]), 30.0);
    }
}
