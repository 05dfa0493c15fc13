//! Search requests and paged results.

use kiln_types::filter::{Filter, OrderBy};
use kiln_types::ViewType;

/// Largest page a search returns.
pub const MAX_RESULTS_LIMIT: u64 = 50_000;

/// A page of results and the token for the next one.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_page_token: Option<String>,
}

/// Page size and position. `offset` comes from a decoded page token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageRequest {
    pub max_results: u64,
    pub offset: u64,
}

impl Default for PageRequest {
    fn default() -> Self {
        Self {
            max_results: 1000,
            offset: 0,
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct ExperimentQuery {
    pub filter: Filter,
    pub order_by: Vec<OrderBy>,
    pub view: ViewType,
    pub page: PageRequest,
}

#[derive(Debug, Clone, Default)]
pub struct RunQuery {
    pub experiment_ids: Vec<String>,
    pub filter: Filter,
    pub order_by: Vec<OrderBy>,
    pub view: ViewType,
    pub page: PageRequest,
}

#[derive(Debug, Clone, Default)]
pub struct LoggedModelQuery {
    pub experiment_ids: Vec<String>,
    pub filter: Filter,
    pub order_by: Vec<OrderBy>,
    pub page: PageRequest,
}

/// Registered-model and model-version searches.
#[derive(Debug, Clone, Default)]
pub struct NameQuery {
    pub filter: Filter,
    pub order_by: Vec<OrderBy>,
    pub page: PageRequest,
}
