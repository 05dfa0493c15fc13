//! The search filter language (MLflow's grammar): clauses joined by `AND`, parsed into a
//! [`Filter`] AST that stores compile to SQL, and `order_by` clauses parsed into [`OrderBy`].
//!
//! ```
//! use kiln_types::filter::{parse_filter, Target, Entity, Comparator, Value};
//! let f = parse_filter("metrics.acc > 0.9 AND params.model = 'lr'", Target::Runs).unwrap();
//! assert_eq!(f.clauses.len(), 2);
//! assert_eq!(f.clauses[0].entity, Entity::Metric);
//! assert_eq!(f.clauses[0].comparator, Comparator::Gt);
//! assert_eq!(f.clauses[0].value, Value::Number(0.9));
//! ```

mod parser;

pub use parser::{parse_filter, parse_order_by};

/// What a filter searches; decides which keys and comparators are valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Runs,
    Experiments,
    RegisteredModels,
    ModelVersions,
    LoggedModels,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entity {
    Metric,
    Param,
    Tag,
    Attribute,
    Dataset,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Comparator {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Like,
    ILike,
    In,
    NotIn,
    IsNull,
    IsNotNull,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Number(f64),
    String(String),
    List(Vec<String>),
    /// For `IS NULL` / `IS NOT NULL`.
    None,
}

/// One `<entity>.<key> <comparator> <value>` clause. Attribute keys are normalized
/// (`created` → `start_time`, `Run Name`/`run name` → `run_name`, `run_uuid` → `run_id`).
#[derive(Debug, Clone, PartialEq)]
pub struct Clause {
    pub entity: Entity,
    pub key: String,
    pub comparator: Comparator,
    pub value: Value,
}

/// Clauses that must all hold.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Filter {
    pub clauses: Vec<Clause>,
}

/// One `order_by` term.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderBy {
    pub entity: Entity,
    pub key: String,
    pub ascending: bool,
}

/// A filter or order_by that does not parse or uses an unsupported key/comparator.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct FilterError(pub String);
