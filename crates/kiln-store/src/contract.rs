//! The store contract suite: the behaviour every [`TrackingStore`] backend must show, written
//! once against the traits. Each case is a `pub fn <name>(store: &dyn TrackingStore)` that
//! expects a fresh, empty store (only the "Default" experiment `0`) and panics on a violation.
//! [`ALL`] lists them; [`contract_tests!`](crate::contract_tests) turns them into one `#[test]`
//! per case in a backend's test crate:
//!
//! ```ignore
//! // tests/contract_mybackend.rs
//! fn fresh_store() -> Option<MyFixture> { /* None = skip (prints why) */ }
//! kiln_store::contract_tests!(fresh_store());
//! ```
//!
//! The fixture expression is evaluated once per test; it yields `Option<F>` where `F` derefs to
//! a `TrackingStore` (a guard may clean up in `Drop`). `None` skips the case.
//!
//! Where the MLflow wire spec (`MLFLOW_API.md`) is silent, the cases pin what kiln does (noted
//! in each case's doc), so every backend agrees.

#![allow(
    clippy::missing_panics_doc,
    clippy::float_cmp,
    clippy::too_many_lines,
    clippy::cast_possible_wrap
)]

use std::collections::BTreeSet;
use std::fmt::Debug;

use kiln_types::filter::{parse_filter, parse_order_by, Entity, Filter, OrderBy, Target};
use kiln_types::{
    Dataset, DatasetInput, ErrorCode, LifecycleStage, LoggedModel, LoggedModelStatus, Metric,
    ModelInput, ModelOutput, Param, Run, RunStatus, Tag, ViewType,
};

use crate::{
    AliasActor, ExperimentQuery, LoggedModelQuery, NameQuery, NewLoggedModel, NewModelVersion,
    NewRun, Page, PageRequest, RunQuery, RunUpdate, StoreError, StoreResult, TrackingStore,
};

/// Generate one `#[test]` per contract case. The argument is an expression evaluated per test
/// that yields `Option<F>`, `F: Deref<Target = impl TrackingStore>`; `None` skips the case.
#[macro_export]
macro_rules! contract_tests {
    ($make:expr $(,)?) => {
        $crate::__contract_cases!(@tests [$make]);
    };
}

/// The one list of contract cases, expanded either to tests or to [`contract::ALL`].
#[doc(hidden)]
#[macro_export]
macro_rules! __contract_cases {
    (@tests [$make:expr]) => {
        $crate::__contract_cases!(@list tests [$make]);
    };
    (@all) => {
        $crate::__contract_cases!(@list all [])
    };
    (@list $mode:ident $args:tt) => {
        $crate::__contract_cases! { @$mode $args
            default_experiment_exists
            experiment_create_and_get
            experiment_names_unique_and_non_empty
            experiment_rename
            experiment_delete_and_restore
            experiment_tags
            experiment_search_filters
            experiment_search_order_and_pagination
            experiment_search_view_types
            run_create_defaults
            run_get_and_update
            run_delete_and_restore
            log_batch_is_atomic
            try_log_batch_now_logs_or_declines
            params_relog_limits_and_truncation
            metric_history_order_and_pagination
            latest_metric_selection
            metric_nan_and_infinity_round_trip
            delete_run_tag
            log_inputs_and_outputs
            search_runs_metric_filters
            search_runs_param_and_tag_filters
            search_runs_attribute_and_dataset_filters
            search_runs_order_by_metric_missing_last
            search_runs_order_by_param_tag_attribute
            search_runs_default_order
            search_runs_pagination
            search_runs_experiments_and_view_types
            logged_model_lifecycle
            logged_model_search
            registered_model_crud
            registered_model_rename
            registered_model_tags
            model_version_numbering_and_crud
            model_version_stages_and_latest
            search_registered_models
            search_model_versions
            aliases
            alias_history
            set_alias_if_moves_only_from_the_expected_holder
            deleting_a_model_takes_its_alias_history
            gc_collectable_runs_and_cutoff
            gc_experiments_and_logged_models
            gc_purge
            gc_keeps_what_model_versions_load
        }
    };
    (@tests [$make:expr] $($name:ident)*) => {
        $(
            #[test]
            fn $name() {
                if let ::std::option::Option::Some(fixture) = $make {
                    $crate::contract::$name(&*fixture);
                }
            }
        )*
    };
    (@all [] $($name:ident)*) => {
        &[$((::std::stringify!($name), $crate::contract::$name as $crate::contract::Case)),*]
    };
}

/// One contract case.
pub type Case = fn(&dyn TrackingStore);

/// Every contract case, by name.
pub const ALL: &[(&str, Case)] = crate::__contract_cases!(@all);

// ------------------------------------------------------------------ helpers

/// Start times of runs created by the cases (an arbitrary fixed epoch-ms instant).
const T0: i64 = 1_700_000_000_000;

fn ok<T>(result: StoreResult<T>, what: &str) -> T {
    match result {
        Ok(v) => v,
        Err(e) => panic!("{what}: unexpected error ({:?}): {e}", e.code()),
    }
}

fn expect_err<T: Debug>(result: StoreResult<T>, code: ErrorCode, what: &str) -> StoreError {
    match result {
        Ok(v) => panic!("{what}: expected {code:?}, got Ok({v:?})"),
        Err(e) => {
            assert_eq!(e.code(), code, "{what}: wrong error code for `{e}`");
            e
        }
    }
}

fn not_found<T: Debug>(result: StoreResult<T>, what: &str) -> StoreError {
    expect_err(result, ErrorCode::ResourceDoesNotExist, what)
}

fn invalid<T: Debug>(result: StoreResult<T>, what: &str) -> StoreError {
    expect_err(result, ErrorCode::InvalidParameterValue, what)
}

fn exists<T: Debug>(result: StoreResult<T>, what: &str) -> StoreError {
    expect_err(result, ErrorCode::ResourceAlreadyExists, what)
}

fn filter(text: &str, target: Target) -> Filter {
    parse_filter(text, target).unwrap_or_else(|e| panic!("filter {text:?}: {e}"))
}

fn order(text: &str, target: Target) -> OrderBy {
    parse_order_by(text, target).unwrap_or_else(|e| panic!("order_by {text:?}: {e}"))
}

fn page(max_results: u64) -> PageRequest {
    PageRequest {
        max_results,
        offset: 0,
    }
}

fn set<I: IntoIterator<Item = S>, S: Into<String>>(items: I) -> BTreeSet<String> {
    items.into_iter().map(Into::into).collect()
}

fn tag_map(tags: &[Tag]) -> BTreeSet<(String, String)> {
    tags.iter()
        .map(|t| (t.key.clone(), t.value.clone()))
        .collect()
}

fn pairs(items: &[(&str, &str)]) -> BTreeSet<(String, String)> {
    items
        .iter()
        .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
        .collect()
}

/// Follow `next_page_token`s from the first page, `size` at a time; returns the items and the
/// number of pages. Checks that only the last page lacks a token and no page is oversized.
fn all_pages<T>(
    size: u64,
    what: &str,
    mut fetch: impl FnMut(PageRequest) -> StoreResult<Page<T>>,
) -> (Vec<T>, usize) {
    let mut items = Vec::new();
    let mut request = page(size);
    for pages in 1..=10_000 {
        let p = ok(fetch(request), what);
        assert!(
            p.items.len() as u64 <= size,
            "{what}: page {pages} has {} items, more than max_results={size}",
            p.items.len()
        );
        items.extend(p.items);
        match p.next_page_token.filter(|t| !t.is_empty()) {
            None => return (items, pages),
            Some(token) => {
                let decoded = kiln_types::PageToken::decode(&token)
                    .unwrap_or_else(|e| panic!("{what}: bad next_page_token {token:?}: {e}"));
                request = PageRequest {
                    max_results: size,
                    offset: decoded.offset,
                };
            }
        }
    }
    panic!("{what}: pagination did not end");
}

fn create_exp(store: &dyn TrackingStore, name: &str) -> String {
    ok(
        store.create_experiment(name, None, &[]),
        &format!("create_experiment {name}"),
    )
}

fn create_run(store: &dyn TrackingStore, experiment_id: &str, name: &str, start_time: i64) -> Run {
    ok(
        store.create_run(&NewRun {
            experiment_id: experiment_id.to_string(),
            user_id: "alice".into(),
            run_name: Some(name.to_string()),
            start_time,
            tags: Vec::new(),
        }),
        &format!("create_run {name}"),
    )
}

fn run_id(run: &Run) -> String {
    run.info.run_id.clone()
}

fn get_run(store: &dyn TrackingStore, run_id: &str) -> Run {
    ok(store.get_run(run_id), &format!("get_run {run_id}"))
}

fn log_metric(store: &dyn TrackingStore, run_id: &str, key: &str, value: f64, ts: i64, step: i64) {
    ok(
        store.log_batch(run_id, &[Metric::new(key, value, ts, step)], &[], &[]),
        &format!("log metric {key}={value}"),
    );
}

fn log_param(store: &dyn TrackingStore, run_id: &str, key: &str, value: &str) {
    ok(
        store.log_batch(run_id, &[], &[param(key, value)], &[]),
        &format!("log param {key}={value}"),
    );
}

fn set_tag(store: &dyn TrackingStore, run_id: &str, key: &str, value: &str) {
    ok(
        store.log_batch(run_id, &[], &[], &[Tag::new(key, value)]),
        &format!("set tag {key}={value}"),
    );
}

fn param(key: &str, value: &str) -> Param {
    Param {
        key: key.to_string(),
        value: value.to_string(),
    }
}

fn tag_of<'a>(run: &'a Run, key: &str) -> Option<&'a str> {
    run.data
        .tags
        .iter()
        .find(|t| t.key == key)
        .map(|t| t.value.as_str())
}

fn param_of<'a>(run: &'a Run, key: &str) -> Option<&'a str> {
    run.data
        .params
        .iter()
        .find(|p| p.key == key)
        .map(|p| p.value.as_str())
}

fn latest_of<'a>(run: &'a Run, key: &str) -> Option<&'a Metric> {
    let found: Vec<&Metric> = run.data.metrics.iter().filter(|m| m.key == key).collect();
    assert!(
        found.len() <= 1,
        "run data holds one latest value per metric key, got {found:?}"
    );
    found.first().copied()
}

fn history(store: &dyn TrackingStore, run_id: &str, key: &str) -> Vec<Metric> {
    let (items, _) = all_pages(1000, "get_metric_history", |p| {
        store.get_metric_history(run_id, key, &p)
    });
    items
}

fn run_query(exp_ids: &[&str], filter_text: &str, order_by: &[&str]) -> RunQuery {
    RunQuery {
        experiment_ids: exp_ids.iter().map(|s| (*s).to_string()).collect(),
        filter: filter(filter_text, Target::Runs),
        order_by: order_by.iter().map(|o| order(o, Target::Runs)).collect(),
        view: ViewType::ActiveOnly,
        page: page(1000),
    }
}

/// Run ids matching `filter_text`, in the store's order.
fn search_ids(store: &dyn TrackingStore, exp_ids: &[&str], filter_text: &str) -> Vec<String> {
    let q = run_query(exp_ids, filter_text, &[]);
    let p = ok(
        store.search_runs(&q),
        &format!("search_runs {filter_text:?}"),
    );
    assert!(p.next_page_token.is_none());
    p.items.iter().map(run_id).collect()
}

fn assert_search(store: &dyn TrackingStore, exp_ids: &[&str], filter_text: &str, want: &[&Run]) {
    let got = set(search_ids(store, exp_ids, filter_text));
    let want = set(want.iter().map(|r| run_id(r)));
    assert_eq!(got, want, "search_runs filter {filter_text:?}");
}

fn ordered_ids(store: &dyn TrackingStore, exp_ids: &[&str], order_by: &[&str]) -> Vec<String> {
    let q = run_query(exp_ids, "", order_by);
    let p = ok(
        store.search_runs(&q),
        &format!("search_runs order {order_by:?}"),
    );
    p.items.iter().map(run_id).collect()
}

fn exp_query(filter_text: &str, order_by: &[&str], view: ViewType) -> ExperimentQuery {
    ExperimentQuery {
        filter: filter(filter_text, Target::Experiments),
        order_by: order_by
            .iter()
            .map(|o| order(o, Target::Experiments))
            .collect(),
        view,
        page: page(1000),
    }
}

fn exp_names(store: &dyn TrackingStore, filter_text: &str) -> BTreeSet<String> {
    let p = ok(
        store.search_experiments(&exp_query(filter_text, &[], ViewType::ActiveOnly)),
        &format!("search_experiments {filter_text:?}"),
    );
    set(p.items.into_iter().map(|e| e.name))
}

fn exp_ids(store: &dyn TrackingStore, view: ViewType) -> BTreeSet<String> {
    let p = ok(
        store.search_experiments(&exp_query("", &[], view)),
        "search_experiments by view",
    );
    set(p.items.into_iter().map(|e| e.experiment_id))
}

fn new_logged_model(
    store: &dyn TrackingStore,
    experiment_id: &str,
    name: &str,
    source_run_id: Option<&str>,
) -> LoggedModel {
    ok(
        store.create_logged_model(&NewLoggedModel {
            experiment_id: experiment_id.to_string(),
            name: Some(name.to_string()),
            source_run_id: source_run_id.map(str::to_string),
            model_type: None,
            params: Vec::new(),
            tags: Vec::new(),
        }),
        &format!("create_logged_model {name}"),
    )
}

fn new_version(
    store: &dyn TrackingStore,
    name: &str,
    run_id: Option<&str>,
    model_id: Option<&str>,
) -> kiln_types::ModelVersion {
    let source = model_id.map_or_else(
        || "mlflow-artifacts:/0/abc/artifacts/model".to_string(),
        |m| format!("models:/{m}"),
    );
    ok(
        store.create_model_version(&NewModelVersion {
            name: name.to_string(),
            source,
            run_id: run_id.map(str::to_string),
            model_id: model_id.map(str::to_string),
            ..NewModelVersion::default()
        }),
        &format!("create_model_version {name}"),
    )
}

fn create_model(store: &dyn TrackingStore, name: &str) {
    ok(
        store.create_registered_model(name, None, &[]),
        &format!("create_registered_model {name}"),
    );
}

