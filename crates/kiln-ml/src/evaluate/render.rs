//! Renderers for evaluation results: Markdown ([`render_markdown`]), JUnit XML
//! ([`render_junit`]) and plain text ([`render_text`]).

use std::fmt::Write as _;

use super::gates::{all_passed, fmt_actual, GateResult};

/// A metric value for tables: four decimals, or scientific notation for very small or large
/// magnitudes.
pub(super) fn fmt_value(v: f64) -> String {
    let a = v.abs();
    if !v.is_finite() {
        format!("{v}")
    } else if a == 0.0 || (1e-4..1e9).contains(&a) {
        format!("{v:.4}")
    } else {
        format!("{v:.4e}")
    }
}

/// The shortest text that reads back as exactly `v`.
pub(super) fn fmt_precise(v: f64) -> String {
    format!("{v:?}")
}

fn gate_summary(gates: &[GateResult]) -> String {
    let failed = gates.iter().filter(|g| !g.passed).count();
    let n = gates.len();
    let plural = if n == 1 { "gate" } else { "gates" };
    if failed == 0 {
        format!("all {n} {plural} passed")
    } else {
        format!("{failed} of {n} {plural} failed")
    }
}

fn actual_text(g: &GateResult) -> String {
    g.actual.map_or_else(
        || "n/a".to_string(),
        |v| fmt_actual(g.gate.op, v, g.gate.threshold),
    )
}

// ---------------------------------------------------------------------------------------
// Markdown

/// Escapes text for a GitHub-flavoured Markdown table cell or heading: inline Markdown
/// punctuation (emphasis, code, links, HTML, entities) and `|` are backslash-escaped;
/// line breaks and other control characters become spaces.
fn md_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' | '`' | '*' | '_' | '[' | ']' | '<' | '|' | '~' | '&' => {
                out.push('\\');
                out.push(c);
            }
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// Text as an inline code span (safe inside a table cell); plain escaped text when it
/// cannot be one.
fn md_code(s: &str) -> String {
    if s.is_empty() || s.contains('`') || s.chars().any(char::is_control) {
        md_escape(s)
    } else {
        format!("`{}`", s.replace('|', "\\|"))
    }
}

/// A Markdown summary for a CI job summary or pull-request comment: a heading, the gate
/// verdict, a metrics table, a gates table (✅ / ❌) and, when given, the confusion matrix
/// (`(class names, matrix[true][predicted])`). Sections with nothing to show are left out.
pub fn render_markdown(
    title: &str,
    metrics: &[(String, f64)],
    gates: &[GateResult],
    confusion: Option<(&[String], &[Vec<u64>])>,
) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "## {}\n", md_escape(title));
    if !gates.is_empty() {
        let mark = if all_passed(gates) { "✅" } else { "❌" };
        let summary = gate_summary(gates);
        let mut chars = summary.chars();
        let capitalised: String = chars
            .next()
            .map(|c| c.to_uppercase().chain(chars).collect())
            .unwrap_or_default();
        let _ = writeln!(out, "{mark} **{capitalised}**\n");
    }

    if metrics.is_empty() {
        out.push_str("No metrics were computed.\n\n");
    } else {
        out.push_str("| Metric | Value |\n| --- | ---: |\n");
        for (name, v) in metrics {
            let _ = writeln!(out, "| {} | {} |", md_code(name), fmt_value(*v));
        }
        out.push('\n');
    }

    if !gates.is_empty() {
        out.push_str("### Gates\n\n");
        out.push_str("| | Gate | Actual | Details |\n| :---: | --- | ---: | --- |\n");
        for g in gates {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} |",
                if g.passed { "✅" } else { "❌" },
                md_code(&g.gate.to_string()),
                actual_text(g),
                md_escape(&g.message)
            );
        }
        out.push('\n');
    }

    if let Some((names, matrix)) = confusion {
        let n_cols = matrix
            .iter()
            .map(Vec::len)
            .max()
            .unwrap_or(0)
            .max(names.len());
        let name = |i: usize| names.get(i).cloned().unwrap_or_else(|| i.to_string());
        out.push_str(
            "### Confusion matrix\n\nRows are true classes, columns predicted classes.\n\n",
        );
        out.push_str("| true \\ predicted |");
        for j in 0..n_cols {
            let _ = write!(out, " {} |", md_escape(&name(j)));
        }
        out.push_str("\n| --- |");
        for _ in 0..n_cols {
            out.push_str(" ---: |");
        }
        out.push('\n');
        for (i, row) in matrix.iter().enumerate() {
            let _ = write!(out, "| **{}** |", md_escape(&name(i)));
            for j in 0..n_cols {
                match row.get(j) {
                    Some(c) => {
                        let _ = write!(out, " {c} |");
                    }
                    None => out.push_str("  |"),
                }
            }
            out.push('\n');
        }
        out.push('\n');
    }
    out
}

// ---------------------------------------------------------------------------------------
// JUnit XML

