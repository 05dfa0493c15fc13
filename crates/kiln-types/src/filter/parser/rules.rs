//! Which keys, comparators and values each [`Target`] accepts, and key normalization.

use super::lexer::{Literal, RawKey};
use crate::filter::{Clause, Comparator, Entity, FilterError, Target, Value};

use Comparator::{Eq, Ge, Gt, ILike, In, IsNotNull, IsNull, Le, Like, Lt, Ne, NotIn};

/// What a key's values are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Compared with a number.
    Numeric,
    /// Compared with a 'single-quoted' string.
    Text,
    /// A string key that also takes an unquoted number (as its literal text), e.g. `version = 3`.
    TextOrNumber,
}

/// The comparators and value kind a key accepts.
#[derive(Debug, Clone, Copy)]
struct Rule {
    kind: Kind,
    comparators: &'static [Comparator],
}

const NUMERIC: Rule = Rule {
    kind: Kind::Numeric,
    comparators: &[Eq, Ne, Lt, Le, Gt, Ge],
};
const TEXT: Rule = Rule {
    kind: Kind::Text,
    comparators: &[Eq, Ne, Like, ILike],
};
const TEXT_OR_NULL: Rule = Rule {
    kind: Kind::Text,
    comparators: &[Eq, Ne, Like, ILike, IsNull, IsNotNull],
};
const TEXT_OR_LIST: Rule = Rule {
    kind: Kind::Text,
    comparators: &[Eq, Ne, Like, ILike, In, NotIn],
};
const VERSION: Rule = Rule {
    kind: Kind::TextOrNumber,
    comparators: &[Eq, Ne, Like, ILike, In, NotIn],
};
const ID: Rule = Rule {
    kind: Kind::TextOrNumber,
    comparators: &[Eq, Ne, In, NotIn],
};

const RUN_ATTRIBUTES: &[(&str, Rule)] = &[
    ("run_id", TEXT_OR_LIST),
    ("run_name", TEXT_OR_LIST),
    ("status", TEXT_OR_LIST),
    ("user_id", TEXT_OR_LIST),
    ("artifact_uri", TEXT_OR_LIST),
    ("start_time", NUMERIC),
    ("end_time", NUMERIC),
];
const EXPERIMENT_ATTRIBUTES: &[(&str, Rule)] = &[
    ("name", TEXT),
    ("creation_time", NUMERIC),
    ("last_update_time", NUMERIC),
    ("experiment_id", ID),
];
const REGISTERED_MODEL_ATTRIBUTES: &[(&str, Rule)] = &[("name", TEXT)];
const MODEL_VERSION_ATTRIBUTES: &[(&str, Rule)] = &[
    ("name", TEXT_OR_LIST),
    ("run_id", TEXT_OR_LIST),
    ("source_path", TEXT_OR_LIST),
    ("version", VERSION),
    ("version_number", NUMERIC),
];
const LOGGED_MODEL_ATTRIBUTES: &[(&str, Rule)] = &[
    ("name", TEXT_OR_LIST),
    ("model_id", TEXT_OR_LIST),
    ("source_run_id", TEXT_OR_LIST),
    ("status", TEXT_OR_LIST),
    ("model_type", TEXT_OR_LIST),
    ("creation_timestamp", NUMERIC),
    ("last_updated_timestamp", NUMERIC),
];
const DATASET_KEYS: &[(&str, Rule)] = &[
    ("name", TEXT_OR_LIST),
    ("digest", TEXT_OR_LIST),
    ("context", TEXT_OR_LIST),
];

const RUN_ORDER_KEYS: &[&str] = &[
    "run_id",
    "run_name",
    "status",
    "user_id",
    "artifact_uri",
    "start_time",
    "end_time",
];
const EXPERIMENT_ORDER_KEYS: &[&str] =
    &["name", "experiment_id", "creation_time", "last_update_time"];
const REGISTERED_MODEL_ORDER_KEYS: &[&str] =
    &["name", "creation_timestamp", "last_updated_timestamp"];
const MODEL_VERSION_ORDER_KEYS: &[&str] = &[
    "name",
    "version_number",
    "creation_timestamp",
    "last_updated_timestamp",
];
const LOGGED_MODEL_ORDER_KEYS: &[&str] = &["name", "creation_timestamp", "last_updated_timestamp"];

/// The entity an entity prefix names, if any (case-insensitive).
fn entity_for_prefix(prefix: &str) -> Option<Entity> {
    Some(match prefix.to_ascii_lowercase().as_str() {
        "metrics" | "metric" => Entity::Metric,
        "params" | "param" | "parameters" | "parameter" => Entity::Param,
        "tags" | "tag" => Entity::Tag,
        "attributes" | "attribute" | "attr" | "run" => Entity::Attribute,
        "datasets" | "dataset" => Entity::Dataset,
        _ => return None,
    })
}