fn is_hex32(s: &str) -> bool {
    s.len() == 32
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn actor(user: &str, reason: &str) -> AliasActor {
    AliasActor {
        user_id: Some(user.to_string()),
        reason: Some(reason.to_string()),
    }
}

fn sleep_ms(ms: u64) {
    std::thread::sleep(std::time::Duration::from_millis(ms));
}

// ------------------------------------------------------------------ experiments

/// Experiment `0` ("Default") exists in a fresh store, is active and cannot be deleted.
pub fn default_experiment_exists(store: &dyn TrackingStore) {
    let e = ok(store.get_experiment("0"), "get_experiment 0");
    assert_eq!(e.experiment_id, "0");
    assert_eq!(e.name, "Default");
    assert_eq!(e.lifecycle_stage, LifecycleStage::Active);
    assert!(!e.artifact_location.is_empty());
    let by_name = ok(
        store.get_experiment_by_name("Default"),
        "get by name Default",
    );
    assert_eq!(by_name.experiment_id, "0");
    assert!(exp_ids(store, ViewType::ActiveOnly).contains("0"));
    invalid(
        store.delete_experiment("0"),
        "delete the default experiment",
    );
    assert_eq!(
        ok(store.get_experiment("0"), "get 0").lifecycle_stage,
        LifecycleStage::Active
    );
}

/// Create with tags and default/explicit artifact locations; get by id and by name; unknown
/// ids and names are RESOURCE_DOES_NOT_EXIST, a non-numeric id INVALID_PARAMETER_VALUE.
pub fn experiment_create_and_get(store: &dyn TrackingStore) {
    let tags = [Tag::new("team", "ml"), Tag::new("owner", "ann")];
    let id = ok(
        store.create_experiment("contract-exp", None, &tags),
        "create_experiment",
    );
    assert!(
        kiln_types::is_valid_experiment_id(&id) && id != "0",
        "experiment id {id:?} is a decimal string"
    );
    let e = ok(store.get_experiment(&id), "get_experiment");
    assert_eq!(e.experiment_id, id);
    assert_eq!(e.name, "contract-exp");
    assert_eq!(e.artifact_location, format!("mlflow-artifacts:/{id}"));
    assert_eq!(e.lifecycle_stage, LifecycleStage::Active);
    assert!(e.creation_time > 0);
    assert!(e.last_update_time >= e.creation_time);
    assert_eq!(tag_map(&e.tags), tag_map(&tags));

    let by_name = ok(
        store.get_experiment_by_name("contract-exp"),
        "get_experiment_by_name",
    );
    assert_eq!(by_name.experiment_id, id);
    assert_eq!(tag_map(&by_name.tags), tag_map(&tags));

    let id2 = ok(
        store.create_experiment("contract-exp-loc", Some("s3://bucket/prefix"), &[]),
        "create with artifact_location",
    );
    assert_ne!(id, id2);
    let e2 = ok(store.get_experiment(&id2), "get_experiment 2");
    assert_eq!(e2.artifact_location, "s3://bucket/prefix");
    assert!(e2.tags.is_empty());

    not_found(store.get_experiment("987654321"), "get unknown experiment");
    not_found(
        store.get_experiment_by_name("no-such-experiment"),
        "get unknown experiment by name",
    );
    invalid(store.get_experiment("abc"), "get non-numeric experiment id");
}

/// Names are unique, including the names of deleted experiments; an empty name is invalid.
pub fn experiment_names_unique_and_non_empty(store: &dyn TrackingStore) {
    let id = create_exp(store, "dup");
    exists(store.create_experiment("dup", None, &[]), "duplicate name");
    ok(store.delete_experiment(&id), "delete_experiment");
    exists(
        store.create_experiment("dup", None, &[]),
        "name of a deleted experiment",
    );
    invalid(store.create_experiment("", None, &[]), "empty name");
    exists(
        store.create_experiment("Default", None, &[]),
        "name of the default experiment",
    );
}

/// Rename: the new name resolves, the old one is free; clashes, empty names and unknown ids fail.
pub fn experiment_rename(store: &dyn TrackingStore) {
    let a = create_exp(store, "before");
    create_exp(store, "other");
    ok(store.rename_experiment(&a, "after"), "rename");
    assert_eq!(ok(store.get_experiment(&a), "get").name, "after");
    assert_eq!(
        ok(store.get_experiment_by_name("after"), "by new name").experiment_id,
        a
    );
    not_found(store.get_experiment_by_name("before"), "old name is gone");
    exists(
        store.rename_experiment(&a, "other"),
        "rename onto a taken name",
    );
    invalid(store.rename_experiment(&a, ""), "rename to empty");
    not_found(
        store.rename_experiment("987654321", "x"),
        "rename unknown experiment",
    );
    create_exp(store, "before");
}

/// Delete marks the experiment and its active runs deleted (still readable); no new runs there;
/// restore brings the experiment and the runs deleted with it back. A run deleted on its own
/// before the experiment stays deleted (kiln).
pub fn experiment_delete_and_restore(store: &dyn TrackingStore) {
    let e = create_exp(store, "to-delete");
    let r1 = create_run(store, &e, "deleted-first", T0);
    let r2 = create_run(store, &e, "deleted-with-exp", T0 + 1);
    ok(store.delete_run(&run_id(&r1)), "delete_run r1");
    sleep_ms(5);
    ok(store.delete_experiment(&e), "delete_experiment");
    let got = ok(store.get_experiment(&e), "get deleted experiment");
    assert_eq!(got.lifecycle_stage, LifecycleStage::Deleted);
    assert_eq!(
        get_run(store, &run_id(&r2)).info.lifecycle_stage,
        LifecycleStage::Deleted,
        "runs are deleted with their experiment"
    );
    invalid(
        store.create_run(&NewRun {
            experiment_id: e.clone(),
            user_id: "alice".into(),
            start_time: T0,
            ..NewRun::default()
        }),
        "create_run in a deleted experiment",
    );
    // Deleting again is RESOURCE_DOES_NOT_EXIST (as on MLflow's server), and must not lose
    // track of which runs went with the experiment.
    not_found(store.delete_experiment(&e), "delete a deleted experiment");
    ok(store.restore_experiment(&e), "restore_experiment");
    assert_eq!(
        ok(store.get_experiment(&e), "get restored").lifecycle_stage,
        LifecycleStage::Active
    );
    assert_eq!(
        get_run(store, &run_id(&r2)).info.lifecycle_stage,
        LifecycleStage::Active,
        "runs deleted with the experiment come back"
    );
    assert_eq!(
        get_run(store, &run_id(&r1)).info.lifecycle_stage,
        LifecycleStage::Deleted,
        "a run deleted before the experiment stays deleted"
    );
    not_found(store.restore_experiment(&e), "restore an active experiment");
    not_found(store.delete_experiment("987654321"), "delete unknown");
    not_found(store.restore_experiment("987654321"), "restore unknown");
    create_run(store, &e, "after-restore", T0 + 2);
}

/// Experiment tags: set, overwrite, delete; a missing tag or experiment is not found; a deleted
/// experiment takes no tags.
pub fn experiment_tags(store: &dyn TrackingStore) {
    let e = ok(
        store.create_experiment("tagged", None, &[Tag::new("a", "1")]),
        "create",
    );
    ok(store.set_experiment_tag(&e, &Tag::new("b", "2")), "set b");
    ok(
        store.set_experiment_tag(&e, &Tag::new("a", "3")),
        "overwrite a",
    );
    let got = ok(store.get_experiment(&e), "get");
    assert_eq!(tag_map(&got.tags), pairs(&[("a", "3"), ("b", "2")]));
    ok(store.delete_experiment_tag(&e, "b"), "delete b");
    let got = ok(store.get_experiment(&e), "get");
    assert_eq!(tag_map(&got.tags), pairs(&[("a", "3")]));
    not_found(store.delete_experiment_tag(&e, "b"), "delete missing tag");
    not_found(
        store.set_experiment_tag("987654321", &Tag::new("a", "1")),
        "tag unknown experiment",
    );
    ok(store.delete_experiment(&e), "delete");
    invalid(
        store.set_experiment_tag(&e, &Tag::new("c", "1")),
        "tag a deleted experiment",
    );
}

/// Experiment search filters: name = != LIKE (case-sensitive) ILIKE, tags, times, AND.
pub fn experiment_search_filters(store: &dyn TrackingStore) {
    let team = |v: &str| vec![Tag::new("team", v)];
    ok(
        store.create_experiment("alpha-one", None, &team("vision")),
        "c1",
    );
    ok(
        store.create_experiment("alpha-two", None, &team("nlp")),
        "c2",
    );
    ok(
        store.create_experiment("beta-one", None, &team("vision")),
        "c3",
    );
    ok(store.create_experiment("Alpha-three", None, &[]), "c4");

    assert_eq!(
        exp_names(store, "name LIKE 'alpha%'"),
        set(["alpha-one", "alpha-two"])
    );
    assert_eq!(
        exp_names(store, "name ILIKE 'ALPHA%'"),
        set(["alpha-one", "alpha-two", "Alpha-three"])
    );
    assert_eq!(
        exp_names(store, "name LIKE 'ALPHA%'"),
        set::<[&str; 0], _>([])
    );
    assert_eq!(exp_names(store, "name = 'beta-one'"), set(["beta-one"]));
    assert_eq!(
        exp_names(store, "name != 'beta-one'"),
        set(["Default", "alpha-one", "alpha-two", "Alpha-three"])
    );
    assert_eq!(
        exp_names(store, "tags.team = 'vision'"),
        set(["alpha-one", "beta-one"])
    );
    assert_eq!(
        exp_names(store, "tags.`team` LIKE 'n%'"),
        set(["alpha-two"])
    );
    assert_eq!(
        exp_names(store, "tags.team = 'vision' AND name LIKE 'alpha%'"),
        set(["alpha-one"])
    );
    assert_eq!(exp_names(store, "creation_time >= 0").len(), 5);
    assert_eq!(exp_names(store, "last_update_time > 0.5").len(), 5);
    assert_eq!(exp_names(store, "creation_time < 0").len(), 0);
    let beta = ok(store.get_experiment_by_name("beta-one"), "get beta").experiment_id;
    assert_eq!(
        exp_names(store, &format!("experiment_id = '{beta}'")),
        set(["beta-one"])
    );
}

/// Default order creation_time DESC then experiment_id; order_by name/experiment_id; pages of 5
/// concatenate to the full list with no duplicates or gaps.
pub fn experiment_search_order_and_pagination(store: &dyn TrackingStore) {
    for i in 0..12 {
        create_exp(store, &format!("exp-{i:02}"));
    }
    let full = ok(
        store.search_experiments(&exp_query("", &[], ViewType::All)),
        "search all",
    );
    assert!(full.next_page_token.is_none());
    assert_eq!(full.items.len(), 13);
    for w in full.items.windows(2) {
        let (a, b) = (&w[0], &w[1]);
        let id = |e: &kiln_types::Experiment| e.experiment_id.parse::<i64>().unwrap_or(-1);
        assert!(
            a.creation_time > b.creation_time
                || (a.creation_time == b.creation_time && id(a) < id(b)),
            "default order is creation_time DESC, experiment_id ASC: {} ({}) before {} ({})",
            a.experiment_id,
            a.creation_time,
            b.experiment_id,
            b.creation_time
        );
    }
    let full_ids: Vec<String> = full.items.iter().map(|e| e.experiment_id.clone()).collect();
    let (paged, pages) = all_pages(5, "search_experiments pages", |p| {
        let mut q = exp_query("", &[], ViewType::All);
        q.page = p;
        store.search_experiments(&q)
    });
    let paged_ids: Vec<String> = paged.into_iter().map(|e| e.experiment_id).collect();
    assert_eq!(paged_ids, full_ids, "pages concatenate to the full list");
    assert_eq!(pages, 3);

    let by_name = ok(
        store.search_experiments(&exp_query("", &["name ASC"], ViewType::All)),
        "order by name",
    );
    let names: Vec<String> = by_name.items.iter().map(|e| e.name.clone()).collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted);
    let by_name_desc = ok(
        store.search_experiments(&exp_query("", &["name DESC"], ViewType::All)),
        "order by name desc",
    );
    let names_desc: Vec<String> = by_name_desc.items.iter().map(|e| e.name.clone()).collect();
    sorted.reverse();
    assert_eq!(names_desc, sorted);

    let by_id = ok(
        store.search_experiments(&exp_query("", &["experiment_id DESC"], ViewType::All)),
        "order by id desc",
    );
    let ids: Vec<i64> = by_id
        .items
        .iter()
        .map(|e| e.experiment_id.parse().unwrap_or(-1))
        .collect();
    let mut sorted_ids = ids.clone();
    sorted_ids.sort_unstable_by(|a, b| b.cmp(a));
    assert_eq!(ids, sorted_ids);
    assert_eq!(ids.last(), Some(&0));
}

/// View types: ACTIVE_ONLY, DELETED_ONLY and ALL.
pub fn experiment_search_view_types(store: &dyn TrackingStore) {
    let a = create_exp(store, "view-a");
    let b = create_exp(store, "view-b");
    let c = create_exp(store, "view-c");
    ok(store.delete_experiment(&b), "delete b");
    assert_eq!(
        exp_ids(store, ViewType::ActiveOnly),
        set(["0", a.as_str(), c.as_str()])
    );
    assert_eq!(exp_ids(store, ViewType::DeletedOnly), set([b.as_str()]));
    assert_eq!(
        exp_ids(store, ViewType::All),
        set(["0", a.as_str(), b.as_str(), c.as_str()])
    );
}

// ------------------------------------------------------------------ runs

/// A new run: 32-hex id (also as run_uuid), RUNNING, generated name mirrored in the
/// `mlflow.runName` tag, artifact_uri `<experiment location>/<run_id>/artifacts`.
pub fn run_create_defaults(store: &dyn TrackingStore) {
    let e = create_exp(store, "runs");
    let exp = ok(store.get_experiment(&e), "get exp");
    let r = ok(
        store.create_run(&NewRun {
            experiment_id: e.clone(),
            user_id: "alice".into(),
            run_name: None,
            start_time: T0,
            tags: vec![Tag::new("mlflow.user", "alice")],
        }),
        "create_run",
    );
    let id = run_id(&r);
    assert!(is_hex32(&id), "run id {id:?} is 32 lowercase hex");
    assert_eq!(r.info.run_uuid, id);
    assert_eq!(r.info.experiment_id, e);
    assert_eq!(r.info.user_id, "alice");
    assert_eq!(r.info.status, RunStatus::Running);
    assert_eq!(r.info.start_time, T0);
    assert_eq!(r.info.end_time, None);
    assert_eq!(r.info.lifecycle_stage, LifecycleStage::Active);
    assert!(!r.info.run_name.is_empty(), "a run name is generated");
    assert_eq!(tag_of(&r, "mlflow.runName"), Some(r.info.run_name.as_str()));
    assert_eq!(tag_of(&r, "mlflow.user"), Some("alice"));
    assert_eq!(
        r.info.artifact_uri,
        format!("{}/{id}/artifacts", exp.artifact_location)
    );
    let got = get_run(store, &id);
    assert_eq!(got.info, r.info);
    assert_eq!(tag_map(&got.data.tags), tag_map(&r.data.tags));

    let named = create_run(store, &e, "my-run", T0);
    assert_eq!(named.info.run_name, "my-run");
    assert_eq!(tag_of(&named, "mlflow.runName"), Some("my-run"));

    let from_tag = ok(
        store.create_run(&NewRun {
            experiment_id: e.clone(),
            user_id: "alice".into(),
            run_name: None,
            start_time: T0,
            tags: vec![Tag::new("mlflow.runName", "from-tag")],
        }),
        "create_run with a runName tag",
    );
    assert_eq!(from_tag.info.run_name, "from-tag");

    let loc = ok(
        store.create_experiment("custom-loc", Some("s3://bucket/some/prefix"), &[]),
        "create with location",
    );
    let r2 = create_run(store, &loc, "located", T0);
    assert_eq!(
        r2.info.artifact_uri,
        format!("s3://bucket/some/prefix/{}/artifacts", run_id(&r2))
    );
    assert_ne!(run_id(&r2), id);

    not_found(
        store.create_run(&NewRun {
            experiment_id: "987654321".into(),
            user_id: "alice".into(),
            start_time: T0,
            ..NewRun::default()
        }),
        "create_run in an unknown experiment",
    );
}

