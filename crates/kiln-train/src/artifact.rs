//! The kiln model artifact: one JSON document (`kiln-model.json`) holding the learner, the input
//! [`Signature`] (which carries the preprocessing: feature kinds and category vocabularies), the
//! output classes and the training metadata. It has no timestamps, so the same data, parameters
//! and seed give a byte-identical file. See `docs/model-format.md`.

use kiln_ml::linear::LinearModel;
use kiln_ml::{Dataset, ForestModel, GbdtModel};
use serde::{Deserialize, Serialize};

use crate::frame::{Signature, Task};
use crate::TrainError;

/// File name of the artifact inside a model directory.
pub const MODEL_FILE: &str = "kiln-model.json";
/// Identifies the document.
pub const FORMAT: &str = "kiln-model";
/// Version of the layout; readers refuse newer ones.
pub const FORMAT_VERSION: u32 = 1;

/// The fitted learner.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "model", rename_all = "snake_case")]
pub enum Learner {
    Gbdt(GbdtModel),
    RandomForest(ForestModel),
    Logistic(LinearModel),
    Linear(LinearModel),
}

impl Learner {
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Gbdt(_) => "gbdt",
            Self::RandomForest(_) => "random_forest",
            Self::Logistic(_) => "logistic",
            Self::Linear(_) => "linear",
        }
    }
}

/// How the model was made (no wall-clock times, to keep the file reproducible).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrainingInfo {
    pub kiln_version: String,
    /// BLAKE3 of the training data file(s).
    pub data_hash: String,
    pub train_rows: usize,
    pub seed: u64,
    pub split: String,
    /// `key=value` parameters as given.
    pub params: Vec<(String, String)>,
}

/// A saved kiln model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KilnModel {
    pub format: String,
    pub format_version: u32,
    pub signature: Signature,
    pub training: TrainingInfo,
    pub learner: Learner,
}

/// Predictions for a batch: class probabilities (classification) or values (regression).
#[derive(Debug, Clone, PartialEq)]
pub enum Predictions {
    /// `n × k` probabilities, classes in [`Signature`] order.
    Proba(Vec<Vec<f64>>),
    Values(Vec<f64>),
}

impl KilnModel {
    pub fn new(signature: Signature, training: TrainingInfo, learner: Learner) -> Self {
        Self {
            format: FORMAT.into(),
            format_version: FORMAT_VERSION,
            signature,
            training,
            learner,
        }
    }

    /// Serialized bytes (pretty JSON, deterministic).
    pub fn to_bytes(&self) -> Result<Vec<u8>, TrainError> {
        let mut bytes =
            serde_json::to_vec_pretty(self).map_err(|e| TrainError::ModelFormat(e.to_string()))?;
        bytes.push(b'\n');
        Ok(bytes)
    }

    /// Parse a model document, refusing other formats and newer versions.
    pub fn from_bytes(bytes: &[u8], source: &str) -> Result<Self, TrainError> {
        let head: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| {
            TrainError::ModelFormat(format!(
                "`{source}` is not a kiln model (invalid JSON: {e})"
            ))
        })?;
        if head.get("format").and_then(serde_json::Value::as_str) != Some(FORMAT) {
            return Err(TrainError::ModelFormat(format!(
                "`{source}` is not a kiln model (no \"format\": \"{FORMAT}\")"
            )));
        }
        let version = head
            .get("format_version")
            .and_then(serde_json::Value::as_u64)
            .unwrap_or(0);
        if version > u64::from(FORMAT_VERSION) {
            return Err(TrainError::ModelFormat(format!(
                "`{source}` uses model format version {version}; this kiln reads up to version {FORMAT_VERSION}. Upgrade kiln."
            )));
        }
        let mut model: Self = serde_json::from_value(head)
            .map_err(|e| TrainError::ModelFormat(format!("`{source}`: {e}")))?;
        // Rebuild prediction caches by round-tripping through the learners' own loaders.
        model.learner = match model.learner {
            Learner::Gbdt(m) => Learner::Gbdt(GbdtModel::from_json(&m.to_json()?)?),
            Learner::RandomForest(m) => {
                Learner::RandomForest(ForestModel::from_json(&m.to_json()?)?)
            }
            other => other,
        };
        Ok(model)
    }

    /// Predict an encoded dataset.
    pub fn predict(&self, data: &Dataset) -> Result<Predictions, TrainError> {
        let classification = self.signature.target.task == Task::Classification;
        let k = self.signature.target.classes.len();
        Ok(match &self.learner {
            Learner::Gbdt(m) if classification => Predictions::Proba(m.predict_proba(data)?),
            Learner::Gbdt(m) => Predictions::Values(m.predict(data)?),
            Learner::RandomForest(m) if classification => {
                Predictions::Proba(m.predict_proba(data)?)
            }
            Learner::RandomForest(m) => Predictions::Values(m.predict(data)?),
            Learner::Logistic(m) => {
                let flat = m.predict(data)?;
                if k == 2 {
                    Predictions::Proba(flat.iter().map(|p| vec![1.0 - p, *p]).collect())
                } else {
                    Predictions::Proba(flat.chunks(k.max(1)).map(<[f64]>::to_vec).collect())
                }
            }
            Learner::Linear(m) => Predictions::Values(m.predict(data)?),
        })
    }
}
