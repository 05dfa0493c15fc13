//! [`Model`]: any model kiln can predict with, a kiln model ([`KilnModel`]) or an ONNX graph
//! ([`OnnxModel`]), behind one API: [`Model::load`] detects the format, [`Model::signature`]
//! gives the input columns, task and classes, [`Model::predict`] scores a table.
//!
//! `Model` is `Send + Sync` and prediction takes `&self`, so a server shares one model (in an
//! `Arc`) between all its threads without a lock.
//!
//! ```no_run
//! use kiln_train::model::Model;
//! let model = Model::load("model/")?;
//! let table = kiln_table::read_table("new.csv", &Default::default())?;
//! let scored = model.score(&table)?;
//! println!("{:?}", scored.labels(model.classes()));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::path::Path;

use kiln_table::Table;

use crate::artifact::{KilnModel, Predictions, MODEL_FILE};
use crate::frame::{Signature, Task};
use crate::onnx::{looks_like_onnx, OnnxModel};
use crate::TrainError;

/// File name of an ONNX model inside a model directory (MLflow's onnx flavor uses it too).
pub const ONNX_FILE: &str = "model.onnx";

/// A model ready to predict.
#[derive(Debug, Clone)]
pub enum Model {
    Kiln(Box<KilnModel>),
    Onnx(Box<OnnxModel>),
}

/// Predictions for a table, with the warnings a caller should show.
#[derive(Debug, Clone, PartialEq)]
pub struct Scored {
    pub predictions: Predictions,
    /// Categorical columns with values the model never saw (treated as missing), and how many.
    pub unseen: Vec<(String, usize)>,
}