/// get_run of an unknown id is not found; update sets status, end_time and name (and the
/// `mlflow.runName` tag); setting that tag renames the run.
pub fn run_get_and_update(store: &dyn TrackingStore) {
    let e = create_exp(store, "update");
    not_found(
        store.get_run("0123456789abcdef0123456789abcdef"),
        "get unknown run",
    );
    let r = create_run(store, &e, "orig", T0);
    let id = run_id(&r);
    let info = ok(
        store.update_run(
            &id,
            &RunUpdate {
                status: Some(RunStatus::Finished),
                end_time: Some(T0 + 10),
                run_name: None,
            },
        ),
        "update status",
    );
    assert_eq!(info.status, RunStatus::Finished);
    assert_eq!(info.end_time, Some(T0 + 10));
    assert_eq!(info.run_name, "orig");
    let got = get_run(store, &id);
    assert_eq!(got.info.status, RunStatus::Finished);
    assert_eq!(got.info.end_time, Some(T0 + 10));

    let info = ok(
        store.update_run(
            &id,
            &RunUpdate {
                run_name: Some("renamed".into()),
                ..RunUpdate::default()
            },
        ),
        "rename",
    );
    assert_eq!(info.run_name, "renamed");
    assert_eq!(info.status, RunStatus::Finished, "status unchanged");
    assert_eq!(info.end_time, Some(T0 + 10), "end_time unchanged");
    assert_eq!(
        tag_of(&get_run(store, &id), "mlflow.runName"),
        Some("renamed")
    );

    set_tag(store, &id, "mlflow.runName", "via-tag");
    assert_eq!(get_run(store, &id).info.run_name, "via-tag");

    let info = ok(
        store.update_run(
            &id,
            &RunUpdate {
                status: Some(RunStatus::Killed),
                ..RunUpdate::default()
            },
        ),
        "status only",
    );
    assert_eq!(info.status, RunStatus::Killed);
    assert_eq!(info.end_time, Some(T0 + 10));
    not_found(
        store.update_run("0123456789abcdef0123456789abcdef", &RunUpdate::default()),
        "update unknown run",
    );
}

/// A deleted run is still readable; logging to it or updating it is INVALID_PARAMETER_VALUE;
/// restore makes it writable again.
pub fn run_delete_and_restore(store: &dyn TrackingStore) {
    let e = create_exp(store, "delete-runs");
    let r = create_run(store, &e, "doomed", T0);
    let id = run_id(&r);
    log_param(store, &id, "p", "1");
    ok(store.delete_run(&id), "delete_run");
    let got = get_run(store, &id);
    assert_eq!(got.info.lifecycle_stage, LifecycleStage::Deleted);
    assert_eq!(param_of(&got, "p"), Some("1"));
    invalid(
        store.log_batch(&id, &[Metric::new("m", 1.0, T0, 0)], &[], &[]),
        "log a metric to a deleted run",
    );
    invalid(
        store.log_batch(&id, &[], &[param("q", "1")], &[]),
        "log a param to a deleted run",
    );
    invalid(
        store.log_batch(&id, &[], &[], &[Tag::new("t", "1")]),
        "set a tag on a deleted run",
    );
    invalid(
        store.update_run(
            &id,
            &RunUpdate {
                status: Some(RunStatus::Finished),
                ..RunUpdate::default()
            },
        ),
        "update a deleted run",
    );
    ok(store.restore_run(&id), "restore_run");
    assert_eq!(
        get_run(store, &id).info.lifecycle_stage,
        LifecycleStage::Active
    );
    log_metric(store, &id, "m", 1.0, T0, 0);
    not_found(
        store.delete_run("0123456789abcdef0123456789abcdef"),
        "delete unknown run",
    );
    not_found(
        store.restore_run("0123456789abcdef0123456789abcdef"),
        "restore unknown run",
    );
}

/// A batch that re-logs a param with a different value fails as a whole: none of its metrics,
/// params or tags become visible. Batch size limits are INVALID_PARAMETER_VALUE.
pub fn log_batch_is_atomic(store: &dyn TrackingStore) {
    let e = create_exp(store, "atomic");
    let r = create_run(store, &e, "atomic", T0);
    let id = run_id(&r);
    log_param(store, &id, "lr", "0.1");
    invalid(
        store.log_batch(
            &id,
            &[Metric::new("loss", 1.0, T0, 0)],
            &[param("batch", "32"), param("lr", "0.2")],
            &[Tag::new("stage", "x")],
        ),
        "changing a param value",
    );
    let got = get_run(store, &id);
    assert!(
        got.data.metrics.is_empty(),
        "no metric from the failed batch"
    );
    assert_eq!(param_of(&got, "lr"), Some("0.1"));
    assert_eq!(
        param_of(&got, "batch"),
        None,
        "no param from the failed batch"
    );
    assert_eq!(tag_of(&got, "stage"), None, "no tag from the failed batch");
    assert!(history(store, &id, "loss").is_empty());

    invalid(
        store.log_batch(&id, &[], &[param("a", "1"), param("a", "2")], &[]),
        "one key with two values in a batch",
    );
    assert_eq!(param_of(&get_run(store, &id), "a"), None);

    let many_params: Vec<Param> = (0..101).map(|i| param(&format!("p{i}"), "v")).collect();
    invalid(store.log_batch(&id, &[], &many_params, &[]), "101 params");
    let many_tags: Vec<Tag> = (0..101).map(|i| Tag::new(format!("t{i}"), "v")).collect();
    invalid(store.log_batch(&id, &[], &[], &many_tags), "101 tags");
    let many_metrics: Vec<Metric> = (0..1001)
        .map(|i| Metric::new("m", 1.0, T0, i64::from(i)))
        .collect();
    invalid(
        store.log_batch(&id, &many_metrics, &[], &[]),
        "1001 metrics",
    );
    assert!(history(store, &id, "m").is_empty());

    ok(
        store.log_batch(
            &id,
            &[Metric::new("loss", 2.0, T0, 0)],
            &[param("batch", "32"), param("lr", "0.1")],
            &[Tag::new("stage", "y")],
        ),
        "a valid batch",
    );
    let got = get_run(store, &id);
    assert_eq!(param_of(&got, "batch"), Some("32"));
    assert_eq!(tag_of(&got, "stage"), Some("y"));
    assert_eq!(latest_of(&got, "loss").map(|m| m.value), Some(2.0));
}

/// Re-logging a param with the same value is fine; params are cut to 6000 and tags to 8000
/// characters; a tag is overwritten.
pub fn params_relog_limits_and_truncation(store: &dyn TrackingStore) {
    let e = create_exp(store, "params");
    let id = run_id(&create_run(store, &e, "params", T0));
    log_param(store, &id, "p", "1");
    log_param(store, &id, "p", "1");
    invalid(
        store.log_batch(&id, &[], &[param("p", "2")], &[]),
        "changing a param",
    );
    let long_param = "x".repeat(7000);
    log_param(store, &id, "long", &long_param);
    log_param(store, &id, "long", &long_param);
    let long_tag = "y".repeat(9000);
    set_tag(store, &id, "long", &long_tag);
    set_tag(store, &id, "t", "first");
    set_tag(store, &id, "t", "second");
    let got = get_run(store, &id);
    assert_eq!(param_of(&got, "p"), Some("1"));
    assert_eq!(got.data.params.iter().filter(|p| p.key == "p").count(), 1);
    assert_eq!(param_of(&got, "long").map(str::len), Some(6000));
    assert_eq!(tag_of(&got, "long").map(str::len), Some(8000));
    assert_eq!(tag_of(&got, "t"), Some("second"));
}

/// History keeps every observation (duplicates too), ordered by step then timestamp (kiln; the
/// spec does not fix an order), and pages concatenate to the whole history.
pub fn metric_history_order_and_pagination(store: &dyn TrackingStore) {
    let e = create_exp(store, "history");
    let id = run_id(&create_run(store, &e, "history", T0));
    let logged = [
        (0.5, 100, 2),
        (0.1, 300, 0),
        (0.2, 200, 1),
        (0.3, 150, 1),
        (0.9, 50, 3),
        (0.1, 300, 0),
    ];
    for (v, ts, step) in logged {
        log_metric(store, &id, "loss", v, ts, step);
    }
    ok(
        store.log_batch(
            &id,
            &[
                Metric::new("loss", 0.7, 10, 4),
                Metric::new("loss", 0.8, 20, 4),
            ],
            &[],
            &[],
        ),
        "batch of two",
    );
    let want = [
        (0.1, 300, 0),
        (0.1, 300, 0),
        (0.3, 150, 1),
        (0.2, 200, 1),
        (0.5, 100, 2),
        (0.9, 50, 3),
        (0.7, 10, 4),
        (0.8, 20, 4),
    ];
    let got: Vec<(f64, i64, i64)> = history(store, &id, "loss")
        .iter()
        .map(|m| {
            assert_eq!(m.key, "loss");
            (m.value, m.timestamp, m.step)
        })
        .collect();
    assert_eq!(got, want);

    let (paged, pages) = all_pages(3, "history pages", |p| {
        store.get_metric_history(&id, "loss", &p)
    });
    let paged: Vec<(f64, i64, i64)> = paged
        .iter()
        .map(|m| (m.value, m.timestamp, m.step))
        .collect();
    assert_eq!(paged, want);
    assert_eq!(pages, 3);

    let empty = ok(
        store.get_metric_history(&id, "nope", &page(10)),
        "unknown key",
    );
    assert!(empty.items.is_empty() && empty.next_page_token.is_none());
    // A store says the run is unknown; over MLflow's REST API (kiln's server or MLflow's) the
    // history of an unknown run is empty, as MLflow's server answers it.
    match store.get_metric_history("0123456789abcdef0123456789abcdef", "loss", &page(10)) {
        Err(StoreError::NotFound(_)) => {}
        Ok(p) if p.items.is_empty() && p.next_page_token.is_none() => {}
        other => panic!("history of an unknown run: {other:?}"),
    }
}

/// The run's metrics hold one latest value per key: max step, then max timestamp, then max
/// value, whatever the logging order.
pub fn latest_metric_selection(store: &dyn TrackingStore) {
    let e = create_exp(store, "latest");
    let id = run_id(&create_run(store, &e, "latest", T0));
    for (v, ts, step) in [(5.0, 200, 1), (1.0, 100, 2), (7.0, 300, 1)] {
        log_metric(store, &id, "by_step", v, ts, step);
    }
    for (v, ts, step) in [(5.0, 100, 3), (1.0, 200, 3), (9.0, 150, 3)] {
        log_metric(store, &id, "by_ts", v, ts, step);
    }
    for (v, ts, step) in [(2.0, 100, 0), (7.0, 100, 0), (3.0, 100, 0)] {
        log_metric(store, &id, "by_value", v, ts, step);
    }
    ok(
        store.log_batch(
            &id,
            &[
                Metric::new("in_batch", 1.0, 100, 5),
                Metric::new("in_batch", 9.0, 999, 4),
            ],
            &[],
            &[],
        ),
        "batch",
    );
    let got = get_run(store, &id);
    let l = |k: &str| {
        let m = latest_of(&got, k).unwrap_or_else(|| panic!("latest {k} missing"));
        (m.value, m.timestamp, m.step)
    };
    assert_eq!(l("by_step"), (1.0, 100, 2));
    assert_eq!(l("by_ts"), (1.0, 200, 3));
    assert_eq!(l("by_value"), (7.0, 100, 0));
    assert_eq!(l("in_batch"), (1.0, 100, 5));
    assert_eq!(got.data.metrics.len(), 4);
}

/// NaN, +Inf and -Inf survive in history and as the latest value.
pub fn metric_nan_and_infinity_round_trip(store: &dyn TrackingStore) {
    let e = create_exp(store, "nan");
    let id = run_id(&create_run(store, &e, "nan", T0));
    ok(
        store.log_batch(
            &id,
            &[
                Metric::new("mixed", f64::NAN, 1, 0),
                Metric::new("mixed", f64::INFINITY, 2, 1),
                Metric::new("mixed", f64::NEG_INFINITY, 3, 2),
                Metric::new("mixed", 1.5, 4, 3),
                Metric::new("nan", 1.0, 1, 0),
                Metric::new("nan", f64::NAN, 2, 1),
                Metric::new("pinf", 1.0, 1, 0),
                Metric::new("pinf", f64::INFINITY, 2, 1),
                Metric::new("ninf", 1.0, 1, 0),
                Metric::new("ninf", f64::NEG_INFINITY, 2, 1),
                Metric::new("only_nan", f64::NAN, 1, 0),
            ],
            &[],
            &[],
        ),
        "log special values",
    );
    let h = history(store, &id, "mixed");
    assert_eq!(h.len(), 4);
    assert!(h[0].value.is_nan(), "NaN in history, got {}", h[0].value);
    assert_eq!(h[1].value, f64::INFINITY);
    assert_eq!(h[2].value, f64::NEG_INFINITY);
    assert_eq!(h[3].value, 1.5);
    let nan_history = history(store, &id, "only_nan");
    assert_eq!(nan_history.len(), 1);
    assert!(nan_history[0].value.is_nan());

    let got = get_run(store, &id);
    let v = |k: &str| {
        latest_of(&got, k)
            .unwrap_or_else(|| panic!("latest {k} missing"))
            .value
    };
    assert!(v("nan").is_nan(), "latest NaN");
    assert!(v("only_nan").is_nan(), "latest NaN");
    assert_eq!(v("pinf"), f64::INFINITY);
    assert_eq!(v("ninf"), f64::NEG_INFINITY);
    assert_eq!(v("mixed"), 1.5);
    let r = get_run(store, &id);
    assert_search(store, &[&e], "metrics.pinf > 1000000", &[&r]);
    assert_search(store, &[&e], "metrics.ninf < -1000000", &[&r]);
}

