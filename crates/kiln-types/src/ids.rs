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

/// Why `name` cannot name a registered model, if it cannot (MLflow's rule): blank, or holding
/// `/` or `:`, which a `models:/` URI could not carry.
pub fn model_name_problem(name: &str) -> Option<&'static str> {
    if name.trim().is_empty() {
        Some("a name cannot be empty")
    } else if name.contains(['/', ':']) {
        Some("names cannot contain '/' or ':'")
    } else {
        None
    }
}

/// Why `alias` cannot name a registry alias, if it cannot: 1-255 ASCII letters, digits, `_` or
/// `-`, and neither `latest` nor `v<N>` (reserved for versions).
pub fn alias_problem(alias: &str) -> Option<&'static str> {
    if alias.is_empty()
        || alias.len() > 255
        || !alias
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return Some("use 1-255 letters, digits, '_' or '-'");
    }
    let version_like = alias
        .strip_prefix('v')
        .is_some_and(|rest| rest.parse::<u64>().is_ok());
    if alias.eq_ignore_ascii_case("latest") || version_like {
        return Some("'latest' and 'v<N>' are reserved for versions");
    }
    None
}

/// What a `models:/…` URI names, parsed as MLflow's client parses it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelsUri<'a> {
    /// `models:/<name>/<version>`: one `/`, the name before it (which may hold `@`).
    Version { name: &'a str, version: &'a str },
    /// `models:/<name>@<alias>`: no `/`, split at the last `@` (a name may hold `@`).
    Alias { name: &'a str, alias: &'a str },
    /// `models:/m-<32 hex digits>`: a logged model.
    LoggedModel(&'a str),
}

impl<'a> ModelsUri<'a> {
    /// Parse the part after `models:/` (a trailing `/` is ignored); `None` when it is none of
    /// the forms, or a part is empty.
    pub fn parse(rest: &'a str) -> Option<Self> {
        let rest = rest.trim_end_matches('/');
        let mut parts = rest.split('/');
        let first = parts.next().filter(|p| !p.trim().is_empty())?;
        match (parts.next(), parts.next()) {
            (Some(version), None) if !version.trim().is_empty() => Some(Self::Version {
                name: first,
                version,
            }),
            (None, None) if is_valid_model_id(first) => Some(Self::LoggedModel(first)),
            (None, None) => {
                let (name, alias) = first.rsplit_once('@')?;
                (!name.is_empty() && !alias.trim().is_empty())
                    .then_some(Self::Alias { name, alias })
            }
            _ => None,
        }
    }
}

/// MLflow's default experiment: created with every store as "Default", never deletable, and
/// where runs go when no experiment is named (it may be renamed).
pub const DEFAULT_EXPERIMENT_ID: &str = "0";

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

#[cfg(test)]
mod models_uri_tests {
    use super::ModelsUri;

    #[test]
    fn parses_as_mlflow_does() {
        assert_eq!(
            ModelsUri::parse("churn@champion"),
            Some(ModelsUri::Alias {
                name: "churn",
                alias: "champion"
            })
        );
        assert_eq!(
            ModelsUri::parse("x@y@champion"),
            Some(ModelsUri::Alias {
                name: "x@y",
                alias: "champion"
            })
        );
        assert_eq!(
            ModelsUri::parse("x@y/3"),
            Some(ModelsUri::Version {
                name: "x@y",
                version: "3"
            })
        );
        assert_eq!(
            ModelsUri::parse("churn/2/"),
            Some(ModelsUri::Version {
                name: "churn",
                version: "2"
            })
        );
        let id = "m-0123456789abcdef0123456789abcdef";
        assert_eq!(ModelsUri::parse(id), Some(ModelsUri::LoggedModel(id)));
        for bad in [
            "",
            "churn",
            "churn@",
            "@champion",
            "churn/",
            "churn/1/extra",
            "/1",
        ] {
            assert_eq!(ModelsUri::parse(bad), None, "{bad:?}");
        }
    }
}