impl Scored {
    /// Number of scored rows.
    pub fn len(&self) -> usize {
        match &self.predictions {
            Predictions::Proba(p) => p.len(),
            Predictions::Values(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The predicted class of each row (the most probable; the first on ties), or `None` for a
    /// regression.
    pub fn labels(&self, classes: &[String]) -> Option<Vec<String>> {
        match &self.predictions {
            Predictions::Proba(p) => Some(predicted_labels(classes, p)),
            Predictions::Values(_) => None,
        }
    }
}

/// The most probable class of each row (the first on ties; NaN never wins).
pub fn predicted_labels(classes: &[String], proba: &[Vec<f64>]) -> Vec<String> {
    proba
        .iter()
        .map(|row| {
            let mut best: Option<(usize, f64)> = None;
            for (i, p) in row.iter().enumerate() {
                if !p.is_nan() && best.is_none_or(|(_, b)| *p > b) {
                    best = Some((i, *p));
                }
            }
            best.and_then(|(i, _)| classes.get(i).cloned())
                .unwrap_or_default()
        })
        .collect()
}

impl Model {
    /// Load a local model: a kiln model file or directory (`kiln-model.json`), an `.onnx`
    /// file, or a directory holding `model.onnx`. The format is told from the content.
    pub fn load(path: &str) -> Result<Self, TrainError> {
        let p = Path::new(path);
        let file = if p.is_dir() {
            let kiln = p.join(MODEL_FILE);
            let onnx = p.join(ONNX_FILE);
            if kiln.is_file() {
                kiln
            } else if onnx.is_file() {
                onnx
            } else {
                return Err(TrainError::Input(format!(
                    "Model directory `{path}` holds neither `{MODEL_FILE}` nor `{ONNX_FILE}`"
                )));
            }
        } else {
            p.to_path_buf()
        };
        let bytes = fs_err::read(&file).map_err(|err| TrainError::Io {
            path: file.display().to_string(),
            err,
        })?;
        Self::from_bytes(&bytes, &file.display().to_string())
    }

    /// Parse model bytes: a kiln model (JSON) or an ONNX model (protobuf). `source` names the
    /// model in errors; a name ending in `.onnx` is always read as ONNX.
    pub fn from_bytes(bytes: &[u8], source: &str) -> Result<Self, TrainError> {
        let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
        let onnx_name = Path::new(source)
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("onnx"));
        if first == Some(&b'{') && !onnx_name {
            return Ok(Self::Kiln(Box::new(KilnModel::from_bytes(bytes, source)?)));
        }
        if onnx_name || looks_like_onnx(bytes) {
            return Ok(Self::Onnx(Box::new(OnnxModel::from_bytes(bytes, source)?)));
        }
        Err(TrainError::ModelFormat(format!(
            "`{source}` is neither a kiln model (JSON with \"format\": \"kiln-model\") nor an ONNX model"
        )))
    }

    /// `kiln` or `onnx`.
    pub fn format(&self) -> &'static str {
        match self {
            Self::Kiln(_) => "kiln",
            Self::Onnx(_) => "onnx",
        }
    }

    /// The learner (`gbdt`, `random_forest`, …) or the ONNX producer (`skl2onnx 1.20.0`).
    pub fn description(&self) -> String {
        match self {
            Self::Kiln(m) => m.learner.kind().to_string(),
            Self::Onnx(m) => {
                if m.producer().is_empty() {
                    "onnx".into()
                } else {
                    format!("onnx ({})", m.producer())
                }
            }
        }
    }

    /// Input columns, target, task and classes.
    pub fn signature(&self) -> &Signature {
        match self {
            Self::Kiln(m) => &m.signature,
            Self::Onnx(m) => m.signature(),
        }
    }

    pub fn task(&self) -> Task {
        self.signature().target.task
    }

    /// Class labels, in the column order of [`Predictions::Proba`] (empty for a regression).
    pub fn classes(&self) -> &[String] {
        &self.signature().target.classes
    }

    /// Use `target` as the label column. A kiln model knows its own and must agree (an error
    /// otherwise: its classes were learned from that column); an ONNX model takes the name.
    pub fn with_target(mut self, target: &str) -> Result<Self, TrainError> {
        match &mut self {
            Self::Kiln(m) if m.signature.target.name != target => {
                return Err(TrainError::Input(format!(
                    "--target `{target}`: the model was trained to predict `{}`",
                    m.signature.target.name
                )))
            }
            Self::Kiln(_) => {}
            Self::Onnx(m) => m.set_target(target),
        }
        Ok(self)
    }

    /// The labels of `table` for evaluation: class indices (in [`Model::classes`] order) or
    /// values. An ONNX model names its label column with its `target` metadata.
    pub fn labels(&self, table: &Table) -> Result<Vec<f64>, TrainError> {
        let signature = self.signature();
        if let (Self::Onnx(m), true) = (self, signature.target.name.is_empty()) {
            return Err(TrainError::Onnx {
                model: m.source().to_string(),
                message: "the model names no target column (metadata `target`): pass the label column with --target".into(),
            });
        }
        signature.labels(table)
    }

    /// Predict every row of `table` (extra columns are ignored).
    pub fn predict(&self, table: &Table) -> Result<Predictions, TrainError> {
        Ok(self.score(table)?.predictions)
    }

    /// Predict every row of `table`, with warnings about unseen categories.
    pub fn score(&self, table: &Table) -> Result<Scored, TrainError> {
        match self {
            Self::Kiln(m) => {
                let (data, unseen) = m.signature.encode(table)?;
                Ok(Scored {
                    predictions: m.predict(&data)?,
                    unseen,
                })
            }
            Self::Onnx(m) => Ok(Scored {
                predictions: m.predict(table)?,
                unseen: Vec::new(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn models_are_shareable_across_threads() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Model>();
        assert_send_sync::<OnnxModel>();
    }

    #[test]
    fn labels_take_the_most_probable_class() {
        let classes = vec!["a".to_string(), "b".to_string()];
        let proba = vec![vec![0.2, 0.8], vec![0.5, 0.5], vec![f64::NAN, 0.1]];
        assert_eq!(predicted_labels(&classes, &proba), ["b", "a", "b"]);
    }

    #[test]
    fn unknown_bytes_are_a_format_error() {
        let e = Model::from_bytes(b"hello", "model.bin").unwrap_err();
        assert!(e.to_string().contains("neither a kiln model"), "{e}");
        assert!(e.is_input());
        let e = Model::from_bytes(b"{\"x\": 1}", "model.json").unwrap_err();
        assert!(e.to_string().contains("not a kiln model"), "{e}");
        let e = Model::from_bytes(b"\x08garbage", "model.onnx").unwrap_err();
        assert!(e.to_string().contains("not a valid ONNX file"), "{e}");
    }

    #[test]
    fn missing_files_and_empty_directories_name_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let e = Model::load(&dir.path().join("nope.onnx").display().to_string()).unwrap_err();
        assert!(e.to_string().contains("nope.onnx"), "{e}");
        let e = Model::load(&dir.path().display().to_string()).unwrap_err();
        assert!(
            e.to_string()
                .contains("neither `kiln-model.json` nor `model.onnx`"),
            "{e}"
        );
    }
}