/// try_log_batch_now either declines (`None`, nothing written) or does exactly what log_batch
/// does, errors included.
pub fn try_log_batch_now_logs_or_declines(store: &dyn TrackingStore) {
    let e = create_exp(store, "try-now");
    let id = run_id(&create_run(store, &e, "try-now", T0));
    let metrics = [Metric::new("loss", 0.5, T0, 3)];
    let params = [Param {
        key: "lr".into(),
        value: "0.1".into(),
    }];
    match store.try_log_batch_now(&id, &metrics, &params, &[]) {
        Some(r) => ok(r, "try_log_batch_now"),
        None => ok(store.log_batch(&id, &metrics, &params, &[]), "log_batch"),
    }
    let got = get_run(store, &id);
    assert_eq!(got.data.metrics.len(), 1, "{:?}", got.data.metrics);
    assert_eq!(got.data.metrics[0].step, 3);
    assert_eq!(got.data.params.len(), 1);
    // Refused the same way as log_batch, or declined.
    if let Some(r) = store.try_log_batch_now("0123456789abcdef0123456789abcdef", &metrics, &[], &[])
    {
        not_found(r, "try_log_batch_now on an unknown run");
    }
    let conflicting = [Param {
        key: "lr".into(),
        value: "0.2".into(),
    }];
    if let Some(r) = store.try_log_batch_now(&id, &[], &conflicting, &[]) {
        expect_err(
            r,
            ErrorCode::InvalidParameterValue,
            "re-logging a param with a new value",
        );
    }
    let history = ok(
        store.get_metric_history(&id, "loss", &PageRequest::default()),
        "history",
    );
    assert_eq!(history.items.len(), 1);
}

/// delete_tag removes one tag; a missing tag or run is RESOURCE_DOES_NOT_EXIST.
pub fn delete_run_tag(store: &dyn TrackingStore) {
    let e = create_exp(store, "tags");
    let id = run_id(&create_run(store, &e, "tags", T0));
    set_tag(store, &id, "a", "1");
    set_tag(store, &id, "b", "2");
    ok(store.delete_tag(&id, "a"), "delete_tag");
    let got = get_run(store, &id);
    assert_eq!(tag_of(&got, "a"), None);
    assert_eq!(tag_of(&got, "b"), Some("2"));
    not_found(store.delete_tag(&id, "a"), "delete a missing tag");
    not_found(
        store.delete_tag("0123456789abcdef0123456789abcdef", "b"),
        "delete_tag on an unknown run",
    );
}

/// Dataset inputs (deduplicated per experiment by name and digest, with per-run tags) and model
/// outputs show on get_run.
pub fn log_inputs_and_outputs(store: &dyn TrackingStore) {
    let e = create_exp(store, "inputs");
    let e2 = create_exp(store, "inputs-2");
    let r1 = run_id(&create_run(store, &e, "r1", T0));
    let r2 = run_id(&create_run(store, &e, "r2", T0));
    let r3 = run_id(&create_run(store, &e2, "r3", T0));
    let ds = |digest: &str, source: &str| Dataset {
        name: "train".into(),
        digest: digest.into(),
        source_type: "local".into(),
        source: source.into(),
        schema: Some("{\"mlflow_colspec\": []}".into()),
        profile: Some("{\"num_rows\": 10}".into()),
    };
    let input = |d: Dataset, context: &str| DatasetInput {
        tags: vec![Tag::new("mlflow.data.context", context)],
        dataset: d,
    };
    ok(
        store.log_inputs(&r1, &[input(ds("abc123", "/data/train.csv"), "training")]),
        "log_inputs r1",
    );
    ok(
        store.log_inputs(&r1, &[input(ds("abc123", "/data/train.csv"), "training")]),
        "log_inputs r1 again",
    );
    ok(
        store.log_inputs(&r2, &[input(ds("abc123", "/elsewhere.csv"), "eval")]),
        "log_inputs r2",
    );
    ok(
        store.log_inputs(&r1, &[input(ds("def456", "/data/train2.csv"), "training")]),
        "second dataset",
    );
    ok(
        store.log_inputs(&r3, &[input(ds("abc123", "/elsewhere.csv"), "eval")]),
        "other experiment",
    );

    let got1 = get_run(store, &r1);
    let inputs = &got1.inputs.dataset_inputs;
    assert_eq!(inputs.len(), 2, "no duplicate input: {inputs:?}");
    let first = inputs
        .iter()
        .find(|i| i.dataset.digest == "abc123")
        .unwrap_or_else(|| panic!("dataset abc123 missing"));
    assert_eq!(first.dataset.name, "train");
    assert_eq!(first.dataset.source, "/data/train.csv");
    assert_eq!(first.dataset.source_type, "local");
    assert_eq!(
        first.dataset.schema.as_deref(),
        Some("{\"mlflow_colspec\": []}")
    );
    assert_eq!(first.dataset.profile.as_deref(), Some("{\"num_rows\": 10}"));
    assert_eq!(
        tag_map(&first.tags),
        pairs(&[("mlflow.data.context", "training")])
    );

    let got2 = get_run(store, &r2);
    let inputs2 = &got2.inputs.dataset_inputs;
    assert_eq!(inputs2.len(), 1);
    assert_eq!(
        inputs2[0].dataset.source, "/data/train.csv",
        "same name and digest in one experiment is one dataset"
    );
    assert_eq!(
        tag_map(&inputs2[0].tags),
        pairs(&[("mlflow.data.context", "eval")])
    );
    let got3 = get_run(store, &r3);
    assert_eq!(
        got3.inputs.dataset_inputs[0].dataset.source,
        "/elsewhere.csv"
    );

    let model = new_logged_model(store, &e, "model", Some(&r1));
    let mid = model.info.model_id.clone();
    ok(
        store.log_outputs(
            &r1,
            &[ModelOutput {
                model_id: mid.clone(),
                step: 3,
            }],
        ),
        "log_outputs",
    );
    let got = get_run(store, &r1);
    assert_eq!(
        got.outputs.model_outputs,
        vec![ModelOutput {
            model_id: mid.clone(),
            step: 3
        }]
    );
    assert!(get_run(store, &r2).outputs.model_outputs.is_empty());

    // A logged model another run read (MLflow 3's `models` of log-inputs), once however often.
    for _ in 0..2 {
        ok(
            store.log_model_inputs(
                &r2,
                &[ModelInput {
                    model_id: mid.clone(),
                }],
            ),
            "log_model_inputs",
        );
    }
    let got = get_run(store, &r2);
    assert_eq!(got.inputs.model_inputs, vec![ModelInput { model_id: mid }]);
    assert!(get_run(store, &r1).inputs.model_inputs.is_empty());
}

// ------------------------------------------------------------------ search runs

/// Metric comparators `> >= < <= = !=`; runs without the metric never match.
pub fn search_runs_metric_filters(store: &dyn TrackingStore) {
    let e = create_exp(store, "metric-filters");
    let runs: Vec<Run> = (0..5)
        .map(|i| {
            let r = create_run(store, &e, &format!("r{i}"), T0 + i);
            log_metric(
                store,
                &run_id(&r),
                "acc",
                [0.1, 0.2, 0.3, 0.4, 0.5][i as usize],
                T0,
                0,
            );
            r
        })
        .collect();
    let without = create_run(store, &e, "no-acc", T0 + 10);
    log_metric(store, &run_id(&without), "loss", 2.0, T0, 0);
    let r = |i: usize| &runs[i];
    assert_search(store, &[&e], "metrics.acc > 0.3", &[r(3), r(4)]);
    assert_search(store, &[&e], "metrics.acc >= 0.3", &[r(2), r(3), r(4)]);
    assert_search(store, &[&e], "metrics.acc < 0.3", &[r(0), r(1)]);
    assert_search(store, &[&e], "metrics.acc <= 0.3", &[r(0), r(1), r(2)]);
    assert_search(store, &[&e], "metrics.acc = 0.3", &[r(2)]);
    assert_search(
        store,
        &[&e],
        "metrics.acc != 0.3",
        &[r(0), r(1), r(3), r(4)],
    );
    assert_search(
        store,
        &[&e],
        "metrics.acc > 0.15 AND metrics.acc < 0.45",
        &[r(1), r(2), r(3)],
    );
    assert_search(
        store,
        &[&e],
        "metric.`acc` >= 0",
        &[r(0), r(1), r(2), r(3), r(4)],
    );
    assert_search(store, &[&e], "metrics.loss = 2", &[&without]);
    assert_search(store, &[&e], "metrics.loss > 1 AND metrics.acc > 0", &[]);
}

/// Params and tags: `= != LIKE ILIKE` (LIKE is case-sensitive, ILIKE not), `IS [NOT] NULL`;
/// `!=` does not match runs that lack the key.
pub fn search_runs_param_and_tag_filters(store: &dyn TrackingStore) {
    let e = create_exp(store, "string-filters");
    let r0 = create_run(store, &e, "r0", T0);
    let r1 = create_run(store, &e, "r1", T0 + 1);
    let r2 = create_run(store, &e, "r2", T0 + 2);
    log_param(store, &run_id(&r0), "model", "LinearModel");
    log_param(store, &run_id(&r1), "model", "linear-svm");
    log_param(store, &run_id(&r2), "model", "tree");
    set_tag(store, &run_id(&r0), "env", "Prod");
    set_tag(store, &run_id(&r1), "env", "prod");
    let ex = [e.as_str()];
    assert_search(store, &ex, "params.model = 'tree'", &[&r2]);
    assert_search(store, &ex, "params.model != 'tree'", &[&r0, &r1]);
    assert_search(store, &ex, "params.model LIKE 'lin%'", &[&r1]);
    assert_search(store, &ex, "params.model LIKE 'Lin%'", &[&r0]);
    assert_search(store, &ex, "params.model LIKE '%ea%'", &[&r0, &r1]);
    assert_search(store, &ex, "params.model LIKE 'tre_'", &[&r2]);
    assert_search(store, &ex, "params.model ILIKE 'LIN%'", &[&r0, &r1]);
    assert_search(store, &ex, "param.model = 'LINEARMODEL'", &[]);
    assert_search(store, &ex, "tags.env = 'prod'", &[&r1]);
    assert_search(store, &ex, "tags.env ILIKE 'PROD'", &[&r0, &r1]);
    assert_search(store, &ex, "tags.env LIKE 'P%'", &[&r0]);
    assert_search(store, &ex, "tags.env != 'prod'", &[&r0]);
    assert_search(store, &ex, "tags.env IS NULL", &[&r2]);
    assert_search(store, &ex, "tags.env IS NOT NULL", &[&r0, &r1]);
    assert_search(store, &ex, "params.missing IS NULL", &[&r0, &r1, &r2]);
    assert_search(store, &ex, "params.model IS NOT NULL", &[&r0, &r1, &r2]);
    assert_search(store, &ex, "tags.`env` = 'Prod'", &[&r0]);
    assert_search(store, &ex, "tags.\"mlflow.runName\" = 'r1'", &[&r1]);
    assert_search(
        store,
        &ex,
        "params.model ILIKE 'lin%' AND tags.env = 'Prod'",
        &[&r0],
    );
}

/// Attributes run_name, status, run_id IN / NOT IN, start_time, user_id and datasets.name, and
/// AND of several clauses.
pub fn search_runs_attribute_and_dataset_filters(store: &dyn TrackingStore) {
    let e = create_exp(store, "attr-filters");
    let a = create_run(store, &e, "train-a", T0 + 1);
    let b = create_run(store, &e, "train-b", T0 + 2);
    let c = create_run(store, &e, "eval-c", T0 + 3);
    let finish = |r: &Run, status: RunStatus| {
        ok(
            store.update_run(
                &run_id(r),
                &RunUpdate {
                    status: Some(status),
                    end_time: Some(T0 + 100),
                    run_name: None,
                },
            ),
            "update_run",
        );
    };
    finish(&a, RunStatus::Finished);
    finish(&c, RunStatus::Failed);
    let dataset = |name: &str| DatasetInput {
        tags: vec![Tag::new("mlflow.data.context", "training")],
        dataset: Dataset {
            name: name.into(),
            digest: format!("{name}-digest"),
            source_type: "local".into(),
            source: format!("/data/{name}"),
            schema: None,
            profile: None,
        },
    };
    ok(
        store.log_inputs(&run_id(&a), &[dataset("mnist")]),
        "inputs a",
    );
    ok(
        store.log_inputs(&run_id(&c), &[dataset("mnist")]),
        "inputs c",
    );
    ok(
        store.log_inputs(&run_id(&b), &[dataset("cifar")]),
        "inputs b",
    );
    let ex = [e.as_str()];
    assert_search(store, &ex, "attributes.run_name = 'train-a'", &[&a]);
    assert_search(store, &ex, "run_name LIKE 'train%'", &[&a, &b]);
    assert_search(store, &ex, "attribute.status = 'FINISHED'", &[&a]);
    assert_search(store, &ex, "status != 'RUNNING'", &[&a, &c]);
    let ids = format!("run_id IN ('{}', '{}')", run_id(&a), run_id(&c));
    assert_search(store, &ex, &ids, &[&a, &c]);
    let not_ids = format!(
        "attributes.run_id NOT IN ('{}', '{}')",
        run_id(&a),
        run_id(&c)
    );
    assert_search(store, &ex, &not_ids, &[&b]);
    assert_search(store, &ex, &format!("start_time > {}", T0 + 1), &[&b, &c]);
    assert_search(
        store,
        &ex,
        &format!("start_time >= {}.5", T0 + 1),
        &[&b, &c],
    );
    assert_search(
        store,
        &ex,
        &format!("attributes.start_time = {}", T0 + 2),
        &[&b],
    );
    assert_search(store, &ex, "user_id = 'alice'", &[&a, &b, &c]);
    assert_search(store, &ex, "datasets.name = 'mnist'", &[&a, &c]);
    assert_search(store, &ex, "datasets.name IN ('cifar')", &[&b]);
    assert_search(store, &ex, "datasets.digest = 'cifar-digest'", &[&b]);
    assert_search(
        store,
        &ex,
        &format!(
            "datasets.name = 'mnist' AND status = 'FINISHED' AND start_time < {}",
            T0 + 2
        ),
        &[&a],
    );
    assert_search(
        store,
        &ex,
        "datasets.name = 'mnist' AND run_name LIKE 'train%'",
        &[&a],
    );
}

