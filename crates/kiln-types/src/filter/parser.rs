//! Parser for the filter language; see the module docs of [`super`].
//!
//! A filter is `<clause> [AND <clause>]...` (the `AND` keyword is case-insensitive) where a
//! clause is `<key> <comparator> [<value>]`:
//!
//! * key: `<prefix>.<name>` or a bare name (an attribute). The name may be quoted with
//!   backticks or double quotes (`` tags.`mlflow.runName` ``, `metrics."my metric"`); unquoted,
//!   everything after the first dot is the name (`tags.mlflow.runName`).
//! * comparator: `= != <> < <= > >= LIKE ILIKE IN NOT IN IS NULL IS NOT NULL`.
//! * value: a number, a 'single-quoted' string (`''`, `\'` are a quote, `\\` a backslash) or
//!   a list `('a', 'b')` for `IN` / `NOT IN`; none for `IS [NOT] NULL`.
//!
//! `OR` and parentheses are rejected. Which keys and comparators are valid depends on the
//! [`Target`]; attribute keys are lowercased and normalized (`created` → `start_time`).

mod lexer;
mod rules;

use lexer::{invalid_clause, Cursor};

use super::{Clause, Comparator, Filter, FilterError, OrderBy, Target};

/// Parse a filter string for `target`. An empty or blank string is an empty filter.
///
/// # Errors
/// A [`FilterError`] naming the offending clause, key, comparator or value when the string
/// does not parse or uses a key or comparator `target` does not support.
pub fn parse_filter(input: &str, target: Target) -> Result<Filter, FilterError> {
    let mut cursor = Cursor::new(input);
    cursor.skip_ws();
    let mut clauses = Vec::new();
    if cursor.at_end() {
        return Ok(Filter { clauses });
    }
    loop {
        clauses.push(parse_clause(&mut cursor, target)?);
        cursor.skip_ws();
        if cursor.at_end() {
            return Ok(Filter { clauses });
        }
        expect_and(&mut cursor)?;
    }
}

/// Parse one order_by term such as `metrics.acc DESC` for `target` (ascending by default).
///
/// # Errors
/// A [`FilterError`] when the term does not parse, names an entity or attribute `target`
/// cannot be ordered by, or has anything after `ASC`/`DESC`.
pub fn parse_order_by(input: &str, target: Target) -> Result<OrderBy, FilterError> {
    let mut cursor = Cursor::new(input);
    cursor.skip_ws();
    if cursor.at_end() {
        return Err(invalid_order_by(input));
    }
    let key = cursor.read_key()?;
    cursor.skip_ws();
    let ascending = if cursor.eat_keyword("DESC") {
        false
    } else {
        cursor.eat_keyword("ASC") || cursor.at_end()
    };
    cursor.skip_ws();
    if !cursor.at_end() {
        return Err(invalid_order_by(input));
    }
    let (entity, key) = rules::resolve_order_key(target, &key)?;
    Ok(OrderBy {
        entity,
        key,
        ascending,
    })
}

/// The error for an order_by term that is not `<key> [ASC|DESC]`.
fn invalid_order_by(input: &str) -> FilterError {
    FilterError(format!(
        "Invalid order_by clause '{input}'. Expected '<key> [ASC|DESC]', \
         e.g. 'metrics.acc DESC'"
    ))
}

/// Parse `<key> <comparator> [<value>]` at the cursor.
fn parse_clause(cursor: &mut Cursor<'_>, target: Target) -> Result<Clause, FilterError> {
    cursor.skip_ws();
    check_clause_start(cursor)?;
    let key = cursor.read_key()?;
    cursor.skip_ws();
    let comparator = cursor.read_comparator()?;
    let literal = if takes_value(comparator) {
        cursor.skip_ws();
        Some(cursor.read_literal()?)
    } else {
        None
    };
    rules::build_clause(target, &key, comparator, literal)
}