/// Escapes text for XML content or a double- or single-quoted attribute; characters XML 1.0
/// does not allow become U+FFFD, and line breaks and tabs in attributes become character
/// references so they survive attribute normalisation.
fn xml_escape(s: &str, attribute: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\n' if attribute => out.push_str("&#10;"),
            '\t' if attribute => out.push_str("&#9;"),
            '\r' => out.push_str("&#13;"),
            '\n' | '\t' => out.push(c),
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

/// JUnit XML for CI systems: one `<testsuite>` named `suite` with one
/// `<testcase classname="kiln.evaluate" name="roc_auc >= 0.85">` per gate; a failed gate
/// carries a `<failure>` whose message gives the actual value and the requirement (or why
/// the metric is missing). Everything is XML-escaped.
pub fn render_junit(suite: &str, gates: &[GateResult]) -> String {
    let failures = gates.iter().filter(|g| !g.passed).count();
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        out,
        "<testsuite name=\"{}\" tests=\"{}\" failures=\"{failures}\" errors=\"0\" skipped=\"0\">",
        xml_escape(suite, true),
        gates.len()
    );
    for g in gates {
        let name = xml_escape(&g.gate.to_string(), true);
        if g.passed {
            let _ = writeln!(
                out,
                "  <testcase classname=\"kiln.evaluate\" name=\"{name}\"/>"
            );
            continue;
        }
        let details = format!(
            "metric: {}\nactual: {}\nrequired: {} {}\n{}",
            g.gate.metric,
            actual_text(g),
            g.gate.op,
            g.gate.threshold,
            g.message
        );
        let _ = writeln!(
            out,
            "  <testcase classname=\"kiln.evaluate\" name=\"{name}\">\n    \
             <failure message=\"{}\" type=\"kiln.gate\">{}</failure>\n  </testcase>",
            xml_escape(&g.message, true),
            xml_escape(&details, false)
        );
    }
    out.push_str("</testsuite>\n");
    out
}

// ---------------------------------------------------------------------------------------
// Plain text

/// Control characters (escape sequences, line breaks) in names would garble a terminal
/// table; they become spaces.
fn plain(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

fn width(s: &str) -> usize {
    s.chars().count()
}

fn pad_right(s: &str, w: usize) -> String {
    format!("{s}{}", " ".repeat(w.saturating_sub(width(s))))
}

fn pad_left(s: &str, w: usize) -> String {
    format!("{}{s}", " ".repeat(w.saturating_sub(width(s))))
}

/// A plain-text report for terminals: the title, aligned metric values, one `PASS`/`FAIL`
/// line per gate with a verdict, and the confusion matrix when given.
pub fn render_text(
    title: &str,
    metrics: &[(String, f64)],
    gates: &[GateResult],
    confusion: Option<(&[String], &[Vec<u64>])>,
) -> String {
    let mut out = String::new();
    let title = plain(title);
    let _ = writeln!(out, "{title}\n{}\n", "=".repeat(width(&title).max(1)));

    out.push_str("Metrics\n");
    if metrics.is_empty() {
        out.push_str("  (none)\n");
    } else {
        let names: Vec<String> = metrics.iter().map(|(n, _)| plain(n)).collect();
        let values: Vec<String> = metrics.iter().map(|(_, v)| fmt_value(*v)).collect();
        let nw = names.iter().map(|n| width(n)).max().unwrap_or(0);
        let vw = values.iter().map(|v| width(v)).max().unwrap_or(0);
        for (n, v) in names.iter().zip(&values) {
            let _ = writeln!(out, "  {}  {}", pad_right(n, nw), pad_left(v, vw));
        }
    }

    if !gates.is_empty() {
        let _ = writeln!(out, "\nGates: {}", gate_summary(gates));
        let rows: Vec<(String, String)> = gates
            .iter()
            .map(|g| (plain(&g.gate.to_string()), plain(&g.message)))
            .collect();
        let gw = rows.iter().map(|(g, _)| width(g)).max().unwrap_or(0);
        for (g, (gate, message)) in gates.iter().zip(&rows) {
            let verdict = if g.passed { "PASS" } else { "FAIL" };
            let _ = writeln!(out, "  {verdict}  {}  {message}", pad_right(gate, gw));
        }
    }

    if let Some((names, matrix)) = confusion {
        let n_cols = matrix
            .iter()
            .map(Vec::len)
            .max()
            .unwrap_or(0)
            .max(names.len());
        let name = |i: usize| names.get(i).map_or_else(|| i.to_string(), |n| plain(n));
        let row_names: Vec<String> = (0..matrix.len()).map(name).collect();
        let rw = row_names.iter().map(|n| width(n)).max().unwrap_or(0);
        let col_w: Vec<usize> = (0..n_cols)
            .map(|j| {
                matrix
                    .iter()
                    .filter_map(|row| row.get(j))
                    .map(|c| width(&c.to_string()))
                    .max()
                    .unwrap_or(0)
                    .max(width(&name(j)))
            })
            .collect();
        out.push_str("\nConfusion matrix (rows: true class, columns: predicted class)\n");
        let _ = write!(out, "  {}", " ".repeat(rw));
        for (j, w) in col_w.iter().enumerate() {
            let _ = write!(out, "  {}", pad_left(&name(j), *w));
        }
        out.push('\n');
        for (row, rname) in matrix.iter().zip(&row_names) {
            let _ = write!(out, "  {}", pad_right(rname, rw));
            for (j, w) in col_w.iter().enumerate() {
                let cell = row.get(j).map(u64::to_string).unwrap_or_default();
                let _ = write!(out, "  {}", pad_left(&cell, *w));
            }
            out.push('\n');
        }
    }
    out
}