/// order_by a metric, ASC and DESC: runs whose value is NaN, then runs without the metric,
/// come last either way (MLflow's server's order).
pub fn search_runs_order_by_metric_missing_last(store: &dyn TrackingStore) {
    let e = create_exp(store, "order-metric");
    let mk = |name: &str, start: i64, acc: Option<f64>| {
        let r = create_run(store, &e, name, start);
        match acc {
            Some(v) => log_metric(store, &run_id(&r), "acc", v, T0, 0),
            None => log_metric(store, &run_id(&r), "other", 1.0, T0, 0),
        }
        run_id(&r)
    };
    let v05 = mk("v05", T0 + 1, Some(0.5));
    let v01 = mk("v01", T0 + 2, Some(0.1));
    let nan = mk("nan", T0 + 3, Some(f64::NAN));
    let v09 = mk("v09", T0 + 4, Some(0.9));
    let missing = mk("missing", T0 + 5, None);
    let ninf = mk("ninf", T0 + 6, Some(f64::NEG_INFINITY));
    let last_two = set([nan.clone(), missing.clone()]);

    let asc = ordered_ids(store, &[&e], &["metrics.acc ASC"]);
    assert_eq!(asc.len(), 6);
    assert_eq!(
        &asc[..4],
        &[ninf.clone(), v01.clone(), v05.clone(), v09.clone()]
    );
    assert_eq!(set(asc[4..].to_vec()), last_two, "missing/NaN last in ASC");
    assert_eq!(
        &asc[4..],
        &[nan.clone(), missing.clone()],
        "NaN before missing"
    );

    let desc = ordered_ids(store, &[&e], &["metrics.acc DESC"]);
    assert_eq!(
        &desc[..4],
        &[v09.clone(), v05.clone(), v01.clone(), ninf.clone()]
    );
    assert_eq!(
        set(desc[4..].to_vec()),
        last_two,
        "missing/NaN last in DESC"
    );
    assert_eq!(
        &desc[4..],
        &[nan.clone(), missing.clone()],
        "NaN before missing"
    );

    let default_dir = ordered_ids(store, &[&e], &["metrics.acc"]);
    assert_eq!(default_dir, asc, "ASC is the default direction");

    // Filtering on the metric and ordering by it.
    let q = run_query(&[&e], "metrics.acc > 0", &["metrics.acc DESC"]);
    let p = ok(store.search_runs(&q), "filter + order");
    let ids: Vec<String> = p.items.iter().map(run_id).collect();
    assert_eq!(ids, vec![v09, v05, v01]);
}

/// order_by params, tags and attributes (missing values last), and several keys.
pub fn search_runs_order_by_param_tag_attribute(store: &dyn TrackingStore) {
    let e = create_exp(store, "order-other");
    let rb = create_run(store, &e, "x-b", T0 + 3);
    let ra = create_run(store, &e, "x-a", T0 + 1);
    let rc = create_run(store, &e, "x-c", T0 + 4);
    let rd = create_run(store, &e, "x-d", T0 + 2);
    for (r, letter, rank) in [(&rb, "b", "2"), (&ra, "a", "3"), (&rc, "c", "1")] {
        log_param(store, &run_id(r), "letter", letter);
        set_tag(store, &run_id(r), "rank", rank);
    }
    let ex = [e.as_str()];
    let ids = |rs: &[&Run]| rs.iter().map(|r| run_id(r)).collect::<Vec<_>>();
    assert_eq!(
        ordered_ids(store, &ex, &["params.letter ASC"]),
        ids(&[&ra, &rb, &rc, &rd])
    );
    assert_eq!(
        ordered_ids(store, &ex, &["params.letter DESC"]),
        ids(&[&rc, &rb, &ra, &rd])
    );
    assert_eq!(
        ordered_ids(store, &ex, &["tags.rank ASC"]),
        ids(&[&rc, &rb, &ra, &rd])
    );
    assert_eq!(
        ordered_ids(store, &ex, &["tags.rank DESC"]),
        ids(&[&ra, &rb, &rc, &rd])
    );
    assert_eq!(
        ordered_ids(store, &ex, &["attributes.run_name ASC"]),
        ids(&[&ra, &rb, &rc, &rd])
    );
    assert_eq!(
        ordered_ids(store, &ex, &["run_name DESC"]),
        ids(&[&rd, &rc, &rb, &ra])
    );
    assert_eq!(
        ordered_ids(store, &ex, &["attributes.start_time ASC"]),
        ids(&[&ra, &rd, &rb, &rc])
    );
    for (r, end) in [(&ra, 50), (&rb, 70), (&rc, 60)] {
        ok(
            store.update_run(
                &run_id(r),
                &RunUpdate {
                    status: Some(RunStatus::Finished),
                    end_time: Some(T0 + end),
                    run_name: None,
                },
            ),
            "finish",
        );
    }
    assert_eq!(
        ordered_ids(store, &ex, &["end_time DESC"]),
        ids(&[&rb, &rc, &ra, &rd]),
        "a missing end_time sorts last"
    );
    assert_eq!(
        ordered_ids(store, &ex, &["end_time ASC"]),
        ids(&[&ra, &rc, &rb, &rd]),
        "a missing end_time sorts last"
    );
    // Two keys: status (all FINISHED but rd) then run_name DESC.
    assert_eq!(
        ordered_ids(store, &ex, &["status ASC", "run_name DESC"]),
        ids(&[&rc, &rb, &ra, &rd])
    );
}

/// Without order_by: start_time DESC, then run_id ASC.
pub fn search_runs_default_order(store: &dyn TrackingStore) {
    let e = create_exp(store, "default-order");
    let starts = [5, 1, 5, 3, 5, 1];
    let mut runs: Vec<(i64, String)> = starts
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let r = create_run(store, &e, &format!("r{i}"), T0 + s);
            (T0 + s, run_id(&r))
        })
        .collect();
    runs.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
    let want: Vec<String> = runs.into_iter().map(|(_, id)| id).collect();
    assert_eq!(ordered_ids(store, &[&e], &[]), want);
}

/// 25 runs in pages of 7: four pages that concatenate to the full ordered list, for the default
/// order, a metric order with ties and missing values, and a filter.
pub fn search_runs_pagination(store: &dyn TrackingStore) {
    let e = create_exp(store, "pages");
    for i in 0..25_i64 {
        let r = create_run(store, &e, &format!("run-{i:02}"), T0 + i % 5);
        if i % 6 != 0 {
            log_metric(store, &run_id(&r), "m", (i % 4) as f64, T0, 0);
        }
        log_param(
            store,
            &run_id(&r),
            "parity",
            if i % 2 == 0 { "even" } else { "odd" },
        );
    }
    for (filter_text, order_by) in [
        ("", vec![]),
        ("", vec!["metrics.m DESC"]),
        ("", vec!["metrics.m ASC", "params.parity DESC"]),
        ("params.parity = 'odd'", vec!["attributes.run_name ASC"]),
    ] {
        let q = run_query(&[&e], filter_text, &order_by);
        let full = ok(store.search_runs(&q), "full search");
        assert!(full.next_page_token.is_none());
        let full_ids: Vec<String> = full.items.iter().map(run_id).collect();
        let (paged, pages) = all_pages(7, "search_runs pages", |p| {
            let mut q = run_query(&[&e], filter_text, &order_by);
            q.page = p;
            store.search_runs(&q)
        });
        let paged_ids: Vec<String> = paged.iter().map(run_id).collect();
        assert_eq!(
            paged_ids, full_ids,
            "pages of 7 concatenate to the full list (filter {filter_text:?}, order {order_by:?})"
        );
        assert_eq!(
            set(paged_ids.clone()).len(),
            paged_ids.len(),
            "no duplicates"
        );
        let expected_pages = full_ids.len().div_ceil(7);
        assert_eq!(pages, expected_pages);
        if filter_text.is_empty() {
            assert_eq!(full_ids.len(), 25);
        } else {
            assert_eq!(full_ids.len(), 12);
        }
    }
}

/// Several experiment ids at once; unknown ids give nothing; deleted runs (and runs of deleted
/// experiments) show only for DELETED_ONLY and ALL.
pub fn search_runs_experiments_and_view_types(store: &dyn TrackingStore) {
    let ea = create_exp(store, "view-a");
    let eb = create_exp(store, "view-b");
    let a1 = run_id(&create_run(store, &ea, "a1", T0));
    let a2 = run_id(&create_run(store, &ea, "a2", T0 + 1));
    let b1 = run_id(&create_run(store, &eb, "b1", T0 + 2));
    ok(store.delete_run(&a2), "delete a2");
    let search = |ids: &[&str], view: ViewType| {
        let mut q = run_query(ids, "", &[]);
        q.view = view;
        let p = ok(store.search_runs(&q), "search_runs");
        set(p.items.iter().map(run_id))
    };
    assert_eq!(
        search(&[&ea, &eb], ViewType::ActiveOnly),
        set([a1.clone(), b1.clone()])
    );
    assert_eq!(search(&[&ea], ViewType::ActiveOnly), set([a1.clone()]));
    assert_eq!(
        search(&[&ea, &eb], ViewType::DeletedOnly),
        set([a2.clone()])
    );
    assert_eq!(
        search(&[&ea, &eb], ViewType::All),
        set([a1.clone(), a2.clone(), b1.clone()])
    );
    assert!(search(&["987654321"], ViewType::All).is_empty());
    assert!(search(&[], ViewType::All).is_empty());
    ok(store.delete_experiment(&eb), "delete eb");
    assert_eq!(search(&[&ea, &eb], ViewType::ActiveOnly), set([a1.clone()]));
    assert_eq!(search(&[&ea, &eb], ViewType::DeletedOnly), set([a2, b1]));
}

// ------------------------------------------------------------------ logged models

/// Logged models: create (PENDING, `m-` id, artifact_uri under `<location>/models/<id>`), get,
/// finalize, tags, metrics logged with its model_id, delete (hidden from search).
pub fn logged_model_lifecycle(store: &dyn TrackingStore) {
    let e = create_exp(store, "logged");
    let exp = ok(store.get_experiment(&e), "get exp");
    let r = run_id(&create_run(store, &e, "src", T0));
    let m = ok(
        store.create_logged_model(&NewLoggedModel {
            experiment_id: e.clone(),
            name: Some("model".into()),
            source_run_id: Some(r.clone()),
            model_type: Some("sklearn".into()),
            params: vec![param("alpha", "0.5")],
            tags: vec![Tag::new("framework", "sklearn")],
        }),
        "create_logged_model",
    );
    let id = m.info.model_id.clone();
    assert!(
        id.strip_prefix("m-").is_some_and(is_hex32),
        "model id {id:?} is m- and 32 hex"
    );
    assert_eq!(m.info.experiment_id, e);
    assert_eq!(m.info.name, "model");
    assert_eq!(m.info.status, LoggedModelStatus::LoggedModelPending);
    assert_eq!(
        m.info.artifact_uri,
        format!("{}/models/{id}/artifacts", exp.artifact_location)
    );
    assert_eq!(m.info.source_run_id.as_deref(), Some(r.as_str()));
    assert_eq!(m.info.model_type.as_deref(), Some("sklearn"));
    assert_eq!(m.info.lifecycle_stage, LifecycleStage::Active);
    assert!(m.info.creation_timestamp_ms > 0);
    assert_eq!(tag_map(&m.info.tags), pairs(&[("framework", "sklearn")]));
    assert_eq!(m.data.params, vec![param("alpha", "0.5")]);

    let got = ok(store.get_logged_model(&id), "get_logged_model");
    assert_eq!(got.info, m.info);
    not_found(
        store.get_logged_model("m-0123456789abcdef0123456789abcdef"),
        "get unknown logged model",
    );

    let ready = ok(
        store.set_logged_model_status(&id, LoggedModelStatus::LoggedModelReady),
        "finalize",
    );
    assert_eq!(ready.info.status, LoggedModelStatus::LoggedModelReady);
    assert_eq!(
        ok(store.get_logged_model(&id), "get").info.status,
        LoggedModelStatus::LoggedModelReady
    );

    ok(
        store.set_logged_model_tags(
            &id,
            &[
                Tag::new(
                    "mlflow.modelVersions",
                    "[{\"name\": \"m\", \"version\": 1}]",
                ),
                Tag::new("framework", "xgboost"),
            ],
        ),
        "set tags",
    );
    let got = ok(store.get_logged_model(&id), "get");
    assert_eq!(
        tag_map(&got.info.tags),
        pairs(&[
            ("framework", "xgboost"),
            (
                "mlflow.modelVersions",
                "[{\"name\": \"m\", \"version\": 1}]"
            )
        ])
    );
    ok(
        store.delete_logged_model_tag(&id, "framework"),
        "delete tag",
    );
    let got = ok(store.get_logged_model(&id), "get");
    assert_eq!(got.info.tags.len(), 1);
    not_found(
        store.delete_logged_model_tag(&id, "framework"),
        "delete a missing tag",
    );

    let mut metric = Metric::new("acc", 0.9, T0, 1);
    metric.model_id = Some(id.clone());
    ok(
        store.log_batch(&r, &[metric], &[], &[]),
        "metric with model_id",
    );
    let got = ok(store.get_logged_model(&id), "get");
    assert_eq!(got.data.metrics.len(), 1);
    assert_eq!(got.data.metrics[0].key, "acc");
    assert_eq!(got.data.metrics[0].value, 0.9);
    assert_eq!(got.data.metrics[0].run_id.as_deref(), Some(r.as_str()));
    let h = history(store, &r, "acc");
    assert_eq!(h[0].model_id.as_deref(), Some(id.as_str()));

    not_found(
        store.create_logged_model(&NewLoggedModel {
            experiment_id: e.clone(),
            source_run_id: Some("0123456789abcdef0123456789abcdef".into()),
            ..NewLoggedModel::default()
        }),
        "unknown source run",
    );
    not_found(
        store.create_logged_model(&NewLoggedModel {
            experiment_id: "987654321".into(),
            ..NewLoggedModel::default()
        }),
        "unknown experiment",
    );
    let unnamed = ok(
        store.create_logged_model(&NewLoggedModel {
            experiment_id: e.clone(),
            ..NewLoggedModel::default()
        }),
        "unnamed",
    );
    assert!(!unnamed.info.name.is_empty(), "a name is generated");

    ok(store.delete_logged_model(&id), "delete_logged_model");
    let q = LoggedModelQuery {
        experiment_ids: vec![e.clone()],
        page: page(100),
        ..LoggedModelQuery::default()
    };
    let found = ok(store.search_logged_models(&q), "search");
    assert!(
        found.items.iter().all(|m| m.info.model_id != id),
        "deleted logged models are not searched"
    );
    // But still found by id, marked deleted (a registered version may name it), on every
    // store: the REST store asks its server for deleted ones too.
    let got = ok(store.get_logged_model(&id), "get a deleted logged model");
    assert_eq!(got.info.lifecycle_stage, LifecycleStage::Deleted);
    not_found(
        store.set_logged_model_tags("m-0123456789abcdef0123456789abcdef", &[Tag::new("a", "b")]),
        "tag unknown logged model",
    );
}

