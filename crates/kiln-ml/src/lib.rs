//! Built-in tabular machine learning: a columnar [`Dataset`] of numeric and categorical
//! [`Feature`]s, and the learners built on it.
//!
//! ```
//! use kiln_ml::{Dataset, Feature};
//! let ds = Dataset::new(vec![
//!     Feature::numeric("age", vec![31.0, f64::NAN, 45.0]),
//!     Feature::categorical("plan", vec![0, 1, kiln_ml::MISSING_CODE], vec!["basic".into(), "pro".into()]),
//! ]).unwrap();
//! assert_eq!(ds.n_rows(), 3);
//! ```

mod dataset;

pub use dataset::{Dataset, DatasetError, Feature, FeatureKind, MISSING_CODE};