/// Reject what cannot start a clause: the end of input, parentheses and `AND`/`OR`.
fn check_clause_start(cursor: &Cursor<'_>) -> Result<(), FilterError> {
    if cursor.at_end() {
        return Err(FilterError(
            "Invalid filter string: expected a clause after 'AND'".to_string(),
        ));
    }
    let token = cursor.peek_token_text();
    let is_keyword = token.eq_ignore_ascii_case("AND") || token.eq_ignore_ascii_case("OR");
    if matches!(cursor.peek(), Some('(' | ')')) || is_keyword {
        return Err(invalid_clause(token));
    }
    Ok(())
}

/// Consume the `AND` between two clauses; anything else (`OR`, `)`, ...) is an error.
fn expect_and(cursor: &mut Cursor<'_>) -> Result<(), FilterError> {
    let token = cursor.peek_token_text();
    if cursor.eat_keyword("AND") {
        Ok(())
    } else {
        Err(invalid_clause(token))
    }
}

/// Whether a comparator is followed by a value (all but `IS [NOT] NULL`).
fn takes_value(comparator: Comparator) -> bool {
    !matches!(comparator, Comparator::IsNull | Comparator::IsNotNull)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::filter::{Entity, Value};

    fn runs(input: &str) -> Filter {
        match parse_filter(input, Target::Runs) {
            Ok(f) => f,
            Err(e) => panic!("{input:?} should parse: {e}"),
        }
    }

    fn one(input: &str, target: Target) -> Clause {
        let filter = parse_filter(input, target).unwrap_or_else(|e| panic!("{input:?}: {e}"));
        assert_eq!(filter.clauses.len(), 1, "{input:?}");
        filter.clauses.into_iter().next().unwrap()
    }

    fn clause(entity: Entity, key: &str, comparator: Comparator, value: Value) -> Clause {
        Clause {
            entity,
            key: key.to_string(),
            comparator,
            value,
        }
    }

    fn err(input: &str, target: Target) -> String {
        match parse_filter(input, target) {
            Ok(f) => panic!("{input:?} should not parse, got {f:?}"),
            Err(e) => e.0,
        }
    }

    fn assert_err(input: &str, target: Target, needle: &str) {
        let message = err(input, target);
        assert!(
            message.contains(needle),
            "{input:?}: {message:?} does not contain {needle:?}"
        );
    }

    fn s(v: &str) -> Value {
        Value::String(v.to_string())
    }

    fn order(input: &str, target: Target) -> OrderBy {
        parse_order_by(input, target).unwrap_or_else(|e| panic!("{input:?}: {e}"))
    }

    fn order_err(input: &str, target: Target) -> String {
        match parse_order_by(input, target) {
            Ok(o) => panic!("{input:?} should not parse, got {o:?}"),
            Err(e) => e.0,
        }
    }

    #[test]
    fn empty_and_blank_are_empty_filters() {
        assert_eq!(runs(""), Filter::default());
        assert_eq!(runs("   \t\n "), Filter::default());
    }

    #[test]
    fn entity_prefixes_and_aliases() {
        for p in ["metrics", "metric", "METRICS"] {
            let c = one(&format!("{p}.acc > 1"), Target::Runs);
            assert_eq!(
                c,
                clause(Entity::Metric, "acc", Comparator::Gt, Value::Number(1.0))
            );
        }
        for p in ["params", "param", "parameters", "parameter"] {
            let c = one(&format!("{p}.lr = '0.1'"), Target::Runs);
            assert_eq!(c, clause(Entity::Param, "lr", Comparator::Eq, s("0.1")));
        }
        for p in ["tags", "tag"] {
            let c = one(&format!("{p}.team = 'a'"), Target::Runs);
            assert_eq!(c, clause(Entity::Tag, "team", Comparator::Eq, s("a")));
        }
        for p in ["attributes", "attribute", "attr", "run"] {
            let c = one(&format!("{p}.status = 'FINISHED'"), Target::Runs);
            assert_eq!(
                c,
                clause(Entity::Attribute, "status", Comparator::Eq, s("FINISHED"))
            );
        }
        for p in ["datasets", "dataset"] {
            let c = one(&format!("{p}.digest = 'abc'"), Target::Runs);
            assert_eq!(
                c,
                clause(Entity::Dataset, "digest", Comparator::Eq, s("abc"))
            );
        }
        let c = one("status = 'RUNNING'", Target::Runs);
        assert_eq!(c.entity, Entity::Attribute);
    }

    #[test]
    fn quoted_keys() {
        let c = one("tags.`mlflow.runName` = 'x'", Target::Runs);
        assert_eq!(
            c,
            clause(Entity::Tag, "mlflow.runName", Comparator::Eq, s("x"))
        );
        let c = one("metrics.\"my metric-1.x\" <= 3", Target::Runs);
        assert_eq!(c.key, "my metric-1.x");
        let c = one("params.`a``b` = 'v'", Target::Runs);
        assert_eq!(c.key, "a`b");
        let c = one("`Run Name` = 'r'", Target::Runs);
        assert_eq!(
            c,
            clause(Entity::Attribute, "run_name", Comparator::Eq, s("r"))
        );
        let c = one("attributes.\"run name\" = 'r'", Target::Runs);
        assert_eq!(c.key, "run_name");
        let c = one("attributes.`Run name` LIKE 'r%'", Target::Runs);
        assert_eq!(c.key, "run_name");
    }

    #[test]
    fn unquoted_keys_keep_everything_after_the_prefix() {
        let c = one("tags.mlflow.runName = 'x'", Target::Runs);
        assert_eq!(c.key, "mlflow.runName");
        let c = one("metrics.val/loss-1:a = 2", Target::Runs);
        assert_eq!(c.key, "val/loss-1:a");
        let c = one("params.CaseSensitive = 'x'", Target::Runs);
        assert_eq!(c.key, "CaseSensitive");
    }

    #[test]
    fn attribute_normalization() {
        for (written, stored) in [
            ("created", "start_time"),
            ("Created", "start_time"),
            ("attributes.start_time", "start_time"),
            ("END_TIME", "end_time"),
        ] {
            let c = one(&format!("{written} >= 5"), Target::Runs);
            assert_eq!(c.key, stored, "{written}");
        }
        for (written, stored) in [
            ("run_uuid", "run_id"),
            ("attr.run_id", "run_id"),
            ("runName", "run_name"),
            ("run_name", "run_name"),
            ("user_id", "user_id"),
            ("artifact_uri", "artifact_uri"),
        ] {
            let c = one(&format!("{written} = 'v'"), Target::Runs);
            assert_eq!(c.key, stored, "{written}");
        }
    }

    #[test]
    fn numbers() {
        for (text, n) in [
            ("1", 1.0),
            ("-1", -1.0),
            ("+2", 2.0),
            ("0.5", 0.5),
            (".5", 0.5),
            ("-0.25", -0.25),
            ("1e3", 1000.0),
            ("1.5E-2", 0.015),
            ("-2e+2", -200.0),
        ] {
            let c = one(&format!("metrics.m = {text}"), Target::Runs);
            assert_eq!(c.value, Value::Number(n), "{text}");
        }
        let c = one("metrics.m<-1", Target::Runs);
        assert_eq!(
            c,
            clause(Entity::Metric, "m", Comparator::Lt, Value::Number(-1.0))
        );
        let c = one("metrics.m>=-1.5e1", Target::Runs);
        assert_eq!(c.comparator, Comparator::Ge);
        assert_eq!(c.value, Value::Number(-15.0));
    }

    #[test]
    fn string_escapes() {
        let cases = [
            ("'it''s'", "it's"),
            ("'it\\'s'", "it's"),
            ("'a\\\\b'", "a\\b"),
            ("'50\\%'", "50\\%"),
            ("''", ""),
            ("'a AND b OR (c)'", "a AND b OR (c)"),
            ("'ünïcode ✓'", "ünïcode ✓"),
            // Double quotes and backticks, as MLflow takes them.
            ("\"adam\"", "adam"),
            ("\"it's\"", "it's"),
            ("\"say \"\"hi\"\"\"", "say \"hi\""),
            ("`x`", "x"),
        ];
        for (written, value) in cases {
            let c = one(&format!("tags.t = {written}"), Target::Runs);
            assert_eq!(c.value, s(value), "{written}");
        }
    }

    #[test]
    fn comparators() {
        for (op, cmp) in [
            ("=", Comparator::Eq),
            ("!=", Comparator::Ne),
            ("<>", Comparator::Ne),
            ("<", Comparator::Lt),
            ("<=", Comparator::Le),
            (">", Comparator::Gt),
            (">=", Comparator::Ge),
        ] {
            assert_eq!(
                one(&format!("metrics.m {op} 1"), Target::Runs).comparator,
                cmp
            );
        }
        for (op, cmp) in [
            ("LIKE", Comparator::Like),
            ("like", Comparator::Like),
            ("ILIKE", Comparator::ILike),
            ("iLike", Comparator::ILike),
        ] {
            assert_eq!(
                one(&format!("params.p {op} '%x%'"), Target::Runs).comparator,
                cmp
            );
        }
    }

    #[test]
    fn in_and_not_in_lists() {
        let c = one("run_id IN ('a', 'b')", Target::Runs);
        let list = Value::List(vec!["a".into(), "b".into()]);
        assert_eq!(c, clause(Entity::Attribute, "run_id", Comparator::In, list));
        let c = one(
            "attributes.status not  in('FAILED','KILLED' )",
            Target::Runs,
        );
        assert_eq!(c.comparator, Comparator::NotIn);
        assert_eq!(c.value, Value::List(vec!["FAILED".into(), "KILLED".into()]));
        let c = one("datasets.context IN ('train')", Target::Runs);
        assert_eq!(c.value, Value::List(vec!["train".into()]));
        let c = one("version IN (1, '2')", Target::ModelVersions);
        assert_eq!(c.value, Value::List(vec!["1".into(), "2".into()]));
    }

    #[test]
    fn is_null_and_is_not_null() {
        let c = one("tags.t IS NULL", Target::Runs);
        assert_eq!(c, clause(Entity::Tag, "t", Comparator::IsNull, Value::None));
        let c = one("params.p is not null", Target::Runs);
        assert_eq!(
            c,
            clause(Entity::Param, "p", Comparator::IsNotNull, Value::None)
        );
        let f = runs("tags.a IS NULL and tags.b IS  NOT NULL");
        assert_eq!(f.clauses.len(), 2);
    }

    #[test]
    fn and_joins_clauses() {
        let f =
            runs("metrics.acc > 0.9 AND params.model = 'lr' and tags.x != 'y' aNd status = 'X'");
        assert_eq!(f.clauses.len(), 4);
        assert_eq!(
            f.clauses[1],
            clause(Entity::Param, "model", Comparator::Eq, s("lr"))
        );
        let f = runs("  metrics.a=1   AND   metrics.b=2  ");
        assert_eq!(f.clauses.len(), 2);
        let f = runs("tags.t='x'AND tags.u='y'");
        assert_eq!(f.clauses.len(), 2);
    }

    #[test]
    fn or_and_parentheses_are_rejected() {
        let t = Target::Runs;
        assert_eq!(
            err("metrics.a > 1 OR metrics.b > 2", t),
            "Invalid clause(s) in filter string: 'OR'"
        );
        assert_err("metrics.a > 1 or metrics.b > 2", t, "'or'");
        assert_err(
            "(metrics.a > 1)",
            t,
            "Invalid clause(s) in filter string: '('",
        );
        assert_err("metrics.a > 1 AND (metrics.b > 2)", t, "'('");
        assert_err(
            "metrics.a > 1)",
            t,
            "Invalid clause(s) in filter string: ')'",
        );
        assert_err("metrics.a > 1 AND OR metrics.b > 2", t, "'OR'");
    }

    #[test]
    fn dangling_and_and_trailing_garbage() {
        let t = Target::Runs;
        assert_err("metrics.a > 1 AND", t, "expected a clause after 'AND'");
        assert_err("metrics.a > 1 AND AND metrics.b > 1", t, "'AND'");
        assert_err("AND metrics.a > 1", t, "'AND'");
        assert_err("metrics.a > 1 metrics.b > 2", t, "Invalid clause(s)");
        assert_err("tags.a = 'x' 'y'", t, "Invalid clause(s)");
        assert_err("tags.a = 'x' ;", t, "';'");
    }

    #[test]
    fn bad_comparators() {
        let t = Target::Runs;
        assert_err("metrics.a >> 1", t, "Invalid comparator '>>' not one of");
        assert_err("metrics.a == 1", t, "Invalid comparator '=='");
        assert_err("metrics.a ~ 1", t, "Invalid comparator '~'");
        assert_err("metrics.a BETWEEN 1", t, "Invalid comparator 'BETWEEN'");
        assert_err("params.p NOT LIKE 'x'", t, "Invalid comparator 'NOT LIKE'");
        assert_err("tags.t IS 'x'", t, "Invalid comparator 'IS 'x''");
        assert_err("tags.t IS NOT 'x'", t, "Invalid comparator 'IS NOT 'x''");
        assert_err("metrics.a", t, "missing its comparator");
    }

    #[test]
    fn bad_values() {
        let t = Target::Runs;
        assert_err(
            "metrics.a > '1'",
            t,
            "Expected a numeric value for metric 'a'",
        );
        assert_err("params.p = \"x", t, "Unterminated string literal");
        assert_err(
            "params.p = 1",
            t,
            "Expected a 'single-quoted' string value for parameter",
        );
        assert_err("status = FINISHED", t, "Invalid value 'FINISHED'");
        assert_err("metrics.a > inf", t, "Invalid value 'inf'");
        assert_err("metrics.a > 1-2", t, "Invalid value '1-2'");
        assert_err("metrics.a >", t, "missing its value");
        assert_err("tags.t = 'unterminated", t, "Unterminated string literal");
        assert_err("tags.t = 'it\\'", t, "Unterminated string literal");
        assert_err("tags.`unterminated = 'x'", t, "Unterminated quoted key");
        assert_err("run_id IN ()", t, "must not be empty");
        assert_err("run_id IN ('a',)", t, "Invalid value");
        assert_err("run_id IN ('a' 'b')", t, "expected ',' or ')'");
        assert_err("run_id IN ('a'", t, "expected ',' or ')'");
        assert_err("run_id IN 'a'", t, "Expected a list");
        assert_err("run_id = ('a')", t, "only valid with 'IN'");
        assert_err("run_id IN (('a'))", t, "nested");
    }

    #[test]
    fn bad_keys() {
        let t = Target::Runs;
        assert_err("foo.bar = 'x'", t, "Invalid entity type 'foo'");
        assert_err("metrics. > 1", t, "the name is empty");
        assert_err("metrics.`` > 1", t, "the name is empty");
        assert_err("tags.`a`.b = 'x'", t, "unexpected characters after the key");
        assert_err("'quoted' = 'x'", t, "Invalid filter key");
        assert_err("datasets.foo = 'x'", t, "Invalid dataset key 'foo'");
    }

    #[test]
    fn runs_validation() {
        let t = Target::Runs;
        assert_err(
            "unknown_attr = 'x'",
            t,
            "Invalid attribute key 'unknown_attr'",
        );
        assert_err("attributes.lifecycle_stage = 'active'", t, "run_view_type");
        assert_err(
            "params.p IN ('a')",
            t,
            "Invalid comparator 'IN' for parameter 'p'",
        );
        assert_err(
            "tags.t NOT IN ('a')",
            t,
            "Invalid comparator 'NOT IN' for tag 't'",
        );
        assert_err(
            "metrics.m LIKE '1'",
            t,
            "Invalid comparator 'LIKE' for metric 'm'",
        );
        assert_err("metrics.m IS NULL", t, "Invalid comparator 'IS NULL'");
        assert_err("start_time LIKE '1'", t, "Invalid comparator 'LIKE'");
        assert_err("start_time = '1'", t, "Expected a numeric value");
        assert_err(
            "status > 'x'",
            t,
            "Invalid comparator '>' for attribute 'status'",
        );
        assert_err("status IS NULL", t, "Invalid comparator 'IS NULL'");
        let c = one("end_time < 1700000000000", t);
        assert_eq!(c.value, Value::Number(1.7e12));
    }

    #[test]
    fn experiments_validation() {
        let t = Target::Experiments;
        let c = one("name LIKE 'exp%'", t);
        assert_eq!(
            c,
            clause(Entity::Attribute, "name", Comparator::Like, s("exp%"))
        );
        let c = one("attributes.creation_time > 5", t);
        assert_eq!(c.value, Value::Number(5.0));
        assert_eq!(one("last_update_time <= 5", t).key, "last_update_time");
        let c = one("experiment_id IN ('1', '2')", t);
        assert_eq!(c.comparator, Comparator::In);
        assert_eq!(one("experiment_id = 3", t).value, s("3"));
        assert_eq!(one("tags.`k.x` != 'v'", t).key, "k.x");
        assert_err("experiment_id LIKE '1'", t, "Invalid comparator 'LIKE'");
        assert_err("name IN ('a')", t, "Invalid comparator 'IN'");
        assert_err("metrics.a > 1", t, "Invalid entity type 'metrics'");
        assert_err("params.a = 'x'", t, "Invalid entity type 'params'");
        assert_err("tags.a IS NULL", t, "Invalid comparator 'IS NULL'");
        assert_err("start_time > 1", t, "Invalid attribute key 'start_time'");
    }

    #[test]
    fn registered_models_validation() {
        let t = Target::RegisteredModels;
        let f = parse_filter(
            "name ILIKE '%model%' AND tag.`mlflow.prompt.is_prompt` != 'true'",
            t,
        )
        .unwrap();
        assert_eq!(f.clauses.len(), 2);
        assert_eq!(
            f.clauses[1],
            clause(
                Entity::Tag,
                "mlflow.prompt.is_prompt",
                Comparator::Ne,
                s("true")
            )
        );
        let f = parse_filter("tag.`mlflow.prompt.is_prompt` != 'true'", t).unwrap();
        assert_eq!(f.clauses.len(), 1);
        assert_err("name IN ('a')", t, "Invalid comparator 'IN'");
        assert_err("run_id = 'a'", t, "Invalid attribute key 'run_id'");
        assert_err("datasets.name = 'a'", t, "Invalid entity type 'datasets'");
    }

    #[test]
    fn model_versions_validation() {
        let t = Target::ModelVersions;
        let f = parse_filter("name = 'm' AND run_id IN ('r1', 'r2')", t).unwrap();
        assert_eq!(f.clauses.len(), 2);
        assert_eq!(
            one("source_path LIKE 's3://%'", t).comparator,
            Comparator::Like
        );
        assert_eq!(one("version = '3'", t).value, s("3"));
        assert_eq!(one("version = 3", t).value, s("3"));
        assert_eq!(one("version_number > 2", t).value, Value::Number(2.0));
        assert_eq!(one("tags.k = 'v'", t).entity, Entity::Tag);
        assert_err("version_number = '2'", t, "Expected a numeric value");
        assert_err("tags.k IN ('v')", t, "Invalid comparator 'IN'");
        assert_err("metrics.m > 1", t, "Invalid entity type");
        assert_err("status = 'READY'", t, "Invalid attribute key 'status'");
    }

    #[test]
    fn logged_models_validation() {
        let t = Target::LoggedModels;
        let c = one("metrics.accuracy >= 0.5", t);
        assert_eq!(c.entity, Entity::Metric);
        assert_eq!(one("params.p = 'x'", t).entity, Entity::Param);
        assert_eq!(one("tags.t LIKE 'x%'", t).entity, Entity::Tag);
        assert_eq!(one("creation_time > 1", t).key, "creation_timestamp");
        assert_eq!(one("creation_timestamp > 1", t).key, "creation_timestamp");
        assert_eq!(
            one("last_updated_timestamp < 1", t).key,
            "last_updated_timestamp"
        );
        for key in ["name", "model_id", "source_run_id", "status", "model_type"] {
            assert_eq!(one(&format!("{key} IN ('a')"), t).key, key);
        }
        assert_err("params.p IS NULL", t, "Invalid comparator 'IS NULL'");
        assert_err("datasets.name = 'x'", t, "Invalid entity type");
        assert_err("run_id = 'x'", t, "Invalid attribute key 'run_id'");
    }

    #[test]
    fn order_by_runs() {
        let t = Target::Runs;
        let o = order("metrics.acc DESC", t);
        assert_eq!(
            o,
            OrderBy {
                entity: Entity::Metric,
                key: "acc".into(),
                ascending: false
            }
        );
        assert!(order("metrics.acc", t).ascending);
        assert!(order("  metrics.acc   asc  ", t).ascending);
        assert!(!order("params.p desc", t).ascending);
        assert_eq!(order("tags.`mlflow.runName` DESC", t).key, "mlflow.runName");
        assert_eq!(order("metrics.\"my metric\"", t).key, "my metric");
        assert_eq!(order("start_time DESC", t).key, "start_time");
        assert_eq!(order("attributes.created", t).key, "start_time");
        assert_eq!(order("`Run Name`", t).key, "run_name");
        for key in [
            "run_id",
            "run_name",
            "status",
            "user_id",
            "artifact_uri",
            "end_time",
        ] {
            let o = order(key, t);
            assert_eq!((o.entity, o.key.as_str()), (Entity::Attribute, key));
        }
    }

    #[test]
    fn order_by_errors() {
        let t = Target::Runs;
        assert!(order_err("", t).contains("Invalid order_by clause"));
        assert!(order_err("metrics.acc DESC extra", t).contains("Invalid order_by clause"));
        assert!(order_err("metrics.acc DESCENDING", t).contains("Invalid order_by clause"));
        assert!(order_err("metrics.acc ASC DESC", t).contains("Invalid order_by clause"));
        assert!(order_err("foo.bar", t).contains("Invalid entity type 'foo'"));
        assert!(order_err("datasets.name", t).contains("Invalid entity type 'datasets'"));
        assert!(order_err("lifecycle_stage", t).contains("Invalid order_by key"));
        assert!(order_err("bogus DESC", t).contains("Invalid order_by key 'bogus'"));
        assert!(order_err("metrics.`open", t).contains("Unterminated"));
    }

    #[test]
    fn order_by_other_targets() {
        let t = Target::Experiments;
        for key in ["name", "experiment_id", "creation_time", "last_update_time"] {
            assert_eq!(order(&format!("{key} DESC"), t).key, key);
        }
        assert!(order_err("tags.x", t).contains("Invalid entity type"));
        assert!(order_err("start_time", t).contains("Invalid order_by key"));

        let t = Target::RegisteredModels;
        assert_eq!(order("timestamp DESC", t).key, "creation_timestamp");
        assert_eq!(
            order("last_updated_timestamp", t).key,
            "last_updated_timestamp"
        );
        assert_eq!(order("name ASC", t).key, "name");
        assert!(order_err("version_number", t).contains("Invalid order_by key"));

        let t = Target::ModelVersions;
        for key in [
            "name",
            "version_number",
            "creation_timestamp",
            "last_updated_timestamp",
        ] {
            assert_eq!(order(key, t).key, key);
        }

        let t = Target::LoggedModels;
        let o = order("metrics.acc DESC", t);
        assert_eq!(
            (o.entity, o.key.as_str(), o.ascending),
            (Entity::Metric, "acc", false)
        );
        assert_eq!(order("creation_time", t).key, "creation_timestamp");
        assert_eq!(
            order("last_updated_timestamp", t).key,
            "last_updated_timestamp"
        );
        assert!(order_err("params.p", t).contains("Invalid entity type"));
    }
}
