//! Read/create access for the CLI (`kiln experiments`, `kiln runs`) over the store traits: a
//! store opened directly, or a server's REST API through [`kiln_client::RestStore`].

use std::sync::Arc;

use kiln_store::{ExperimentQuery, Page, PageRequest, RunQuery, TrackingStore};
use kiln_types::{filter, Experiment, Run, ViewType};

pub(crate) struct Tracking(Arc<dyn TrackingStore>);

impl Tracking {
    /// A store to read: a SQLite file named by the URI must exist.
    pub(crate) fn open(uri: Option<&str>) -> anyhow::Result<Self> {
        Self::open_with(uri, false)
    }

    /// A store to write to, created when it is a SQLite file that does not exist yet.
    pub(crate) fn open_or_create(uri: Option<&str>) -> anyhow::Result<Self> {
        Self::open_with(uri, true)
    }

    fn open_with(uri: Option<&str>, create: bool) -> anyhow::Result<Self> {
        // --tracking-uri / KILN_TRACKING_URI, else the store the other commands use
        // (KILN_BACKEND_STORE_URI), else the local `.kiln/kiln.db`.
        let from_env = std::env::var(crate::cli::EnvVars::BACKEND_STORE_URI)
            .ok()
            .filter(|u| !u.is_empty());
        let uri = match uri.map(str::to_string).or(from_env) {
            Some(u) => {
                // A named SQLite file must exist: opening would create it (and its
                // directories), and a typo would then read as an empty store.
                if !create {
                    crate::commands::require_existing_store(&u)?;
                }
                u
            }
            None => crate::commands::default_backend_uri()?,
        };
        Ok(Self(crate::commands::open_metadata(&uri)?))
    }

    /// Resolve an experiment by id or name.
    pub(crate) fn experiment(&self, id_or_name: &str) -> anyhow::Result<Experiment> {
        let s = &self.0;
        Ok(if kiln_types::is_valid_experiment_id(id_or_name) {
            s.get_experiment(id_or_name)
                .or_else(|_| s.get_experiment_by_name(id_or_name))?
        } else {
            s.get_experiment_by_name(id_or_name)?
        })
    }

    pub(crate) fn experiments(&self, all: bool) -> anyhow::Result<Vec<Experiment>> {
        let mut out = Vec::new();
        let mut offset = 0;
        loop {
            let page = self.0.search_experiments(&ExperimentQuery {
                view: if all {
                    ViewType::All
                } else {
                    ViewType::ActiveOnly
                },
                page: PageRequest {
                    max_results: 1000,
                    offset,
                },
                ..ExperimentQuery::default()
            })?;
            offset += page.items.len() as u64;
            out.extend(page.items);
            if page.next_page_token.is_none() {
                return Ok(out);
            }
        }
    }

    pub(crate) fn create_experiment(&self, name: &str) -> anyhow::Result<String> {
        Ok(self.0.create_experiment(name, None, &[])?)
    }

    /// A run by its id, or by a unique prefix of at least 6 hex digits (the short ids `kiln
    /// runs compare` prints).
    pub(crate) fn run(&self, run_id: &str) -> anyhow::Result<Run> {
        match self.0.get_run(run_id) {
            Err(kiln_store::StoreError::NotFound(message))
                if run_id.len() >= 6
                    && run_id.len() < 32
                    && run_id.bytes().all(|b| b.is_ascii_hexdigit()) =>
            {
                let prefix = run_id.to_ascii_lowercase();
                let experiment_ids: Vec<String> = self
                    .experiments(true)?
                    .into_iter()
                    .map(|e| e.experiment_id)
                    .collect();
                let filter = filter::parse_filter(
                    &format!("attributes.run_id LIKE '{prefix}%'"),
                    filter::Target::Runs,
                )
                .map_err(|e| anyhow::anyhow!("{e}"))?;
                let found = self.0.search_runs(&RunQuery {
                    experiment_ids,
                    filter,
                    order_by: Vec::new(),
                    view: ViewType::All,
                    page: PageRequest {
                        max_results: 2,
                        offset: 0,
                    },
                })?;
                match found.items.as_slice() {
                    [only] => Ok(only.clone()),
                    [] => Err(kiln_store::StoreError::NotFound(message).into()),
                    [a, b, ..] => Err(crate::commands::InputError(format!(
                        "Run id prefix `{run_id}` is ambiguous: it matches {} and {} (at least); give more of the id",
                        a.info.run_id, b.info.run_id
                    ))
                    .into()),
                }
            }
            other => Ok(other?),
        }
    }

    pub(crate) fn search_runs(
        &self,
        experiment_id: &str,
        filter_text: &str,
        order_by: &[String],
        max: u64,
    ) -> anyhow::Result<Page<Run>> {
        let order = order_by
            .iter()
            .map(|o| filter::parse_order_by(o, filter::Target::Runs))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| crate::commands::InputError(format!("Invalid --order-by: {e}")))?;
        let parsed = filter::parse_filter(filter_text, filter::Target::Runs)
            .map_err(|e| crate::commands::InputError(format!("Invalid --filter: {e}")))?;
        Ok(self.0.search_runs(&RunQuery {
            experiment_ids: vec![experiment_id.to_string()],
            filter: parsed,
            order_by: order,
            view: ViewType::ActiveOnly,
            page: PageRequest {
                max_results: max,
                offset: 0,
            },
        })?)
    }
}

/// A URI without its password (one implementation, shared with the store's own messages).
pub(crate) use kiln_store_sql::redact;
