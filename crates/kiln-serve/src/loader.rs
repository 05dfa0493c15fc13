//! Model references (`models:/name@alias`, `models:/name/version`, `runs:/…`, a path) and the
//! [`TrackerLoader`] that loads them (kiln models and ONNX graphs) through kiln-train's
//! [`Tracker`].

use std::sync::Arc;

use kiln_train::model::Model;
use kiln_train::tracking::Tracker;

use crate::error::ServeError;
use crate::scorer::scorer_for;
use crate::state::{Loaded, ModelLoader};

/// What `kiln serve` was asked to serve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelRef {
    /// `models:/<name>@<alias>`: watched, swapped when the alias moves.
    Alias { name: String, alias: String },
    /// `models:/<name>/<version>`.
    Version { name: String, version: String },
    /// `runs:/<run_id>/<path>`, or `models:/m-<id>` (a logged model).
    Run(String),
    /// A model file or directory.
    Path(String),
}

impl ModelRef {
    pub fn parse(reference: &str) -> Result<Self, ServeError> {
        if let Some(rest) = reference.strip_prefix("models:/") {
            return match kiln_types::ModelsUri::parse(rest) {
                Some(kiln_types::ModelsUri::LoggedModel(_)) => Ok(Self::Run(reference.into())),
                Some(kiln_types::ModelsUri::Alias { name, alias }) => Ok(Self::Alias {
                    name: name.into(),
                    alias: alias.into(),
                }),
                Some(kiln_types::ModelsUri::Version { name, version }) => Ok(Self::Version {
                    name: name.into(),
                    version: version.into(),
                }),
                None => Err(ServeError::Reference(reference.into())),
            };
        }
        if reference.starts_with("runs:/") {
            return Ok(Self::Run(reference.into()));
        }
        if reference.is_empty() || reference.contains(":/") && !reference.starts_with("file:") {
            return Err(ServeError::Reference(reference.into()));
        }
        Ok(Self::Path(
            reference
                .strip_prefix("file://")
                .unwrap_or(reference)
                .to_string(),
        ))
    }

    /// Whether loading needs the tracking store.
    pub fn needs_store(&self) -> bool {
        !matches!(self, Self::Path(_))
    }

    /// Whether the reference can move (a registry alias).
    pub fn is_watched(&self) -> bool {
        matches!(self, Self::Alias { .. })
    }

    fn uri(&self) -> String {
        match self {
            Self::Alias { name, alias } => format!("models:/{name}@{alias}"),
            Self::Version { name, version } => format!("models:/{name}/{version}"),
            Self::Run(r) | Self::Path(r) => r.clone(),
        }
    }
}

/// Loads a [`ModelRef`] from a file, or from the registry and artifact store of a [`Tracker`].
pub struct TrackerLoader {
    reference: ModelRef,
    tracker: Option<Arc<Tracker>>,
}

impl TrackerLoader {
    /// `tracker` is required unless the reference is a path.
    pub fn new(reference: ModelRef, tracker: Option<Arc<Tracker>>) -> Result<Self, ServeError> {
        if reference.needs_store() && tracker.is_none() {
            return Err(ServeError::Config(format!(
                "`{}` needs a tracking store",
                reference.uri()
            )));
        }
        Ok(Self { reference, tracker })
    }

    pub fn reference(&self) -> &ModelRef {
        &self.reference
    }

    fn load_err(&self, err: kiln_train::TrainError) -> ServeError {
        ServeError::Load {
            reference: self.reference.uri(),
            err: Box::new(err),
        }
    }
}

impl ModelLoader for TrackerLoader {
    fn current_version(&self) -> Result<Option<String>, ServeError> {
        let (ModelRef::Alias { name, alias }, Some(t)) = (&self.reference, &self.tracker) else {
            return Ok(None);
        };
        let mv = t
            .store
            .get_model_version_by_alias(name, alias)
            .map_err(|e| match e {
                kiln_store::StoreError::NotFound(m) => ServeError::NotFound(m),
                // MLflow answers a removed alias of an existing model with
                // INVALID_PARAMETER_VALUE, not RESOURCE_DOES_NOT_EXIST: tell the two apart by
                // the model's alias list, so a removed alias reads as removed.
                kiln_store::StoreError::InvalidParameter(m) => {
                    match kiln_store::RegistryStore::alias_version(t.store.as_ref(), name, alias) {
                        Ok(None) => ServeError::NotFound(format!(
                            "alias `{alias}` of `{name}` was removed ({m})"
                        )),
                        _ => self.load_err(kiln_store::StoreError::InvalidParameter(m).into()),
                    }
                }
                e => self.load_err(e.into()),
            })?;
        Ok(Some(mv.version))
    }

    fn load(&self, version: Option<&str>) -> Result<Loaded, ServeError> {
        let uri = match (&self.reference, version) {
            (ModelRef::Alias { name, .. }, Some(v)) => format!("models:/{name}/{v}"),
            (r, _) => r.uri(),
        };
        let (model, source) = match (&self.reference, &self.tracker) {
            (ModelRef::Path(p), _) => (
                Model::load(p).map_err(|e| self.load_err(e))?,
                kiln_train::tracking::ModelSource::default(),
            ),
            (_, Some(t)) => t.load_any_model(&uri).map_err(|e| self.load_err(e))?,
            (_, None) => {
                return Err(ServeError::Config(format!(
                    "`{uri}` needs a tracking store"
                )))
            }
        };
        Ok(Loaded {
            scorer: scorer_for(model),
            name: source.name,
            version: source.version,
            run_id: source.run_id,
            // What the arm follows (`models:/churn@champion`), before and after a swap; the
            // version that answers is `version`.
            source: self.reference.uri(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::ModelRef;

    #[test]
    fn parses_references() {
        assert_eq!(
            ModelRef::parse("models:/churn@champion").ok(),
            Some(ModelRef::Alias {
                name: "churn".into(),
                alias: "champion".into()
            })
        );
        assert_eq!(
            ModelRef::parse("models:/churn/3").ok(),
            Some(ModelRef::Version {
                name: "churn".into(),
                version: "3".into()
            })
        );
        assert_eq!(
            ModelRef::parse("model/kiln-model.json").ok(),
            Some(ModelRef::Path("model/kiln-model.json".into()))
        );
        assert!(ModelRef::parse("models:/churn").is_err());
        assert!(ModelRef::parse("models:/@x").is_err());
        assert!(ModelRef::parse("s3://bucket/model").is_err());
    }
}
