//! `kiln predict`: batch scoring with a kiln or ONNX model.

use std::process::ExitCode;

use kiln_train::artifact::Predictions;
use kiln_train::model::{Model, Scored};

use super::data::read_options;
use super::train::tracker;
use crate::cli::PredictArgs;
use crate::printer::Printer;

/// A CSV field, quoted when it needs to be.
fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

fn number(v: f64) -> String {
    if v.is_finite() {
        v.to_string()
    } else {
        String::new()
    }
}

/// `prediction` plus `proba_<class>` columns, one line per row.
fn render_csv(model: &Model, scored: &Scored) -> String {
    let mut out = String::new();
    match &scored.predictions {
        Predictions::Proba(p) => {
            let classes = model.classes();
            let header: Vec<String> = std::iter::once("prediction".to_string())
                .chain(classes.iter().map(|c| csv_field(&format!("proba_{c}"))))
                .collect();
            out.push_str(&header.join(","));
            out.push('\n');
            let labels = scored.labels(classes).unwrap_or_default();
            for (row, label) in p.iter().zip(&labels) {
                out.push_str(&csv_field(label));
                for v in row {
                    out.push(',');
                    out.push_str(&number(*v));
                }
                out.push('\n');
            }
        }
        Predictions::Values(v) => {
            out.push_str("prediction\n");
            for x in v {
                out.push_str(&number(*x));
                out.push('\n');
            }
        }
    }
    out
}

pub(super) fn run(args: PredictArgs, printer: &Printer) -> anyhow::Result<ExitCode> {
    let PredictArgs {
        model,
        data,
        output,
        json,
        store,
        read,
    } = args;
    let loaded = if model.starts_with("models:/") || model.starts_with("runs:/") {
        // The runtime must outlive the artifact download.
        let (tracker, _runtime) = tracker(&store)?;
        tracker.load_any_model(&model)?.0
    } else {
        Model::load(&model)?
    };
    let table = kiln_table::read_table(&data, &read_options(read)?)?;
    let scored = loaded.score(&table)?;
    for (column, n) in &scored.unseen {
        printer.status(&format!(
            "warning: column `{column}` has {n} value(s) not seen in training; treated as missing"
        ));
    }
    if let Some(path) = &output {
        fs_err::write(path, render_csv(&loaded, &scored))?;
    }
    if json {
        let mut body = serde_json::Map::new();
        body.insert("model".into(), model.clone().into());
        body.insert("format".into(), loaded.format().into());
        body.insert("task".into(), serde_json::to_value(loaded.task())?);
        body.insert("rows".into(), scored.len().into());
        match &scored.predictions {
            Predictions::Proba(p) => {
                body.insert(
                    "predictions".into(),
                    serde_json::to_value(scored.labels(loaded.classes()))?,
                );
                body.insert("probabilities".into(), serde_json::to_value(p)?);
                body.insert("classes".into(), serde_json::to_value(loaded.classes())?);
            }
            Predictions::Values(v) => {
                body.insert("predictions".into(), serde_json::to_value(v)?);
            }
        }
        if let Some(path) = &output {
            body.insert("output".into(), path.clone().into());
        }
        printer.json(&serde_json::Value::Object(body))?;
    } else if let Some(path) = &output {
        printer.line(&format!(
            "Wrote {} prediction(s) to {path} ({} model {})",
            scored.len(),
            loaded.format(),
            loaded.description()
        ));
    } else {
        printer.line(render_csv(&loaded, &scored).trim_end());
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::csv_field;

    #[test]
    fn csv_fields_are_quoted_when_needed() {
        assert_eq!(csv_field("yes"), "yes");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
    }
}
