//! Synthetic data for the learner tests.
#![allow(dead_code, unreachable_pub)]

use kiln_ml::{Dataset, Feature, MISSING_CODE};

/// SplitMix64: a tiny deterministic generator for test data.
pub struct TestRng(u64);

impl TestRng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in [lo, hi).
    pub fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.uniform()
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// Standard normal (Box-Muller).
    pub fn normal(&mut self) -> f64 {
        let u1 = self.uniform().max(1e-300);
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }
}

/// XOR-like: y = 1 when x1 * x2 > 0 (with 5% label noise), plus a noise feature.
pub fn xor(n: usize, seed: u64) -> (Dataset, Vec<f64>) {
    let mut rng = TestRng::new(seed);
    let mut x1 = Vec::with_capacity(n);
    let mut x2 = Vec::with_capacity(n);
    let mut x3 = Vec::with_capacity(n);
    let mut y = Vec::with_capacity(n);
    for _ in 0..n {
        let a = rng.range(-1.0, 1.0);
        let b = rng.range(-1.0, 1.0);
        let mut label = f64::from(a * b > 0.0);
        if rng.uniform() < 0.05 {
            label = 1.0 - label;
        }
        x1.push(a);
        x2.push(b);
        x3.push(rng.normal());
        y.push(label);
    }
    let ds = Dataset::new(vec![
        Feature::numeric("x1", x1),
        Feature::numeric("x2", x2),
        Feature::numeric("noise", x3),
    ])
    .unwrap();
    (ds, y)
}

/// Churn-like mixed table: 4 numeric (one with missing values) + 2 categorical features.
pub fn mixed(n: usize, seed: u64) -> (Dataset, Vec<f64>) {
    let mut rng = TestRng::new(seed);
    let mut tenure = Vec::with_capacity(n);
    let mut charges = Vec::with_capacity(n);
    let mut calls = Vec::with_capacity(n);
    let mut noise = Vec::with_capacity(n);
    let mut contract = Vec::with_capacity(n);
    let mut region = Vec::with_capacity(n);
    let mut y = Vec::with_capacity(n);
    let region_effect: Vec<f64> = (0..20).map(|_| rng.range(-1.5, 1.5)).collect();
    for _ in 0..n {
        let t = (rng.range(1.0, 72.0)).round();
        let c = rng.range(20.0, 120.0);
        let k = rng.below(6) as f64;
        let ct = rng.below(3) as u32;
        let rg = rng.below(20) as u32;
        let logit = -0.04 * (t - 30.0)
            + 0.02 * (c - 70.0)
            + 0.4 * (k - 2.5)
            + [1.0, -0.5, -1.5][ct as usize]
            + region_effect[rg as usize];
        let p = 1.0 / (1.0 + (-logit).exp());
        y.push(f64::from(rng.uniform() < p));
        tenure.push(t);
        charges.push(if rng.uniform() < 0.1 { f64::NAN } else { c });
        calls.push(k);
        noise.push(rng.normal());
        contract.push(if rng.uniform() < 0.02 {
            MISSING_CODE
        } else {
            ct
        });
        region.push(rg);
    }
    let ds = Dataset::new(vec![
        Feature::numeric("tenure", tenure),
        Feature::numeric("charges", charges),
        Feature::numeric("calls", calls),
        Feature::numeric("noise", noise),
        Feature::categorical(
            "contract",
            contract,
            vec!["monthly".into(), "yearly".into(), "two-year".into()],
        ),
        Feature::categorical("region", region, (0..20).map(|i| format!("r{i}")).collect()),
    ])
    .unwrap();
    (ds, y)
}

/// Three Gaussian blobs in 2-D, labels 0..3.
pub fn blobs(n: usize, seed: u64) -> (Dataset, Vec<f64>) {
    let mut rng = TestRng::new(seed);
    let centers = [(0.0, 0.0), (3.0, 3.0), (-3.0, 3.0)];
    let mut a = Vec::with_capacity(n);
    let mut b = Vec::with_capacity(n);
    let mut y = Vec::with_capacity(n);
    for i in 0..n {
        let k = i % 3;
        a.push(centers[k].0 + rng.normal());
        b.push(centers[k].1 + rng.normal());
        y.push(k as f64);
    }
    (
        Dataset::new(vec![Feature::numeric("a", a), Feature::numeric("b", b)]).unwrap(),
        y,
    )
}

/// Smooth regression target: y = sin(2 x1) + x2^2 + noise.
pub fn regression(n: usize, seed: u64) -> (Dataset, Vec<f64>) {
    let mut rng = TestRng::new(seed);
    let mut x1 = Vec::with_capacity(n);
    let mut x2 = Vec::with_capacity(n);
    let mut y = Vec::with_capacity(n);
    for _ in 0..n {
        let a = rng.range(-2.0, 2.0);
        let b = rng.range(-1.0, 1.0);
        x1.push(a);
        x2.push(b);
        y.push((2.0 * a).sin() + b * b + 0.1 * rng.normal());
    }
    (
        Dataset::new(vec![Feature::numeric("x1", x1), Feature::numeric("x2", x2)]).unwrap(),
        y,
    )
}

/// Rows `lo..hi` of a dataset and its labels.
pub fn slice(ds: &Dataset, y: &[f64], lo: usize, hi: usize) -> (Dataset, Vec<f64>) {
    let idx: Vec<usize> = (lo..hi).collect();
    (ds.take(&idx), y[lo..hi].to_vec())
}

/// A row of `ds` as `f64`s (categorical codes as numbers, missing as NaN).
pub fn row(ds: &Dataset, r: usize) -> Vec<f64> {
    ds.features()
        .iter()
        .map(|f| match &f.kind {
            kiln_ml::FeatureKind::Numeric(v) => v[r],
            kiln_ml::FeatureKind::Categorical { codes, .. } => {
                if codes[r] == MISSING_CODE {
                    f64::NAN
                } else {
                    codes[r] as f64
                }
            }
        })
        .collect()
}
