//! Identifier generation and validation.

/// A new run id: 32 lowercase hex digits.
pub fn new_run_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// A new logged-model id: `m-` and 32 hex digits.
pub fn new_model_id() -> String {
    format!("m-{}", uuid::Uuid::new_v4().simple())
}

/// Whether `id` looks like a run id (hex, 1..=64 chars); guards paths built from it.
pub fn is_valid_run_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Whether `id` looks like a logged-model id.
pub fn is_valid_model_id(id: &str) -> bool {
    id.strip_prefix("m-").is_some_and(is_valid_run_id)
}

/// Whether `id` is a decimal experiment id.
pub fn is_valid_experiment_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 19 && id.bytes().all(|b| b.is_ascii_digit())
}

const ADJECTIVES: &[&str] = &[
    "amber",
    "bold",
    "brisk",
    "calm",
    "clever",
    "crisp",
    "daring",
    "eager",
    "fierce",
    "gentle",
    "glowing",
    "honest",
    "keen",
    "lucid",
    "merry",
    "nimble",
    "omniscient",
    "patient",
    "quick",
    "radiant",
    "serene",
    "steady",
    "swift",
    "tidy",
    "vivid",
    "wise",
];
const NOUNS: &[&str] = &[
    "ant", "bass", "crane", "deer", "eel", "finch", "gnu", "hare", "ibis", "jay", "kiln", "lynx",
    "mole", "newt", "ox", "owl", "perch", "quail", "ray", "seal", "toad", "vole", "wren", "yak",
];

/// A readable run name such as `omniscient-ox-16`, derived from the run id.
pub fn run_name_for(run_id: &str) -> String {
    let bytes = run_id.as_bytes();
    let pick = |i: usize| bytes.get(i).copied().map_or(0, usize::from);
    let a = ADJECTIVES[(pick(0) * 31 + pick(1)) % ADJECTIVES.len()];
    let n = NOUNS[(pick(2) * 31 + pick(3)) % NOUNS.len()];
    let num = (pick(4) * 7 + pick(5)) % 1000;
    format!("{a}-{n}-{num}")
}
