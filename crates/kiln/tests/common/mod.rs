#![allow(dead_code)]
//! Helpers shared by the `kiln` integration tests: running the built binary, reading its
//! output, generating churn-like tables and running `kiln serve` in the background.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The built `kiln` binary with `args`, run in `dir`, ignoring any tracking or registry
/// location set in the environment.
pub(crate) fn command(dir: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kiln"));
    cmd.args(args)
        .current_dir(dir)
        .env_remove("KILN_TRACKING_URI")
        .env_remove("KILN_BACKEND_STORE_URI")
        .env_remove("KILN_ARTIFACTS_DESTINATION");
    cmd
}

/// Run [`command`] to completion.
pub(crate) fn kiln(dir: &Path, args: &[&str]) -> Output {
    command(dir, args).output().expect("run kiln")
}

/// Stdout followed by stderr.
pub(crate) fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The exit code, or -1 when killed by a signal.
pub(crate) fn code(o: &Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

/// Stdout parsed as JSON.
pub(crate) fn parse_json(o: &Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("json ({e}):\n{}", text(o)))
}

/// A seeded 64-bit LCG yielding values in [0, 1).
pub(crate) fn lcg(seed: u64) -> impl FnMut() -> f64 {
    let mut state = seed;
    move || {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (state >> 33) as f64 / f64::from(1u32 << 31)
    }
}

/// Rows of a churn-like table (without the header): the label depends on tenure, support
/// calls and the contract.
pub(crate) fn churn_rows(rows: usize, seed: u64) -> Vec<String> {
    let contracts = ["monthly", "yearly", "two-year"];
    let mut next = lcg(seed);
    (0..rows)
        .map(|i| {
            let tenure = (next() * 72.0).floor();
            let calls = (next() * 6.0).floor();
            let monthly = 20.0 + next() * 80.0;
            let c = contracts[(next() * 3.0) as usize % 3];
            let score = -0.05 * tenure
                + 0.6 * calls
                + if c == "monthly" { 1.0 } else { -1.0 }
                + (next() - 0.5) * 2.0;
            format!(
                "C{i},{tenure},{calls},{monthly:.2},{c},{}",
                u8::from(score > 0.0)
            )
        })
        .collect()
}

/// Write `rows` from [`churn_rows`] to `dir/name`, under their header.
pub(crate) fn write_churn_rows(dir: &Path, name: &str, rows: &[String]) {
    std::fs::write(
        dir.join(name),
        format!(
            "customer_id,tenure,support_calls,monthly,contract,churned\n{}\n",
            rows.join("\n")
        ),
    )
    .expect("write csv");
}

/// Write a churn table of `rows` rows to `dir/name`, always from seed 12345.
pub(crate) fn write_churn(dir: &Path, name: &str, rows: usize) {
    write_churn_rows(dir, name, &churn_rows(rows, 12345));
}

/// A background `kiln serve`, killed when dropped (so a failing test does not leave it
/// running).
pub(crate) struct Server {
    pub(crate) child: Child,
    /// `http://host:port`, as announced on stderr.
    pub(crate) addr: String,
    /// Everything written to stderr so far.
    pub(crate) log: Arc<Mutex<String>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Spawn `kiln args` (a `serve` command) in `dir` with `KILN_LOG=info`, and wait up to 60 s
/// for its `listening on http://…` line.
pub(crate) fn start_server(dir: &Path, args: &[&str]) -> Server {
    start_command(command(dir, args))
}

/// [`start_server`] for a prepared command (e.g. kiln run under a wrapper).
pub(crate) fn start_command(mut cmd: Command) -> Server {
    let mut child = cmd
        .env("KILN_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn kiln serve");
    let stderr = child.stderr.take().expect("stderr");
    let log = Arc::new(Mutex::new(String::new()));
    let (tx, rx) = std::sync::mpsc::channel();
    let sink = Arc::clone(&log);
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(at) = line.find("listening on http://") {
                let rest = &line[at + "listening on ".len()..];
                let addr = rest.split_whitespace().next().unwrap_or_default();
                let _ = tx.send(addr.to_string());
            }
            let mut l = sink.lock().expect("log lock");
            l.push_str(&line);
            l.push('\n');
        }
    });
    let addr = rx.recv_timeout(Duration::from_secs(60));
    let mut server = Server {
        child,
        addr: String::new(),
        log,
    };
    match addr {
        Ok(a) => server.addr = a,
        Err(_) => panic!(
            "kiln serve did not start:\n{}",
            server.log.lock().expect("log lock")
        ),
    }
    server
}

/// The value of tag `key` of a run in MLflow's JSON shape (`kiln runs show/list --json`).
pub(crate) fn tag<'a>(run: &'a serde_json::Value, key: &str) -> Option<&'a str> {
    run["data"]["tags"]
        .as_array()?
        .iter()
        .find(|t| t["key"] == key)
        .and_then(|t| t["value"].as_str())
}
