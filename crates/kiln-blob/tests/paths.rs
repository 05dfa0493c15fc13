//! Path confinement: every form that could leave a store's root is rejected by
//! [`BlobPath::parse`] and [`BlobPath::join`].

use kiln_blob::{BlobError, BlobPath};

fn reason(raw: &str) -> &'static str {
    match BlobPath::parse(raw) {
        Err(BlobError::InvalidPath { reason, .. }) => reason,
        Err(e) => panic!("{raw:?}: unexpected error {e:?}"),
        Ok(p) => panic!("{raw:?} was accepted as {p:?}"),
    }
}

#[test]
fn rejects_traversal_and_trick_forms() {
    let cases: &[(&str, &str)] = &[
        ("..", "`..`"),
        ("../etc/passwd", "`..`"),
        ("a/../b", "`..`"),
        ("a/..", "`..`"),
        ("a/../../..", "`..`"),
        ("./../a", "`..`"),
        ("./~root/.ssh", "`~`"),
        ("./a//b", "empty"),
        ("/etc/passwd", "absolute"),
        ("/", "absolute"),
        ("//server/share", "absolute"),
        ("a//b", "empty"),
        ("a///", "empty"),
        ("%2e%2e/x", "`%XX`"),
        ("%2E%2E%2Fetc", "`%XX`"),
        ("%252e%252e/x", "`%XX`"),
        ("a/%00", "`%XX`"),
        ("a/50%2fx", "`%XX`"),
        ("a#b", "`#`"),
        ("a/#", "`#`"),
        ("a?x=1", "`?`"),
        ("a\\b", "backslash"),
        ("..\\..\\windows", "backslash"),
        ("C:/x", "drive"),
        ("c:", "drive"),
        ("a/D:evil", "drive"),
        ("a\0b", "NUL"),
        ("a/b\0", "NUL"),
        ("a\nb", "control"),
        ("a\rb", "control"),
        ("a\tb", "control"),
        ("a\u{7f}b", "control"),
        ("a\u{85}b", "control"),
        ("~", "`~`"),
        ("~root/.ssh", "`~`"),
    ];
    for (raw, expected) in cases {
        let got = reason(raw);
        assert!(
            got.contains(expected),
            "{raw:?}: reason {got:?} should mention {expected:?}"
        );
    }
}

#[test]
fn rejects_overlong_paths_and_segments() {
    let segment = "s".repeat(255);
    assert!(BlobPath::parse(&segment).is_ok());
    assert!(reason(&"s".repeat(256)).contains("255"));
    let path = vec!["abc"; 256].join("/"); // 1023 bytes
    assert!(BlobPath::parse(&path).is_ok());
    assert!(reason(&format!("{path}/x")).contains("1024"));
}

#[test]
fn accepts_ordinary_paths() {
    for raw in [
        "",
        "a",
        "a/",
        "1/0123abcd/artifacts/model/MLmodel",
        "dots.in.names/..hidden/x..y/...",
        "spaces are fine/ünïcödé/a~b/ab:c",
        ".mlflow/.hidden",
    ] {
        let path = BlobPath::parse(raw).unwrap_or_else(|e| panic!("{raw:?}: {e}"));
        assert_eq!(path.as_str(), raw.strip_suffix('/').unwrap_or(raw));
    }
    // `.` segments are dropped, as MLflow's server normalises them; a `%` that is not `%XX`
    // is part of a name.
    for (raw, normal) in [
        (".", ""),
        ("./", ""),
        ("./a", "a"),
        ("a/./b/.", "a/b"),
        ("acc_95%.png", "acc_95%.png"),
        ("50%/100% done/%zz", "50%/100% done/%zz"),
    ] {
        let path = BlobPath::parse(raw).unwrap_or_else(|e| panic!("{raw:?}: {e}"));
        assert_eq!(path.as_str(), normal, "{raw:?}");
    }
    assert!(BlobPath::parse("").unwrap().is_root());
    assert_eq!(BlobPath::parse("").unwrap(), BlobPath::root());
}

#[test]
fn join_validates_the_child() {
    let base = BlobPath::parse("1/run/artifacts").unwrap();
    assert_eq!(
        base.join("model/MLmodel").unwrap().as_str(),
        "1/run/artifacts/model/MLmodel"
    );
    assert_eq!(base.join("").unwrap(), base);
    assert_eq!(BlobPath::root().join("x").unwrap().as_str(), "x");
    for bad in [
        "..",
        "../other-run",
        "a/../../..",
        "/abs",
        "%2e%2e",
        "a//b",
        "a\\b",
        "C:/x",
        "a\0",
    ] {
        assert!(
            matches!(base.join(bad), Err(BlobError::InvalidPath { .. })),
            "join({bad:?}) accepted"
        );
    }
    let long = BlobPath::parse(&vec!["a".repeat(200); 5].join("/")).unwrap();
    assert!(long.join(&"b".repeat(100)).is_err());
}

#[test]
fn error_messages_are_clear_and_safe() {
    let e = BlobPath::parse("a/../b").unwrap_err();
    assert_eq!(
        e.to_string(),
        "Invalid artifact path `a/../b`: `..` segments are not allowed"
    );
    // Control characters are escaped in the message, and huge inputs are cut.
    let e = BlobPath::parse("x\ny").unwrap_err().to_string();
    assert!(e.contains("x\\ny") && !e.contains('\n'), "{e}");
    let e = BlobPath::parse(&"z".repeat(5000)).unwrap_err().to_string();
    assert!(e.len() < 600, "{}", e.len());
}
