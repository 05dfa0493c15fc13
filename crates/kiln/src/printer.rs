//! All terminal output goes through [`Printer`]: results to stdout, diagnostics to stderr.

use std::io::Write;

#[derive(Debug, Default)]
pub(crate) struct Printer;

impl Printer {
    /// A line of command output.
    pub(crate) fn line(&self, text: &str) {
        let mut out = std::io::stdout().lock();
        // A closed pipe (`kiln runs list | head`) is not an error worth reporting.
        let _ = writeln!(out, "{text}");
    }

    /// Pretty JSON output.
    pub(crate) fn json<T: serde::Serialize>(&self, value: &T) -> anyhow::Result<()> {
        self.line(&serde_json::to_string_pretty(value)?);
        Ok(())
    }

    /// A status message for people (stderr).
    pub(crate) fn status(&self, text: &str) {
        let _ = writeln!(std::io::stderr().lock(), "{text}");
    }

    /// An error with its causes.
    pub(crate) fn error(&self, err: &anyhow::Error) {
        let mut e = std::io::stderr().lock();
        let _ = writeln!(e, "error: {err}");
        for cause in err.chain().skip(1) {
            let _ = writeln!(e, "  caused by: {cause}");
        }
    }

    /// A failure as JSON on stdout, for a command run with `--json`: a script reading stdout
    /// gets `{"error": {"message", "causes", "exit_code"}}` instead of nothing.
    pub(crate) fn json_error(&self, err: &anyhow::Error, exit_code: u8) {
        let causes: Vec<String> = err.chain().skip(1).map(ToString::to_string).collect();
        let body = serde_json::json!({
            "error": { "message": err.to_string(), "causes": causes, "exit_code": exit_code }
        });
        let _ = writeln!(std::io::stdout().lock(), "{body:#}");
    }

    /// A left-aligned text table.
    pub(crate) fn table(&self, headers: &[&str], rows: &[Vec<String>]) {
        let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
        for row in rows {
            for (i, cell) in row.iter().enumerate() {
                if let Some(w) = widths.get_mut(i) {
                    *w = (*w).max(cell.chars().count());
                }
            }
        }
        let render = |cells: Vec<String>| -> String {
            cells
                .iter()
                .enumerate()
                .map(|(i, c)| format!("{c:<width$}", width = widths.get(i).copied().unwrap_or(0)))
                .collect::<Vec<_>>()
                .join("  ")
                .trim_end()
                .to_string()
        };
        self.line(&render(headers.iter().map(|h| (*h).to_string()).collect()));
        self.line(&render(widths.iter().map(|w| "-".repeat(*w)).collect()));
        for row in rows {
            self.line(&render(row.clone()));
        }
    }
}
