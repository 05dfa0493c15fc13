//! Column-oriented training data.

use serde::{Deserialize, Serialize};

/// The code of a missing categorical value.
pub const MISSING_CODE: u32 = u32::MAX;

/// Values of one feature column.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum FeatureKind {
    /// Numbers; `NaN` marks a missing value.
    Numeric(Vec<f64>),
    /// Category codes into `categories`; [`MISSING_CODE`] marks a missing value.
    Categorical {
        codes: Vec<u32>,
        categories: Vec<String>,
    },
}

/// A named feature column.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Feature {
    pub name: String,
    pub kind: FeatureKind,
}

impl Feature {
    pub fn numeric(name: impl Into<String>, values: Vec<f64>) -> Self {
        Self {
            name: name.into(),
            kind: FeatureKind::Numeric(values),
        }
    }

    pub fn categorical(name: impl Into<String>, codes: Vec<u32>, categories: Vec<String>) -> Self {
        Self {
            name: name.into(),
            kind: FeatureKind::Categorical { codes, categories },
        }
    }

    pub fn len(&self) -> usize {
        match &self.kind {
            FeatureKind::Numeric(v) => v.len(),
            FeatureKind::Categorical { codes, .. } => codes.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DatasetError {
    #[error("Feature `{name}` has {got} rows, expected {expected}")]
    RaggedColumns {
        name: String,
        got: usize,
        expected: usize,
    },
    #[error("Feature `{name}` has a category code {code} but only {n} categories")]
    BadCode { name: String, code: u32, n: usize },
}

/// Equal-length feature columns.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Dataset {
    features: Vec<Feature>,
    n_rows: usize,
}

impl Dataset {
    /// Check that every column has the same length and valid category codes.
    pub fn new(features: Vec<Feature>) -> Result<Self, DatasetError> {
        let n_rows = features.first().map_or(0, Feature::len);
        for f in &features {
            if f.len() != n_rows {
                return Err(DatasetError::RaggedColumns {
                    name: f.name.clone(),
                    got: f.len(),
                    expected: n_rows,
                });
            }
            if let FeatureKind::Categorical { codes, categories } = &f.kind {
                if let Some(&code) = codes
                    .iter()
                    .find(|&&c| c != MISSING_CODE && c as usize >= categories.len())
                {
                    return Err(DatasetError::BadCode {
                        name: f.name.clone(),
                        code,
                        n: categories.len(),
                    });
                }
            }
        }
        Ok(Self { features, n_rows })
    }

    pub fn n_rows(&self) -> usize {
        self.n_rows
    }

    pub fn features(&self) -> &[Feature] {
        &self.features
    }

    /// The rows at `indices`, in that order (for splits).
    pub fn take(&self, indices: &[usize]) -> Self {
        let features = self
            .features
            .iter()
            .map(|f| Feature {
                name: f.name.clone(),
                kind: match &f.kind {
                    FeatureKind::Numeric(v) => {
                        FeatureKind::Numeric(indices.iter().map(|&i| v[i]).collect())
                    }
                    FeatureKind::Categorical { codes, categories } => FeatureKind::Categorical {
                        codes: indices.iter().map(|&i| codes[i]).collect(),
                        categories: categories.clone(),
                    },
                },
            })
            .collect();
        Self {
            features,
            n_rows: indices.len(),
        }
    }

    /// Like [`Dataset::take`], consuming `self` one column at a time: each source column is
    /// freed once copied, so peak memory is the result plus one column, not two datasets.
    pub fn into_take(self, indices: &[usize]) -> Self {
        let features = self
            .features
            .into_iter()
            .map(|f| Feature {
                kind: match f.kind {
                    FeatureKind::Numeric(v) => {
                        FeatureKind::Numeric(indices.iter().map(|&i| v[i]).collect())
                    }
                    FeatureKind::Categorical { codes, categories } => FeatureKind::Categorical {
                        codes: indices.iter().map(|&i| codes[i]).collect(),
                        categories,
                    },
                },
                name: f.name,
            })
            .collect();
        Self {
            features,
            n_rows: indices.len(),
        }
    }
}
