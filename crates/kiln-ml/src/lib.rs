//! Built-in tabular machine learning: a columnar [`Dataset`] of numeric and categorical
//! [`Feature`]s, and the learners built on it.
//!
//! - [`gbdt`]: histogram gradient-boosted trees ([`GbdtModel`], [`GbdtParams`],
//!   [`gbdt::fit`], [`gbdt::fit_with`]) for binary, multiclass and regression objectives,
//!   with native categorical splits, learned missing-value directions, class/sample weights,
//!   bagging, feature subsampling and early stopping.
//! - [`forest`]: random forests on the same tree learner ([`ForestModel`], [`ForestParams`],
//!   [`fit_forest`]).
//! - [`Tree`]: the fitted tree format shared by both (flat arrays, raw-value thresholds).
//! - [`metrics`]: ROC AUC, log loss, R², MSE, accuracy.
//! - [`MlError`]: the error type.
//!
//! Models serialise with serde (`to_json` / `from_json`); the same data, parameters and seed
//! give bit-identical model files whatever the thread count.
//!
//! ```
//! use kiln_ml::{Dataset, Feature};
//! let ds = Dataset::new(vec![
//!     Feature::numeric("age", vec![31.0, f64::NAN, 45.0]),
//!     Feature::categorical("plan", vec![0, 1, kiln_ml::MISSING_CODE], vec!["basic".into(), "pro".into()]),
//! ]).unwrap();
//! assert_eq!(ds.n_rows(), 3);
//! ```

mod binning;
mod dataset;
mod error;
pub mod evaluate;
pub mod forest;
pub mod gbdt;
mod grow;
mod hist;
mod labels;
pub mod linear;
pub mod metrics;
mod model;
mod params;
mod predictor;
mod rng;
mod serde_f64;
mod tree;

pub use dataset::{Dataset, DatasetError, Feature, FeatureKind, MISSING_CODE};
pub use error::{MlError, Result};
pub use forest::{fit_forest, ForestModel, ForestParams, MaxFeatures};
pub use gbdt::{GbdtModel, GbdtParams, Validation};
pub use model::{FeatureImportance, FeatureInfo};
pub use params::{ClassWeight, Objective};
pub use tree::{Node, Tree};
