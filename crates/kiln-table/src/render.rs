//! Renderers for a validation [`Report`]: a text table for people, JSON for scripts, JUnit XML
//! for CI test reports.

use std::fmt::Write as _;

use crate::validate::Report;

/// Group digits: `1234567` → `1,234,567`.
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// Left-aligned columns separated by two spaces, with a dashed rule under the header.
fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let render = |cells: &[String]| -> String {
        let line: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        line.join("  ").trim_end().to_owned()
    };
    let mut out = String::new();
    let head: Vec<String> = headers.iter().map(|h| (*h).to_owned()).collect();
    out.push_str(&render(&head));
    out.push('\n');
    let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
    out.push_str(&render(&rule));
    out.push('\n');
    for row in rows {
        out.push_str(&render(row));
        out.push('\n');
    }
    out
}

/// The report for a terminal: a summary line, a table of violations, then warnings.
#[must_use]
pub fn render_text(report: &Report) -> String {
    let mut out = String::new();
    let total = report.checks.len();
    let rows = thousands(report.rows);
    if report.passed {
        let _ = writeln!(
            out,
            "✓ {} passed for `{}` ({rows} rows)",
            plural(total, "check", "checks"),
            report.source
        );
    } else {
        let _ = writeln!(
            out,
            "✗ {} of {} failed for `{}` ({rows} rows)\n",
            report.failed(),
            plural(total, "check", "checks"),
            report.source
        );
        let rows: Vec<Vec<String>> = report
            .violations
            .iter()
            .map(|v| {
                vec![
                    v.check.to_string(),
                    v.column.clone().unwrap_or_else(|| "-".into()),
                    v.count.to_string(),
                    v.message.clone(),
                    v.examples
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(", "),
                ]
            })
            .collect();
        out.push_str(&table(
            &["CHECK", "COLUMN", "COUNT", "PROBLEM", "EXAMPLES"],
            &rows,
        ));
    }
    if !report.warnings.is_empty() {
        out.push('\n');
        for w in &report.warnings {
            let _ = writeln!(out, "warning: {}", w.message);
        }
    }
    out
}

/// The report as pretty JSON: `source`, `rows`, `passed`, `checks`, `violations`, `warnings`.
#[must_use]
pub fn render_json(report: &Report) -> String {
    serde_json::to_string_pretty(report)
        .unwrap_or_else(|err| format!("{{\"error\": {:?}}}", err.to_string()))
}

/// Escape text for XML content and attribute values. Characters XML 1.0 cannot hold at all
/// (most control characters) become U+FFFD.
#[must_use]
pub fn xml_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\n' => out.push_str("&#10;"),
            '\r' => out.push_str("&#13;"),
            '\t' => out.push_str("&#9;"),
            c if (c as u32) < 0x20 || matches!(c, '\u{FFFE}' | '\u{FFFF}') => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

/// The report as JUnit XML: one `<testsuite>` named after the data, one `<testcase>` per check
/// per column (`age: range`; table-level checks are `[table] row_count`), a `<failure>` with the
/// message and examples for each violation, and warnings in `<system-err>`.
#[must_use]
pub fn render_junit(report: &Report) -> String {
    let tests = report.checks.len();
    let failures = report.failed();
    let suite = xml_escape(&report.source);
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        out,
        "<testsuites name=\"kiln data validate\" tests=\"{tests}\" failures=\"{failures}\" errors=\"0\">"
    );
    let _ = writeln!(
        out,
        "  <testsuite name=\"{suite}\" tests=\"{tests}\" failures=\"{failures}\" errors=\"0\" skipped=\"0\">"
    );
    let _ = writeln!(
        out,
        "    <properties><property name=\"rows\" value=\"{}\"/></properties>",
        report.rows
    );
    for outcome in &report.checks {
        let name = match &outcome.column {
            Some(c) => format!("{c}: {}", outcome.check),
            None => format!("[table] {}", outcome.check),
        };
        let name = xml_escape(&name);
        match report.violation(outcome) {
            None => {
                let _ = writeln!(out, "    <testcase classname=\"{suite}\" name=\"{name}\"/>");
            }
            Some(v) => {
                let mut body = format!("{}\ncount: {}", v.message, v.count);
                if !v.examples.is_empty() {
                    body.push_str("\nexamples:");
                    for e in &v.examples {
                        body.push_str("\n  ");
                        body.push_str(&e.to_string());
                    }
                }
                let _ = writeln!(
                    out,
                    "    <testcase classname=\"{suite}\" name=\"{name}\">\n      \
                     <failure type=\"{}\" message=\"{}\">{}</failure>\n    </testcase>",
                    v.check,
                    xml_escape(&v.message),
                    xml_escape(&body).replace("&#10;", "\n"),
                );
            }
        }
    }
    if !report.warnings.is_empty() {
        let text: Vec<String> = report
            .warnings
            .iter()
            .map(|w| format!("warning: {}", w.message))
            .collect();
        let _ = writeln!(
            out,
            "    <system-err>{}</system-err>",
            xml_escape(&text.join("\n")).replace("&#10;", "\n")
        );
    }
    out.push_str("  </testsuite>\n</testsuites>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_xml() {
        assert_eq!(
            xml_escape("a<b & \"c\" 'd'>\u{1}"),
            "a&lt;b &amp; &quot;c&quot; &apos;d&apos;&gt;\u{FFFD}"
        );
    }

    #[test]
    fn groups_digits() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(1_234_567), "1,234,567");
    }
}