/// Search by experiment ids, `name =` and `source_run_id =` (what the client's runs:/ resolution
/// sends), with pagination.
pub fn logged_model_search(store: &dyn TrackingStore) {
    let ea = create_exp(store, "lm-a");
    let eb = create_exp(store, "lm-b");
    let ra = run_id(&create_run(store, &ea, "ra", T0));
    let ma1 = new_logged_model(store, &ea, "clf", Some(&ra)).info.model_id;
    let ma2 = new_logged_model(store, &ea, "clf", None).info.model_id;
    let ma3 = new_logged_model(store, &ea, "reg", Some(&ra)).info.model_id;
    let mb1 = new_logged_model(store, &eb, "clf", None).info.model_id;
    let search = |exps: &[&str], f: &str| {
        let q = LoggedModelQuery {
            experiment_ids: exps.iter().map(|s| (*s).to_string()).collect(),
            filter: filter(f, Target::LoggedModels),
            order_by: Vec::new(),
            page: page(100),
        };
        set(ok(store.search_logged_models(&q), "search_logged_models")
            .items
            .into_iter()
            .map(|m| m.info.model_id))
    };
    assert_eq!(
        search(&[&ea], "name = 'clf'"),
        set([ma1.clone(), ma2.clone()])
    );
    assert_eq!(
        search(&[&ea, &eb], "name = 'clf'"),
        set([ma1.clone(), ma2.clone(), mb1.clone()])
    );
    assert_eq!(
        search(&[&ea], &format!("source_run_id = '{ra}'")),
        set([ma1.clone(), ma3.clone()])
    );
    assert_eq!(
        search(&[&ea], &format!("name = 'clf' AND source_run_id = '{ra}'")),
        set([ma1.clone()])
    );
    assert_eq!(search(&[&eb], ""), set([mb1.clone()]));
    assert_eq!(search(&[&ea, &eb], "creation_timestamp > 0.5").len(), 4);
    assert!(search(&["987654321"], "").is_empty());

    let (paged, pages) = all_pages(3, "logged model pages", |p| {
        store.search_logged_models(&LoggedModelQuery {
            experiment_ids: vec![ea.clone(), eb.clone()],
            page: p,
            ..LoggedModelQuery::default()
        })
    });
    let ids: Vec<String> = paged.into_iter().map(|m| m.info.model_id).collect();
    assert_eq!(
        set(ids.clone()),
        set([ma1.clone(), ma2.clone(), ma3.clone(), mb1])
    );
    assert_eq!(ids.len(), 4, "no duplicates across pages");
    assert_eq!(pages, 2);

    // Ordered by a metric: the model's latest value (highest step); models without it last.
    let model_metric = |model: &str, value: f64, step: i64| {
        let mut m = Metric::new("acc", value, T0, step);
        m.model_id = Some(model.to_string());
        ok(store.log_batch(&ra, &[m], &[], &[]), "log model metric");
    };
    model_metric(&ma1, 0.9, 0);
    model_metric(&ma1, 0.5, 1);
    model_metric(&ma3, 0.7, 0);
    let by_acc = |ascending: bool| -> Vec<String> {
        ok(
            store.search_logged_models(&LoggedModelQuery {
                experiment_ids: vec![ea.clone()],
                order_by: vec![OrderBy {
                    entity: Entity::Metric,
                    key: "acc".into(),
                    ascending,
                }],
                page: page(100),
                ..LoggedModelQuery::default()
            }),
            "order by metric",
        )
        .items
        .into_iter()
        .map(|m| m.info.model_id)
        .collect()
    };
    assert_eq!(by_acc(false), vec![ma3.clone(), ma1.clone(), ma2.clone()]);
    assert_eq!(by_acc(true), vec![ma1, ma3, ma2]);
}

// ------------------------------------------------------------------ registry

/// Registered models: create (duplicate → RESOURCE_ALREADY_EXISTS), get, update, delete.
pub fn registered_model_crud(store: &dyn TrackingStore) {
    let rm = ok(
        store.create_registered_model("reg-model", Some("first"), &[Tag::new("team", "ml")]),
        "create_registered_model",
    );
    assert_eq!(rm.name, "reg-model");
    assert_eq!(rm.description.as_deref(), Some("first"));
    assert_eq!(tag_map(&rm.tags), pairs(&[("team", "ml")]));
    assert!(rm.creation_timestamp > 0);
    assert!(rm.latest_versions.is_empty());
    assert!(rm.aliases.is_empty());
    exists(
        store.create_registered_model("reg-model", None, &[]),
        "duplicate registered model",
    );
    invalid(
        store.create_registered_model("", None, &[]),
        "empty model name",
    );
    // As on MLflow's server: a models:/ URI could not name these.
    for bad in ["team/churn", "churn:v2"] {
        invalid(store.create_registered_model(bad, None, &[]), bad);
        invalid(store.rename_registered_model("reg-model", bad), bad);
    }
    let got = ok(store.get_registered_model("reg-model"), "get");
    assert_eq!(got.name, "reg-model");
    assert_eq!(got.description.as_deref(), Some("first"));
    not_found(store.get_registered_model("missing"), "get unknown model");
    let updated = ok(
        store.update_registered_model("reg-model", "second"),
        "update",
    );
    assert_eq!(updated.description.as_deref(), Some("second"));
    assert_eq!(
        ok(store.get_registered_model("reg-model"), "get")
            .description
            .as_deref(),
        Some("second")
    );
    not_found(
        store.update_registered_model("missing", "x"),
        "update unknown model",
    );
    new_version(store, "reg-model", None, None);
    ok(store.delete_registered_model("reg-model"), "delete");
    not_found(store.get_registered_model("reg-model"), "get deleted model");
    not_found(
        store.get_model_version("reg-model", "1"),
        "versions go with the model",
    );
    not_found(store.delete_registered_model("reg-model"), "delete again");
    let again = ok(
        store.create_registered_model("reg-model", None, &[]),
        "recreate",
    );
    assert!(again.tags.is_empty());
    assert_eq!(new_version(store, "reg-model", None, None).version, "1");
}

/// Rename moves versions, tags, aliases and alias history to the new name.
pub fn registered_model_rename(store: &dyn TrackingStore) {
    ok(
        store.create_registered_model("old-name", None, &[Tag::new("k", "v")]),
        "create",
    );
    new_version(store, "old-name", None, None);
    new_version(store, "old-name", None, None);
    ok(
        store.set_model_version_tag("old-name", "1", &Tag::new("vt", "1")),
        "version tag",
    );
    ok(
        store.set_alias("old-name", "champion", "2", &AliasActor::default()),
        "alias",
    );
    let renamed = ok(
        store.rename_registered_model("old-name", "new-name"),
        "rename",
    );
    assert_eq!(renamed.name, "new-name");
    assert_eq!(tag_map(&renamed.tags), pairs(&[("k", "v")]));
    assert!(renamed.latest_versions.iter().all(|v| v.name == "new-name"));
    assert_eq!(renamed.aliases.len(), 1);
    assert_eq!(renamed.aliases[0].alias, "champion");
    assert_eq!(renamed.aliases[0].version, "2");
    not_found(store.get_registered_model("old-name"), "old name gone");
    not_found(
        store.get_model_version("old-name", "1"),
        "old versions gone",
    );
    let v1 = ok(store.get_model_version("new-name", "1"), "version 1");
    assert_eq!(v1.name, "new-name");
    assert_eq!(tag_map(&v1.tags), pairs(&[("vt", "1")]));
    let champ = ok(
        store.get_model_version_by_alias("new-name", "champion"),
        "alias follows",
    );
    assert_eq!(champ.version, "2");
    assert_eq!(
        ok(store.alias_history("new-name", "champion"), "history").len(),
        1
    );
    create_model(store, "taken");
    exists(
        store.rename_registered_model("new-name", "taken"),
        "rename onto a taken name",
    );
    not_found(
        store.rename_registered_model("missing", "x"),
        "rename unknown model",
    );
    assert_eq!(new_version(store, "new-name", None, None).version, "3");
}

/// Registered-model tags: set, overwrite, delete.
pub fn registered_model_tags(store: &dyn TrackingStore) {
    create_model(store, "tagged");
    ok(
        store.set_registered_model_tag("tagged", &Tag::new("a", "1")),
        "a",
    );
    ok(
        store.set_registered_model_tag("tagged", &Tag::new("b", "2")),
        "b",
    );
    ok(
        store.set_registered_model_tag("tagged", &Tag::new("a", "3")),
        "a again",
    );
    ok(store.delete_registered_model_tag("tagged", "b"), "delete b");
    let got = ok(store.get_registered_model("tagged"), "get");
    assert_eq!(tag_map(&got.tags), pairs(&[("a", "3")]));
    not_found(
        store.set_registered_model_tag("missing", &Tag::new("a", "1")),
        "tag unknown model",
    );
}

/// Versions are numbered 1, 2, 3 per model and never reused after a delete; get, update,
/// delete and version tags.
pub fn model_version_numbering_and_crud(store: &dyn TrackingStore) {
    let e = create_exp(store, "versions");
    let r = run_id(&create_run(store, &e, "src", T0));
    let lm = new_logged_model(store, &e, "model", Some(&r)).info.model_id;
    create_model(store, "numbered");
    let v1 = ok(
        store.create_model_version(&NewModelVersion {
            name: "numbered".into(),
            source: format!("models:/{lm}"),
            run_id: Some(r.clone()),
            model_id: Some(lm.clone()),
            run_link: None,
            description: Some("v1 desc".into()),
            tags: vec![Tag::new("stage", "dev")],
            user_id: Some("alice".into()),
        }),
        "create v1",
    );
    assert_eq!(v1.name, "numbered");
    assert_eq!(v1.version, "1");
    assert_eq!(v1.status, "READY");
    assert_eq!(v1.current_stage, "None");
    assert_eq!(v1.source, format!("models:/{lm}"));
    assert_eq!(v1.run_id.as_deref(), Some(r.as_str()));
    assert_eq!(v1.model_id.as_deref(), Some(lm.as_str()));
    assert_eq!(v1.description, "v1 desc");
    assert_eq!(tag_map(&v1.tags), pairs(&[("stage", "dev")]));
    assert!(v1.creation_timestamp > 0);
    let v2 = new_version(store, "numbered", Some(&r), None);
    let v3 = new_version(store, "numbered", None, None);
    assert_eq!((v2.version.as_str(), v3.version.as_str()), ("2", "3"));

    let got = ok(store.get_model_version("numbered", "1"), "get v1");
    assert_eq!(got.version, "1");
    assert_eq!(got.description, "v1 desc");
    assert_eq!(got.model_id.as_deref(), Some(lm.as_str()));
    not_found(store.get_model_version("numbered", "9"), "unknown version");
    not_found(store.get_model_version("missing", "1"), "unknown model");
    invalid(
        store.get_model_version("numbered", "abc"),
        "non-numeric version",
    );

    let updated = ok(
        store.update_model_version("numbered", "2", "better"),
        "update",
    );
    assert_eq!(updated.description, "better");
    assert_eq!(
        ok(store.get_model_version("numbered", "2"), "get v2").description,
        "better"
    );
    not_found(
        store.update_model_version("numbered", "9", "x"),
        "update unknown version",
    );

    ok(
        store.set_model_version_tag("numbered", "2", &Tag::new("k", "v")),
        "version tag",
    );
    assert_eq!(
        tag_map(&ok(store.get_model_version("numbered", "2"), "get").tags),
        pairs(&[("k", "v")])
    );
    ok(
        store.delete_model_version_tag("numbered", "2", "k"),
        "delete version tag",
    );
    assert!(ok(store.get_model_version("numbered", "2"), "get")
        .tags
        .is_empty());
    not_found(
        store.set_model_version_tag("numbered", "9", &Tag::new("k", "v")),
        "tag unknown version",
    );

    ok(store.delete_model_version("numbered", "3"), "delete v3");
    not_found(store.get_model_version("numbered", "3"), "deleted version");
    not_found(
        store.delete_model_version("numbered", "3"),
        "delete deleted version",
    );
    let v4 = new_version(store, "numbered", None, None);
    assert_eq!(v4.version, "4", "version numbers are never reused");
    ok(store.delete_model_version("numbered", "2"), "delete v2");
    let q = NameQuery {
        filter: filter("name = 'numbered'", Target::ModelVersions),
        order_by: Vec::new(),
        page: page(100),
    };
    let versions = set(ok(store.search_model_versions(&q), "search")
        .items
        .into_iter()
        .map(|v| v.version));
    assert_eq!(versions, set(["1", "4"]));
    not_found(
        store.create_model_version(&NewModelVersion {
            name: "missing".into(),
            source: "s3://b/p".into(),
            ..NewModelVersion::default()
        }),
        "version of an unknown model",
    );
}

