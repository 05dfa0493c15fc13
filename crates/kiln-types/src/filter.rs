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

impl Entity {
    fn prefix(self) -> &'static str {
        match self {
            Entity::Metric => "metrics",
            Entity::Param => "params",
            Entity::Tag => "tags",
            Entity::Attribute => "attributes",
            Entity::Dataset => "datasets",
        }
    }
}

/// `<prefix>.<key>` with the key quoted unless it is a plain identifier; attributes bare (every
/// target reads a bare name as an attribute).
fn write_key(f: &mut std::fmt::Formatter<'_>, entity: Entity, key: &str) -> std::fmt::Result {
    let plain = !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if entity != Entity::Attribute {
        write!(f, "{}.", entity.prefix())?;
    }
    if plain {
        f.write_str(key)
    } else if key.contains('`') {
        write!(f, "\"{key}\"")
    } else {
        write!(f, "`{key}`")
    }
}

fn write_string(f: &mut std::fmt::Formatter<'_>, s: &str) -> std::fmt::Result {
    write!(f, "'{}'", s.replace('\\', "\\\\").replace('\'', "''"))
}

/// The filter in the language [`parse_filter`] reads (what a client sends to a server).
impl std::fmt::Display for Filter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, c) in self.clauses.iter().enumerate() {
            if i > 0 {
                f.write_str(" AND ")?;
            }
            write_key(f, c.entity, &c.key)?;
            let op = match c.comparator {
                Comparator::Eq => "=",
                Comparator::Ne => "!=",
                Comparator::Lt => "<",
                Comparator::Le => "<=",
                Comparator::Gt => ">",
                Comparator::Ge => ">=",
                Comparator::Like => "LIKE",
                Comparator::ILike => "ILIKE",
                Comparator::In => "IN",
                Comparator::NotIn => "NOT IN",
                Comparator::IsNull => "IS NULL",
                Comparator::IsNotNull => "IS NOT NULL",
            };
            write!(f, " {op}")?;
            match &c.value {
                Value::None => {}
                Value::Number(n) => write!(f, " {n}")?,
                Value::String(s) => {
                    f.write_str(" ")?;
                    write_string(f, s)?;
                }
                Value::List(items) => {
                    f.write_str(" (")?;
                    for (j, s) in items.iter().enumerate() {
                        if j > 0 {
                            f.write_str(", ")?;
                        }
                        write_string(f, s)?;
                    }
                    f.write_str(")")?;
                }
            }
        }
        Ok(())
    }
}

/// One `order_by` term as [`parse_order_by`] reads it.
impl std::fmt::Display for OrderBy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write_key(f, self.entity, &self.key)?;
        f.write_str(if self.ascending { " ASC" } else { " DESC" })
    }
}

#[cfg(test)]
mod display_tests {
    use super::*;

    #[test]
    fn filters_print_back_to_what_parses_to_them() {
        for (text, target) in [
            ("metrics.acc > 0.9 AND params.model = 'lr'", Target::Runs),
            ("tags.`mlflow.runName` = 'it''s a \\\\ path' AND attributes.status IN ('FINISHED', 'RUNNING')", Target::Runs),
            ("metrics.\"my metric-1.x\" <= -1.5e-7 AND tags.t IS NOT NULL", Target::Runs),
            ("attributes.`Run name` LIKE 'r%' AND attributes.status NOT IN ('FAILED')", Target::Runs),
            ("name = 'churn' AND tags.team ILIKE 'ml%'", Target::ModelVersions),
            ("name LIKE 'ch%'", Target::RegisteredModels),
            ("", Target::Runs),
        ] {
            let parsed = parse_filter(text, target).expect(text);
            let printed = parsed.to_string();
            assert_eq!(parse_filter(&printed, target).expect(&printed), parsed, "{text} -> {printed}");
        }
    }

    #[test]
    fn order_by_prints_back() {
        for text in [
            "metrics.acc DESC",
            "attributes.start_time ASC",
            "params.`a b` DESC",
        ] {
            let parsed = parse_order_by(text, Target::Runs).expect(text);
            let printed = parsed.to_string();
            assert_eq!(
                parse_order_by(&printed, Target::Runs).expect(&printed),
                parsed
            );
        }
    }
}