/// The entities a filter on `target` may use.
fn filter_entities(target: Target) -> &'static [Entity] {
    match target {
        Target::Runs => &[
            Entity::Metric,
            Entity::Param,
            Entity::Tag,
            Entity::Attribute,
            Entity::Dataset,
        ],
        Target::Experiments | Target::RegisteredModels | Target::ModelVersions => {
            &[Entity::Tag, Entity::Attribute]
        }
        Target::LoggedModels => &[
            Entity::Metric,
            Entity::Param,
            Entity::Tag,
            Entity::Attribute,
        ],
    }
}

/// The entities an order_by on `target` may use.
fn order_entities(target: Target) -> &'static [Entity] {
    match target {
        Target::Runs => &[
            Entity::Metric,
            Entity::Param,
            Entity::Tag,
            Entity::Attribute,
        ],
        Target::LoggedModels => &[Entity::Metric, Entity::Attribute],
        Target::Experiments | Target::RegisteredModels | Target::ModelVersions => {
            &[Entity::Attribute]
        }
    }
}

/// The canonical prefix of an entity, for messages.
fn entity_name(entity: Entity) -> &'static str {
    match entity {
        Entity::Metric => "metric",
        Entity::Param => "parameter",
        Entity::Tag => "tag",
        Entity::Attribute => "attribute",
        Entity::Dataset => "dataset",
    }
}

fn target_name(target: Target) -> &'static str {
    match target {
        Target::Runs => "runs",
        Target::Experiments => "experiments",
        Target::RegisteredModels => "registered models",
        Target::ModelVersions => "model versions",
        Target::LoggedModels => "logged models",
    }
}

/// The spelling of a comparator, for messages.
fn comparator_text(comparator: Comparator) -> &'static str {
    match comparator {
        Eq => "=",
        Ne => "!=",
        Lt => "<",
        Le => "<=",
        Gt => ">",
        Ge => ">=",
        Like => "LIKE",
        ILike => "ILIKE",
        In => "IN",
        NotIn => "NOT IN",
        IsNull => "IS NULL",
        IsNotNull => "IS NOT NULL",
    }
}

/// `['a', 'b']`, for messages.
fn quoted_list<'a>(items: impl IntoIterator<Item = &'a str>) -> String {
    let quoted: Vec<String> = items.into_iter().map(|s| format!("'{s}'")).collect();
    format!("[{}]", quoted.join(", "))
}

/// Resolve a key's prefix to an entity allowed in `allowed`.
fn resolve_entity(key: &RawKey, target: Target, allowed: &[Entity]) -> Result<Entity, FilterError> {
    let Some(prefix) = &key.prefix else {
        return Ok(Entity::Attribute);
    };
    match entity_for_prefix(prefix) {
        Some(entity) if allowed.contains(&entity) => Ok(entity),
        _ => Err(FilterError(format!(
            "Invalid entity type '{prefix}' in '{}' for {} search. Valid values are {}",
            key.text,
            target_name(target),
            quoted_list(allowed.iter().map(|e| entity_name(*e)))
        ))),
    }
}

/// Lowercase an attribute name and apply `target`'s aliases.
fn normalize_attribute(target: Target, name: &str) -> String {
    let lower = name.to_ascii_lowercase();
    let canonical = match (target, lower.as_str()) {
        (Target::Runs, "created") => "start_time",
        (Target::Runs, "run_uuid") => "run_id",
        (Target::Runs, "run name" | "runname") => "run_name",
        (Target::LoggedModels, "creation_time") => "creation_timestamp",
        (Target::RegisteredModels | Target::ModelVersions, "timestamp") => "creation_timestamp",
        _ => return lower,
    };
    canonical.to_string()
}

/// The attribute rules of a filter on `target`.
fn attribute_rules(target: Target) -> &'static [(&'static str, Rule)] {
    match target {
        Target::Runs => RUN_ATTRIBUTES,
        Target::Experiments => EXPERIMENT_ATTRIBUTES,
        Target::RegisteredModels => REGISTERED_MODEL_ATTRIBUTES,
        Target::ModelVersions => MODEL_VERSION_ATTRIBUTES,
        Target::LoggedModels => LOGGED_MODEL_ATTRIBUTES,
    }
}

/// Look `name` up in a rule table.
fn lookup(table: &[(&str, Rule)], name: &str) -> Option<Rule> {
    table
        .iter()
        .find(|(key, _)| *key == name)
        .map(|(_, rule)| *rule)
}

/// The error for an attribute `target` does not know.
fn unknown_attribute(target: Target, key: &RawKey, valid: &[&str]) -> FilterError {
    if target == Target::Runs && key.name.eq_ignore_ascii_case("lifecycle_stage") {
        return FilterError(format!(
            "Invalid attribute key '{}': lifecycle_stage cannot be filtered on; \
             use run_view_type instead",
            key.name
        ));
    }
    FilterError(format!(
        "Invalid attribute key '{}' specified for {} search. Valid keys are {}",
        key.name,
        target_name(target),
        quoted_list(valid.iter().copied())
    ))
}