/// Stage transitions (with archive_existing) and the latest version per stage.
pub fn model_version_stages_and_latest(store: &dyn TrackingStore) {
    create_model(store, "staged");
    for _ in 0..5 {
        new_version(store, "staged", None, None);
    }
    let stage_of = |v: &str| ok(store.get_model_version("staged", v), "get").current_stage;
    let mv = ok(
        store.transition_model_version_stage("staged", "1", "Staging", false),
        "v1 → Staging",
    );
    assert_eq!(mv.current_stage, "Staging");
    ok(
        store.transition_model_version_stage("staged", "2", "Staging", true),
        "v2 → Staging, archiving",
    );
    assert_eq!(stage_of("1"), "Archived");
    assert_eq!(stage_of("2"), "Staging");
    ok(
        store.transition_model_version_stage("staged", "3", "production", false),
        "v3 → Production (any case)",
    );
    ok(
        store.transition_model_version_stage("staged", "4", "Production", false),
        "v4 → Production",
    );
    assert_eq!(stage_of("3"), "Production");
    assert_eq!(stage_of("4"), "Production");

    let latest = |stages: &[&str]| {
        let stages: Vec<String> = stages.iter().map(|s| (*s).to_string()).collect();
        let mut got: Vec<(String, String)> = ok(
            store.get_latest_versions("staged", &stages),
            "get_latest_versions",
        )
        .into_iter()
        .map(|v| (v.current_stage, v.version))
        .collect();
        got.sort();
        got
    };
    let all = vec![
        ("Archived".to_string(), "1".to_string()),
        ("None".to_string(), "5".to_string()),
        ("Production".to_string(), "4".to_string()),
        ("Staging".to_string(), "2".to_string()),
    ];
    assert_eq!(latest(&[]), all);
    assert_eq!(
        latest(&["Production"]),
        vec![("Production".to_string(), "4".to_string())]
    );
    assert_eq!(
        latest(&["staging", "Production"]),
        vec![
            ("Production".to_string(), "4".to_string()),
            ("Staging".to_string(), "2".to_string())
        ]
    );
    let mut from_model: Vec<(String, String)> = ok(store.get_registered_model("staged"), "get")
        .latest_versions
        .into_iter()
        .map(|v| (v.current_stage, v.version))
        .collect();
    from_model.sort();
    assert_eq!(from_model, all, "registered model latest_versions");

    ok(
        store.transition_model_version_stage("staged", "4", "Production", true),
        "re-promote v4, archiving",
    );
    assert_eq!(stage_of("3"), "Archived");
    assert_eq!(stage_of("4"), "Production");
    invalid(
        store.transition_model_version_stage("staged", "4", "bogus", false),
        "unknown stage",
    );
    not_found(
        store.transition_model_version_stage("staged", "9", "Staging", false),
        "unknown version",
    );
    not_found(
        store.get_latest_versions("missing", &[]),
        "latest of unknown model",
    );
}

/// Registered-model search: name = LIKE ILIKE, tags; prompts (tagged
/// `mlflow.prompt.is_prompt = 'true'`) left out unless the filter asks for them, as MLflow's
/// server does (the client appends `tag.mlflow.prompt.is_prompt != 'true'`); `tag != 'x'` on any
/// other tag matches only models that have it; order and pages.
pub fn search_registered_models(store: &dyn TrackingStore) {
    let prompt = |v: &str| vec![Tag::new("mlflow.prompt.is_prompt", v)];
    ok(
        store.create_registered_model("alpha-a", None, &prompt("true")),
        "a",
    );
    ok(
        store.create_registered_model("alpha-b", None, &prompt("false")),
        "b",
    );
    ok(store.create_registered_model("alpha-c", None, &[]), "c");
    ok(
        store.create_registered_model("beta", None, &[Tag::new("team", "x")]),
        "beta",
    );
    let search = |f: &str| {
        let q = NameQuery {
            filter: filter(f, Target::RegisteredModels),
            order_by: Vec::new(),
            page: page(100),
        };
        ok(
            store.search_registered_models(&q),
            "search_registered_models",
        )
        .items
        .into_iter()
        .map(|m| m.name)
        .collect::<Vec<_>>()
    };
    let names = |f: &str| set(search(f));
    assert_eq!(names("name LIKE 'alpha%'"), set(["alpha-b", "alpha-c"]));
    assert_eq!(names("name ILIKE 'ALPHA%'"), set(["alpha-b", "alpha-c"]));
    assert_eq!(
        names("name LIKE 'alpha%' AND tags.`mlflow.prompt.is_prompt` != 'false'"),
        set(["alpha-a"])
    );
    assert_eq!(names("tags.team != 'y'"), set(["beta"]));
    assert!(names("name LIKE 'ALPHA%'").is_empty());
    assert_eq!(names("name = 'beta'"), set(["beta"]));
    assert_eq!(
        names("tags.`mlflow.prompt.is_prompt` != 'true'"),
        set(["alpha-b", "alpha-c", "beta"])
    );
    assert_eq!(
        names("name LIKE 'alpha%' AND tag.`mlflow.prompt.is_prompt` != 'true'"),
        set(["alpha-b", "alpha-c"])
    );
    assert_eq!(
        names("tag.`mlflow.prompt.is_prompt` = 'true'"),
        set(["alpha-a"])
    );
    assert_eq!(names("tags.team = 'x'"), set(["beta"]));
    assert_eq!(
        search(""),
        vec!["alpha-b", "alpha-c", "beta"],
        "default order is by name"
    );
    let desc = ok(
        store.search_registered_models(&NameQuery {
            filter: Filter::default(),
            order_by: vec![order("name DESC", Target::RegisteredModels)],
            page: page(100),
        }),
        "order by name desc",
    );
    let desc: Vec<String> = desc.items.into_iter().map(|m| m.name).collect();
    assert_eq!(desc, vec!["beta", "alpha-c", "alpha-b"]);
    let (paged, pages) = all_pages(2, "registered model pages", |p| {
        store.search_registered_models(&NameQuery {
            page: p,
            ..NameQuery::default()
        })
    });
    let paged: Vec<String> = paged.into_iter().map(|m| m.name).collect();
    assert_eq!(paged, vec!["alpha-b", "alpha-c", "beta"]);
    assert_eq!(pages, 2);
}

/// Model-version search by `name =`, `run_id =`, LIKE and AND, with pagination.
pub fn search_model_versions(store: &dyn TrackingStore) {
    let e = create_exp(store, "mv-search");
    let r1 = run_id(&create_run(store, &e, "r1", T0));
    let r2 = run_id(&create_run(store, &e, "r2", T0));
    create_model(store, "m1");
    create_model(store, "m2");
    create_model(store, "other");
    new_version(store, "m1", Some(&r1), None);
    new_version(store, "m1", Some(&r2), None);
    new_version(store, "m2", Some(&r1), None);
    new_version(store, "other", None, None);
    let search = |f: &str| {
        let q = NameQuery {
            filter: filter(f, Target::ModelVersions),
            order_by: Vec::new(),
            page: page(100),
        };
        ok(store.search_model_versions(&q), "search_model_versions")
            .items
            .into_iter()
            .map(|v| (v.name, v.version))
            .collect::<BTreeSet<_>>()
    };
    let mv = |n: &str, v: &str| (n.to_string(), v.to_string());
    assert_eq!(
        search("name = 'm1'"),
        [mv("m1", "1"), mv("m1", "2")].into_iter().collect()
    );
    assert_eq!(
        search(&format!("run_id = '{r1}'")),
        [mv("m1", "1"), mv("m2", "1")].into_iter().collect()
    );
    assert_eq!(
        search(&format!("name = 'm1' AND run_id = '{r2}'")),
        [mv("m1", "2")].into_iter().collect()
    );
    assert_eq!(search("name LIKE 'm%'").len(), 3);
    assert_eq!(
        search("name = 'm1' AND version_number > 1.5"),
        [mv("m1", "2")].into_iter().collect()
    );
    assert_eq!(
        search("name = 'm1' AND version_number <= 1"),
        [mv("m1", "1")].into_iter().collect()
    );
    assert_eq!(
        search("name = 'm1' AND version = 2"),
        [mv("m1", "2")].into_iter().collect()
    );
    assert_eq!(search("").len(), 4);
    assert!(search("name = 'missing'").is_empty());
    let (paged, pages) = all_pages(2, "model version pages", |p| {
        store.search_model_versions(&NameQuery {
            page: p,
            ..NameQuery::default()
        })
    });
    let paged: Vec<(String, String)> = paged.into_iter().map(|v| (v.name, v.version)).collect();
    assert_eq!(paged.len(), 4);
    assert_eq!(paged.iter().cloned().collect::<BTreeSet<_>>().len(), 4);
    assert_eq!(pages, 2);
}

/// Aliases: set, move, get by alias, list on the model and version, delete; a missing version or
/// model is not found, an unknown alias of an existing model INVALID_PARAMETER_VALUE (as MLflow
/// answers); reserved names are invalid; deleting a version drops its aliases.
pub fn aliases(store: &dyn TrackingStore) {
    create_model(store, "aliased");
    new_version(store, "aliased", None, None);
    new_version(store, "aliased", None, None);
    let nobody = AliasActor::default();
    ok(store.set_alias("aliased", "champion", "1", &nobody), "set");
    let by_alias = ok(
        store.get_model_version_by_alias("aliased", "champion"),
        "get by alias",
    );
    assert_eq!(by_alias.version, "1");
    assert_eq!(by_alias.aliases, vec!["champion".to_string()]);
    let model = ok(store.get_registered_model("aliased"), "get model");
    assert_eq!(model.aliases.len(), 1);
    assert_eq!(
        (
            model.aliases[0].alias.as_str(),
            model.aliases[0].version.as_str()
        ),
        ("champion", "1")
    );

    ok(store.set_alias("aliased", "champion", "2", &nobody), "move");
    assert_eq!(
        ok(
            store.get_model_version_by_alias("aliased", "champion"),
            "get"
        )
        .version,
        "2"
    );
    assert!(ok(store.get_model_version("aliased", "1"), "v1")
        .aliases
        .is_empty());
    ok(
        store.set_alias("aliased", "challenger", "1", &nobody),
        "second alias",
    );
    let model = ok(store.get_registered_model("aliased"), "get model");
    let got: BTreeSet<(String, String)> = model
        .aliases
        .into_iter()
        .map(|a| (a.alias, a.version))
        .collect();
    assert_eq!(got, pairs(&[("challenger", "1"), ("champion", "2")]));

    ok(store.delete_alias("aliased", "champion", &nobody), "delete");
    // MLflow 3.17 answers an unknown alias of an existing model with INVALID_PARAMETER_VALUE.
    invalid(
        store.get_model_version_by_alias("aliased", "champion"),
        "deleted alias",
    );
    invalid(
        store.get_model_version_by_alias("aliased", "never-set"),
        "unknown alias",
    );
    not_found(
        store.set_alias("aliased", "champion", "9", &nobody),
        "alias to an unknown version",
    );
    not_found(
        store.set_alias("missing", "champion", "1", &nobody),
        "alias on an unknown model",
    );
    not_found(
        store.get_model_version_by_alias("missing", "champion"),
        "alias of an unknown model",
    );
    invalid(
        store.set_alias("aliased", "latest", "1", &nobody),
        "reserved alias",
    );
    ok(store.delete_model_version("aliased", "1"), "delete v1");
    invalid(
        store.get_model_version_by_alias("aliased", "challenger"),
        "aliases of a deleted version go with it",
    );
}

/// The alias history is append-only, oldest first, recording version, previous version, user
/// and reason; a rollback is a move back; deletion is an event with no version.
/// `set_alias_if` moves an alias only while it points at the expected version (or at nothing),
/// and records only the moves it makes.
pub fn set_alias_if_moves_only_from_the_expected_holder(store: &dyn TrackingStore) {
    create_model(store, "cas");
    for _ in 0..3 {
        new_version(store, "cas", None, None);
    }
    let who = actor("ci", "gate passed");
    assert!(ok(
        store.set_alias_if("cas", "champion", "1", None, &who),
        "from nothing"
    ));
    assert!(
        !ok(
            store.set_alias_if("cas", "champion", "3", None, &who),
            "stale: nothing"
        ),
        "the alias points at v1 now"
    );
    assert!(
        !ok(
            store.set_alias_if("cas", "champion", "3", Some("2"), &who),
            "stale: v2"
        ),
        "the alias points at v1, not v2"
    );
    assert!(ok(
        store.set_alias_if("cas", "champion", "2", Some("1"), &who),
        "from v1"
    ));
    let now = ok(store.get_model_version_by_alias("cas", "champion"), "get");
    assert_eq!(now.version, "2");
    let events = ok(store.alias_history("cas", "champion"), "history");
    let versions: Vec<Option<String>> = events.iter().map(|e| e.version.clone()).collect();
    assert_eq!(versions, vec![Some("1".to_string()), Some("2".to_string())]);
    assert!(
        store
            .set_alias_if("cas", "champion", "9", Some("2"), &who)
            .is_err(),
        "an unknown version is still an error"
    );
}

/// A model deleted and created again under the same name starts with no alias history: its
/// versions restart at 1, and the old holders must not become the new model's past (a
/// rollback would move the alias to a version that never held it).
pub fn deleting_a_model_takes_its_alias_history(store: &dyn TrackingStore) {
    let who = actor("ci", "ship");
    create_model(store, "reborn");
    new_version(store, "reborn", None, None);
    new_version(store, "reborn", None, None);
    ok(store.set_alias("reborn", "champion", "1", &who), "v1");
    ok(store.set_alias("reborn", "champion", "2", &who), "v2");
    ok(store.delete_registered_model("reborn"), "delete");
    create_model(store, "reborn");
    new_version(store, "reborn", None, None);
    assert!(
        ok(store.alias_history("reborn", "champion"), "history").is_empty(),
        "the deleted model's history came back"
    );
    ok(store.set_alias("reborn", "champion", "1", &who), "new v1");
    let events = ok(store.alias_history("reborn", "champion"), "history");
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].previous_version, None);
}

pub fn alias_history(store: &dyn TrackingStore) {
    create_model(store, "history");
    new_version(store, "history", None, None);
    new_version(store, "history", None, None);
    ok(
        store.set_alias("history", "champion", "1", &actor("alice", "first")),
        "set",
    );
    ok(
        store.set_alias("history", "champion", "2", &actor("bob", "promote")),
        "move",
    );
    ok(
        store.set_alias("history", "champion", "1", &actor("carol", "rollback")),
        "rollback",
    );
    // Setting it where it already points moves nothing, so it records nothing.
    ok(
        store.set_alias("history", "champion", "1", &actor("carol", "again")),
        "no-op",
    );
    assert!(ok(
        store.set_alias_if(
            "history",
            "champion",
            "1",
            Some("1"),
            &actor("carol", "again")
        ),
        "no-op if"
    ));
    assert_eq!(
        ok(
            store.get_model_version_by_alias("history", "champion"),
            "get"
        )
        .version,
        "1"
    );
    ok(
        store.delete_alias("history", "champion", &actor("dave", "retire")),
        "delete",
    );
    let events = ok(store.alias_history("history", "champion"), "alias_history");
    type Event<'a> = (
        Option<&'a str>,
        Option<&'a str>,
        Option<&'a str>,
        Option<&'a str>,
    );
    let got: Vec<Event<'_>> = events
        .iter()
        .map(|e| {
            assert_eq!(e.name, "history");
            assert_eq!(e.alias, "champion");
            (
                e.version.as_deref(),
                e.previous_version.as_deref(),
                e.user_id.as_deref(),
                e.reason.as_deref(),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            (Some("1"), None, Some("alice"), Some("first")),
            (Some("2"), Some("1"), Some("bob"), Some("promote")),
            (Some("1"), Some("2"), Some("carol"), Some("rollback")),
            (None, Some("1"), Some("dave"), Some("retire")),
        ]
    );
    assert!(events.windows(2).all(|w| w[0].timestamp <= w[1].timestamp));
    assert!(events.iter().all(|e| e.timestamp > 0));
    assert!(ok(store.alias_history("history", "other"), "other alias").is_empty());

    // An alias that goes with its deleted version ends its history with a removal.
    ok(
        store.set_alias("history", "stable", "2", &actor("erin", "ship")),
        "set stable",
    );
    ok(store.delete_model_version("history", "2"), "delete v2");
    let stable = ok(store.alias_history("history", "stable"), "stable history");
    let last = stable.last().unwrap_or_else(|| panic!("stable history"));
    assert_eq!(stable.len(), 2);
    assert_eq!(last.version, None, "removed with its version: {stable:?}");
    assert_eq!(last.previous_version.as_deref(), Some("2"));
    not_found(
        store.alias_history("missing", "champion"),
        "history of an unknown model",
    );
}

// ------------------------------------------------------------------ gc

/// collectable lists deleted runs (not live ones) with their artifact locations, and respects
/// the older-than cutoff on the deletion time.
pub fn gc_collectable_runs_and_cutoff(store: &dyn TrackingStore) {
    let e = create_exp(store, "gc-runs");
    let live = create_run(store, &e, "live", T0);
    let dead = create_run(store, &e, "dead", T0);
    let empty = ok(store.collectable(None), "collectable on a live store");
    assert!(
        empty.runs.is_empty() && empty.experiments.is_empty() && empty.logged_models.is_empty()
    );
    sleep_ms(5);
    let before = kiln_types::now_ms();
    sleep_ms(5);
    ok(store.delete_run(&run_id(&dead)), "delete");
    sleep_ms(5);
    let plan = ok(store.collectable(None), "collectable");
    assert_eq!(plan.runs.len(), 1);
    assert_eq!(plan.runs[0].run_id, run_id(&dead));
    assert_eq!(plan.runs[0].experiment_id, e);
    assert_eq!(plan.runs[0].artifact_uri, dead.info.artifact_uri);
    assert!(plan.runs.iter().all(|r| r.run_id != run_id(&live)));
    assert!(plan.experiments.is_empty(), "the experiment is live");
    let older = ok(store.collectable(Some(before)), "collectable with cutoff");
    assert!(older.runs.is_empty(), "deleted after the cutoff: kept");
    let newer = ok(
        store.collectable(Some(kiln_types::now_ms() + 60_000)),
        "collectable with a later cutoff",
    );
    assert_eq!(newer.runs.len(), 1);
    ok(store.restore_run(&run_id(&dead)), "restore");
    assert!(ok(store.collectable(None), "after restore").runs.is_empty());
}

/// Deleted experiments are collectable only when all their runs are; logged models of collected
/// runs are, unless a model version references them.
pub fn gc_experiments_and_logged_models(store: &dyn TrackingStore) {
    // An experiment deleted with its runs: all collectable, with its logged models.
    let gone = create_exp(store, "gc-gone");
    let g1 = run_id(&create_run(store, &gone, "g1", T0));
    let g2 = run_id(&create_run(store, &gone, "g2", T0));
    let mg = new_logged_model(store, &gone, "mg", Some(&g1))
        .info
        .model_id;
    // A live experiment with one deleted run that has two logged models, one registered.
    let keep = create_exp(store, "gc-keep");
    let k1 = run_id(&create_run(store, &keep, "k1", T0));
    let k2 = run_id(&create_run(store, &keep, "k2", T0));
    let mk1 = new_logged_model(store, &keep, "mk1", Some(&k1))
        .info
        .model_id;
    let mk2 = new_logged_model(store, &keep, "mk2", Some(&k1))
        .info
        .model_id;
    create_model(store, "registered");
    new_version(store, "registered", Some(&k1), Some(&mk2));
    // A deleted experiment whose logged model is registered: not collectable.
    let referenced = create_exp(store, "gc-referenced");
    let f1 = run_id(&create_run(store, &referenced, "f1", T0));
    let mf = new_logged_model(store, &referenced, "mf", Some(&f1))
        .info
        .model_id;
    new_version(store, "registered", Some(&f1), Some(&mf));
    // A deleted experiment with a run restored afterwards: not collectable.
    let mixed = create_exp(store, "gc-mixed");
    let x1 = run_id(&create_run(store, &mixed, "x1", T0));
    let x2 = run_id(&create_run(store, &mixed, "x2", T0));

    ok(store.delete_experiment(&gone), "delete gone");
    ok(store.delete_run(&k1), "delete k1");
    ok(store.delete_experiment(&referenced), "delete referenced");
    ok(store.delete_experiment(&mixed), "delete mixed");
    ok(store.restore_run(&x2), "restore x2");

    let plan = ok(store.collectable(None), "collectable");
    let runs = set(plan.runs.iter().map(|r| r.run_id.clone()));
    assert_eq!(
        runs,
        set([g1.clone(), g2.clone(), k1.clone(), f1.clone(), x1.clone()])
    );
    assert!(!runs.contains(&k2) && !runs.contains(&x2));
    let exps = set(plan.experiments.iter().map(|e| e.experiment_id.clone()));
    assert_eq!(
        exps,
        set([gone.clone()]),
        "only fully collectable experiments"
    );
    let gone_exp = &plan.experiments[0];
    assert_eq!(
        gone_exp.artifact_location,
        ok(store.get_experiment(&gone), "get").artifact_location
    );
    let models = set(plan.logged_models.iter().map(|m| m.model_id.clone()));
    assert!(
        models.contains(&mg),
        "logged model of a collected experiment"
    );
    assert!(models.contains(&mk1), "logged model of a collected run");
    assert!(!models.contains(&mk2), "a registered logged model is kept");
    assert!(!models.contains(&mf), "a registered logged model is kept");
    let lm = plan
        .logged_models
        .iter()
        .find(|m| m.model_id == mk1)
        .unwrap_or_else(|| panic!("mk1 in plan"));
    assert_eq!(lm.experiment_id, keep);
    assert_eq!(
        lm.artifact_uri,
        ok(store.get_logged_model(&mk1), "get mk1")
            .info
            .artifact_uri
    );

    // The cutoff applies to experiments too.
    let late = create_exp(store, "gc-late");
    create_run(store, &late, "l1", T0);
    sleep_ms(5);
    let cutoff = kiln_types::now_ms();
    sleep_ms(5);
    ok(store.delete_experiment(&late), "delete late");
    let before_cutoff = ok(store.collectable(Some(cutoff)), "with cutoff");
    assert!(
        before_cutoff
            .experiments
            .iter()
            .all(|e| e.experiment_id != late),
        "deleted after the cutoff"
    );
    assert!(before_cutoff
        .experiments
        .iter()
        .any(|e| e.experiment_id == gone));
    let all = ok(store.collectable(None), "all");
    assert!(all.experiments.iter().any(|e| e.experiment_id == late));
}

/// A deleted run that a model version loads from (`runs:/<id>/model`, as `kiln train
/// --register` writes, or a path through its artifacts) is kept, with its experiment; a deleted
/// logged model waits for the cutoff; the plan lists the locations still in use.
pub fn gc_keeps_what_model_versions_load(store: &dyn TrackingStore) {
    let e = create_exp(store, "gc-versions");
    let by_uri = run_id(&create_run(store, &e, "by-uri", T0));
    let by_path = create_run(store, &e, "by-path", T0);
    let plain = run_id(&create_run(store, &e, "plain", T0));
    let gone = create_exp(store, "gc-versions-gone");
    let inner = run_id(&create_run(store, &gone, "inner", T0));
    create_model(store, "served");
    for (source, run) in [
        (format!("runs:/{by_uri}/model"), Some(by_uri.clone())),
        (format!("{}/model", by_path.info.artifact_uri), None),
        (format!("runs:/{inner}/model"), Some(inner.clone())),
    ] {
        ok(
            store.create_model_version(&NewModelVersion {
                name: "served".into(),
                source,
                run_id: run,
                ..NewModelVersion::default()
            }),
            "create_model_version",
        );
    }
    let deleted_model = new_logged_model(store, &e, "dropped", None).info.model_id;
    for r in [&by_uri, &run_id(&by_path), &plain] {
        ok(store.delete_run(r), "delete run");
    }
    ok(store.delete_experiment(&gone), "delete experiment");
    ok(
        store.delete_logged_model(&deleted_model),
        "delete logged model",
    );
    sleep_ms(5);

    let plan = ok(store.collectable(None), "collectable");
    let runs = set(plan.runs.iter().map(|r| r.run_id.clone()));
    assert_eq!(runs, set([plain.clone()]), "{plan:?}");
    let kept: Vec<(&str, &str, &str)> = plan
        .kept
        .iter()
        .map(|k| (k.kind, k.id.as_str(), k.reason.as_str()))
        .collect();
    let by_path_id = run_id(&by_path);
    for (id, version) in [(&by_uri, 1), (&by_path_id, 2), (&inner, 3)] {
        let reason = format!("registered model served version {version} uses it");
        assert!(
            kept.contains(&("run", id.as_str(), reason.as_str())),
            "{id}: {kept:?}"
        );
    }
    assert!(
        plan.experiments.iter().all(|x| x.experiment_id != gone),
        "an experiment with a kept run stays"
    );
    assert!(plan
        .logged_models
        .iter()
        .any(|m| m.model_id == deleted_model));
    let location = ok(store.get_experiment(&e), "get").artifact_location;
    assert!(plan.live_locations.contains(&location), "{plan:?}");
    assert!(plan
        .live_locations
        .contains(&format!("runs:/{by_uri}/model")));

    // A logged model deleted just now is not older than a cutoff in the past.
    let cutoff = ok(
        store.collectable(Some(kiln_types::now_ms() - 60_000)),
        "cutoff",
    );
    assert!(cutoff
        .logged_models
        .iter()
        .all(|m| m.model_id != deleted_model));
}

/// purge removes what the plan names (runs with their data, experiments, logged models) and
/// leaves live runs, registered logged models, and runs restored since planning, untouched.
pub fn gc_purge(store: &dyn TrackingStore) {
    let gone = create_exp(store, "purge-gone");
    let g1 = run_id(&create_run(store, &gone, "g1", T0));
    log_param(store, &g1, "p", "1");
    log_metric(store, &g1, "m", 1.0, T0, 0);
    let mg = new_logged_model(store, &gone, "mg", Some(&g1))
        .info
        .model_id;

    let e = create_exp(store, "purge-live");
    let live = run_id(&create_run(store, &e, "live", T0));
    log_param(store, &live, "p", "1");
    log_metric(store, &live, "m", 1.0, T0, 0);
    log_metric(store, &live, "m", 2.0, T0, 1);
    let dead = run_id(&create_run(store, &e, "dead", T0));
    log_metric(store, &dead, "m", 1.0, T0, 0);
    let md = new_logged_model(store, &e, "md", Some(&dead)).info.model_id;
    let mref = new_logged_model(store, &e, "mref", Some(&dead))
        .info
        .model_id;
    create_model(store, "kept");
    new_version(store, "kept", Some(&dead), Some(&mref));
    let back = run_id(&create_run(store, &e, "back", T0));
    log_param(store, &back, "p", "1");
    set_tag(store, &back, "t", "1");
    log_metric(store, &back, "m", 3.0, T0, 0);
    let mback = new_logged_model(store, &e, "mback", Some(&back))
        .info
        .model_id;
    ok(
        store.log_inputs(
            &back,
            &[DatasetInput {
                tags: vec![Tag::new("mlflow.data.context", "training")],
                dataset: Dataset {
                    name: "ds".into(),
                    digest: "d1".into(),
                    source_type: "local".into(),
                    source: "/ds".into(),
                    schema: None,
                    profile: None,
                },
            }],
        ),
        "inputs",
    );
    ok(
        store.log_outputs(
            &back,
            &[ModelOutput {
                model_id: mback.clone(),
                step: 0,
            }],
        ),
        "outputs",
    );

    let live_before = get_run(store, &live);
    ok(store.delete_experiment(&gone), "delete gone");
    ok(store.delete_run(&dead), "delete dead");
    ok(store.delete_run(&back), "delete back");
    let plan = ok(store.collectable(None), "collectable");
    assert!(plan.runs.iter().any(|r| r.run_id == back));
    assert!(plan.logged_models.iter().any(|m| m.model_id == mback));
    let back_before = get_run(store, &back);
    // Restored between planning and purging: the purge must leave it alone.
    ok(store.restore_run(&back), "restore back");
    ok(store.purge(&plan), "purge");

    not_found(store.get_run(&g1), "purged run of a purged experiment");
    not_found(store.get_run(&dead), "purged run");
    not_found(store.get_experiment(&gone), "purged experiment");
    not_found(
        store.get_experiment_by_name("purge-gone"),
        "purged experiment by name",
    );
    not_found(store.get_logged_model(&mg), "purged logged model");
    not_found(store.get_logged_model(&md), "purged logged model");
    not_found(
        store.get_metric_history(&dead, "m", &page(10)),
        "history of a purged run",
    );
    ok(
        store.get_logged_model(&mref),
        "registered logged model kept",
    );
    ok(store.get_model_version("kept", "1"), "model version kept");

    let live_after = get_run(store, &live);
    assert_eq!(live_after.info, live_before.info);
    assert_eq!(live_after.data, live_before.data);
    assert_eq!(history(store, &live, "m").len(), 2);

    let back_after = get_run(store, &back);
    assert_eq!(back_after.info.lifecycle_stage, LifecycleStage::Active);
    assert_eq!(
        back_after.data, back_before.data,
        "a restored run keeps its data"
    );
    assert_eq!(back_after.inputs, back_before.inputs);
    assert_eq!(back_after.outputs, back_before.outputs);
    assert_eq!(history(store, &back, "m").len(), 1);
    ok(
        store.get_logged_model(&mback),
        "logged model of a restored run kept",
    );

    let after = ok(store.collectable(None), "collectable after purge");
    assert!(after.runs.is_empty(), "nothing left to collect: {after:?}");
    assert!(after.experiments.is_empty());
    assert!(after.logged_models.is_empty());
    create_exp(store, "purge-gone");
    ok(store.get_experiment("0"), "default experiment kept");
}

#[cfg(test)]
mod tests {
    #[test]
    fn case_names_are_unique() {
        let names: std::collections::BTreeSet<&str> = super::ALL.iter().map(|(n, _)| *n).collect();
        assert_eq!(names.len(), super::ALL.len());
        assert!(super::ALL.len() >= 40);
    }
}