/// Resolve a filter key to its entity, stored key and rule.
fn resolve_filter_key(target: Target, key: &RawKey) -> Result<(Entity, String, Rule), FilterError> {
    let entity = resolve_entity(key, target, filter_entities(target))?;
    let (name, rule) = match entity {
        Entity::Metric => (key.name.clone(), Some(NUMERIC)),
        Entity::Param | Entity::Tag if target == Target::Runs => {
            (key.name.clone(), Some(TEXT_OR_NULL))
        }
        Entity::Param | Entity::Tag => (key.name.clone(), Some(TEXT)),
        Entity::Dataset => {
            let name = key.name.to_ascii_lowercase();
            let rule = lookup(DATASET_KEYS, &name);
            (name, rule)
        }
        Entity::Attribute => {
            let name = normalize_attribute(target, &key.name);
            let rule = lookup(attribute_rules(target), &name);
            (name, rule)
        }
    };
    match rule {
        Some(rule) => Ok((entity, name, rule)),
        None if entity == Entity::Dataset => Err(FilterError(format!(
            "Invalid dataset key '{}'. Valid keys are {}",
            key.name,
            quoted_list(DATASET_KEYS.iter().map(|(k, _)| *k))
        ))),
        None => {
            let valid: Vec<&str> = attribute_rules(target).iter().map(|(k, _)| *k).collect();
            Err(unknown_attribute(target, key, &valid))
        }
    }
}

/// Describe a key for messages, e.g. `metric 'acc'`.
fn describe(entity: Entity, key: &str) -> String {
    format!("{} '{key}'", entity_name(entity))
}

/// Check `literal` against `rule` and `comparator`, producing the clause's value.
fn convert_value(
    rule: Rule,
    comparator: Comparator,
    literal: Option<Literal>,
    what: &str,
) -> Result<Value, FilterError> {
    let op = comparator_text(comparator);
    match (comparator, literal) {
        (IsNull | IsNotNull, _) => Ok(Value::None),
        (In | NotIn, Some(Literal::List(items))) => Ok(Value::List(items)),
        (In | NotIn, _) => Err(FilterError(format!(
            "Expected a list of 'single-quoted' strings such as ('a', 'b') after '{op}' \
             for {what}"
        ))),
        (_, Some(Literal::List(_))) => Err(FilterError(format!(
            "A value list is only valid with 'IN' or 'NOT IN', not '{op}', for {what}"
        ))),
        (_, Some(Literal::Number { value, text })) => match rule.kind {
            Kind::Numeric => Ok(Value::Number(value)),
            Kind::TextOrNumber => Ok(Value::String(text)),
            Kind::Text => Err(FilterError(format!(
                "Expected a 'single-quoted' string value for {what}, got {text}"
            ))),
        },
        (_, Some(Literal::Str(s))) => match rule.kind {
            Kind::Numeric => Err(FilterError(format!(
                "Expected a numeric value for {what}, got the quoted string '{s}'"
            ))),
            Kind::Text | Kind::TextOrNumber => Ok(Value::String(s)),
        },
        (_, None) => Err(FilterError(format!(
            "Missing value after '{op}' for {what}"
        ))),
    }
}

/// Build a validated clause for `target` from its parts as written.
pub(super) fn build_clause(
    target: Target,
    key: &RawKey,
    comparator: Comparator,
    literal: Option<Literal>,
) -> Result<Clause, FilterError> {
    let (entity, name, rule) = resolve_filter_key(target, key)?;
    let what = describe(entity, &name);
    if !rule.comparators.contains(&comparator) {
        return Err(FilterError(format!(
            "Invalid comparator '{}' for {what}. Valid comparators are {}",
            comparator_text(comparator),
            quoted_list(rule.comparators.iter().map(|c| comparator_text(*c)))
        )));
    }
    let value = convert_value(rule, comparator, literal, &what)?;
    Ok(Clause {
        entity,
        key: name,
        comparator,
        value,
    })
}

/// The orderable attributes of `target`.
fn order_attributes(target: Target) -> &'static [&'static str] {
    match target {
        Target::Runs => RUN_ORDER_KEYS,
        Target::Experiments => EXPERIMENT_ORDER_KEYS,
        Target::RegisteredModels => REGISTERED_MODEL_ORDER_KEYS,
        Target::ModelVersions => MODEL_VERSION_ORDER_KEYS,
        Target::LoggedModels => LOGGED_MODEL_ORDER_KEYS,
    }
}

/// Resolve an order_by key to its entity and stored key.
pub(super) fn resolve_order_key(
    target: Target,
    key: &RawKey,
) -> Result<(Entity, String), FilterError> {
    let entity = resolve_entity(key, target, order_entities(target))?;
    if entity != Entity::Attribute {
        return Ok((entity, key.name.clone()));
    }
    let name = normalize_attribute(target, &key.name);
    let valid = order_attributes(target);
    if valid.contains(&name.as_str()) {
        Ok((entity, name))
    } else {
        Err(FilterError(format!(
            "Invalid order_by key '{}' for {} search. Valid attribute keys are {}",
            key.text,
            target_name(target),
            quoted_list(valid.iter().copied())
        )))
    }
}
