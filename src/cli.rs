//! `sagemaker-executor runs ...`: the operator's command line, talking to a running service over
//! its API. Tables by default, the API's JSON with `--json`.
//!
//! Exit codes: 0 success; 1 the service could not be reached or answered unexpectedly; 2 bad
//! usage; 3 the service refused the request (a 4xx, its error is printed); 4 `watch` saw the run
//! end Failed or Cancelled.

use clap::{Args, Subcommand};
use serde_json::{Value, json};
use std::fmt::Write as _;
use std::time::Duration;

#[derive(Args, Debug, Clone)]
pub struct ClientArgs {
    /// The service's base URL.
    #[arg(
        long,
        env = "EXECUTOR_URL",
        default_value = "http://127.0.0.1:5002",
        global = true
    )]
    pub url: String,
    /// Bearer token for the service (when it requires one).
    #[arg(long, env = "EXECUTOR_TOKEN", hide_env_values = true, global = true)]
    pub token: Option<String>,
    /// Print the API's JSON instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Subcommand, Debug, Clone)]
pub enum RunsCommand {
    /// List runs, newest first.
    List {
        #[arg(long)]
        kind: Option<String>,
        #[arg(long)]
        state: Option<String>,
        /// Only unfinished runs that have not advanced for this many seconds.
        #[arg(long)]
        stuck_secs: Option<u64>,
        /// Only runs with a recorded error.
        #[arg(long)]
        has_error: bool,
        /// Only runs whose status checks are failing (their AWS job may still run).
        #[arg(long)]
        degraded: bool,
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// The `next_cursor` printed by the previous page.
        #[arg(long)]
        cursor: Option<String>,
    },
    /// One run with its whole history.
    Show { id: String },
    /// Retry a Failed (or stuck) run.
    Retry {
        id: String,
        #[arg(long)]
        reason: Option<String>,
    },
    /// Cancel a run.
    Cancel {
        id: String,
        #[arg(long)]
        reason: Option<String>,
    },
    /// Follow a run's transitions live until it ends.
    Watch {
        id: String,
        #[arg(long, default_value_t = 1000)]
        interval_ms: u64,
    },
}

/// A failed command and its exit code.
#[derive(Debug)]
pub struct CliError {
    pub code: u8,
    pub message: String,
}

fn unreachable_err(e: impl std::fmt::Display) -> CliError {
    CliError {
        code: 1,
        message: e.to_string(),
    }
}

struct Client {
    http: reqwest::Client,
    args: ClientArgs,
}

impl Client {
    /// An operator action on a run (`retry`, `cancel`) with an optional reason.
    async fn action(
        &self,
        id: &str,
        action: &str,
        reason: Option<String>,
    ) -> Result<Value, CliError> {
        let path = format!("/api/v1/runs/{}/{action}", encode(id));
        self.call(
            reqwest::Method::POST,
            &path,
            Some(json!({ "reason": reason })),
        )
        .await
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, CliError> {
        let url = format!("{}{path}", self.args.url.trim_end_matches('/'));
        let mut req = self.http.request(method, &url);
        if let Some(t) = &self.args.token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| unreachable_err(format!("cannot reach {url}: {e}")))?;
        let status = resp.status();
        let value: Value = resp.json().await.unwrap_or(Value::Null);
        if status.is_success() {
            Ok(value)
        } else if status.is_client_error() {
            Err(CliError {
                code: 3,
                message: format!(
                    "{status}: {}",
                    value["error"].as_str().unwrap_or("(no message)")
                ),
            })
        } else {
            Err(unreachable_err(format!(
                "{status}: {}",
                value["error"].as_str().unwrap_or("(no message)")
            )))
        }
    }
}

fn s(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn short(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_string()
    } else {
        let cut: String = text.chars().take(max.saturating_sub(1)).collect();
        format!("{cut}…")
    }
}

/// Renders rows as aligned columns under a header.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let line = |out: &mut String, cells: Vec<&str>| {
        let n = cells.len();
        for (i, c) in cells.into_iter().enumerate() {
            if i + 1 == n {
                out.push_str(c);
            } else {
                let pad = widths[i] - c.chars().count();
                let _ = write!(out, "{c}{}  ", " ".repeat(pad));
            }
        }
        out.push('\n');
    };
    line(&mut out, header.to_vec());
    for row in rows {
        line(&mut out, row.iter().map(String::as_str).collect());
    }
    out
}

fn run_rows(runs: &Value) -> Vec<Vec<String>> {
    runs.as_array()
        .map(|a| {
            a.iter()
                .map(|r| {
                    vec![
                        s(&r["id"]),
                        s(&r["kind"]),
                        if r["degraded"].is_object() {
                            format!(
                                "{} (degraded since {})",
                                s(&r["state"]),
                                s(&r["degraded"]["since"])
                            )
                        } else {
                            s(&r["state"])
                        },
                        s(&r["attempt"]),
                        s(&r["updated_at"]),
                        s(&r["name"]),
                        short(&s(&r["last_error"]), 60),
                    ]
                })
                .collect()
        })
        .unwrap_or_default()
}

fn history_rows(history: &[Value]) -> Vec<Vec<String>> {
    history
        .iter()
        .map(|e| {
            let what = match (e["detail"].as_str(), e["error"].as_str()) {
                (Some(d), Some(err)) => format!("{d} [{}: {err}]", s(&e["error_class"])),
                (None, Some(err)) => format!("[{}: {err}]", s(&e["error_class"])),
                (Some(d), None) => d.to_string(),
                (None, None) => String::new(),
            };
            vec![
                s(&e["seq"]),
                s(&e["at"]),
                format!("{} -> {}", s(&e["from_state"]), s(&e["to_state"])),
                s(&e["attempt"]),
                short(&what, 120),
            ]
        })
        .collect()
}

const HISTORY_HEADER: [&str; 5] = ["SEQ", "AT", "TRANSITION", "ATTEMPT", "DETAIL"];

fn show_text(run: &Value) -> String {
    let mut out = String::new();
    for key in [
        "id",
        "kind",
        "state",
        "name",
        "attempt",
        "cancel_requested",
        "last_error",
        "created_at",
        "updated_at",
        "next_due_at",
        "lease_owner",
        "lease_until",
        "version",
    ] {
        let _ = writeln!(out, "{key:<17}{}", s(&run[key]));
    }
    let _ = writeln!(out, "{:<17}{}", "context", run["context"]);
    out.push('\n');
    out.push_str(&table(
        &HISTORY_HEADER,
        &history_rows(run["history"].as_array().map(Vec::as_slice).unwrap_or(&[])),
    ));
    out
}

fn encode(v: &str) -> String {
    v.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Runs one `runs` command, printing to stdout.
pub async fn run(args: ClientArgs, command: RunsCommand) -> Result<(), CliError> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .map_err(unreachable_err)?;
    let json_out = args.json;
    let c = Client { http, args };
    let print_json =
        |v: &Value| println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
    match command {
        RunsCommand::List {
            kind,
            state,
            stuck_secs,
            has_error,
            degraded,
            limit,
            cursor,
        } => {
            let mut q = vec![format!("limit={limit}")];
            for (k, v) in [
                ("kind", kind),
                ("state", state),
                ("cursor", cursor),
                ("stuck_secs", stuck_secs.map(|n| n.to_string())),
            ] {
                if let Some(v) = v {
                    q.push(format!("{k}={}", encode(&v)));
                }
            }
            if has_error {
                q.push("has_error=true".into());
            }
            if degraded {
                q.push("degraded=true".into());
            }
            let page = c
                .call(
                    reqwest::Method::GET,
                    &format!("/api/v1/runs?{}", q.join("&")),
                    None,
                )
                .await?;
            if json_out {
                print_json(&page);
            } else {
                print!(
                    "{}",
                    table(
                        &[
                            "ID",
                            "KIND",
                            "STATE",
                            "ATTEMPT",
                            "UPDATED",
                            "NAME",
                            "LAST ERROR"
                        ],
                        &run_rows(&page["runs"])
                    )
                );
                if let Some(next) = page["next_cursor"].as_str() {
                    println!("more: --cursor {next}");
                }
            }
        }
        RunsCommand::Show { id } => {
            let run = c
                .call(
                    reqwest::Method::GET,
                    &format!("/api/v1/runs/{}", encode(&id)),
                    None,
                )
                .await?;
            if json_out {
                print_json(&run);
            } else {
                print!("{}", show_text(&run));
            }
        }
        RunsCommand::Retry { id, reason } => {
            let r = c.action(&id, "retry", reason).await?;
            if json_out {
                print_json(&r);
            } else {
                println!(
                    "run {} re-armed in {} (attempt {})",
                    s(&r["id"]),
                    s(&r["state"]),
                    s(&r["attempt"])
                );
            }
        }
        RunsCommand::Cancel { id, reason } => {
            let r = c.action(&id, "cancel", reason).await?;
            if json_out {
                print_json(&r);
            } else {
                println!(
                    "cancel requested for run {} (now {})",
                    s(&r["id"]),
                    s(&r["state"])
                );
            }
        }
        RunsCommand::Watch { id, interval_ms } => {
            let mut seen = 0;
            loop {
                let run = c
                    .call(
                        reqwest::Method::GET,
                        &format!("/api/v1/runs/{}", encode(&id)),
                        None,
                    )
                    .await?;
                let history = run["history"].as_array().cloned().unwrap_or_default();
                for e in history.iter().skip(seen) {
                    if json_out {
                        println!("{e}");
                    } else {
                        let row = &history_rows(std::slice::from_ref(e))[0];
                        println!("{}  {}  {}  {}", row[1], row[2], row[3], row[4]);
                    }
                }
                seen = history.len();
                match run["state"].as_str() {
                    Some("Done") => return Ok(()),
                    Some(end @ ("Failed" | "Cancelled")) => {
                        return Err(CliError {
                            code: 4,
                            message: format!("run ended {end}: {}", s(&run["last_error"])),
                        });
                    }
                    _ => tokio::time::sleep(Duration::from_millis(interval_ms.max(50))).await,
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_aligns_columns_by_the_widest_cell() {
        let t = table(
            &["A", "LONG"],
            &[
                vec!["xyz".into(), "1".into()],
                vec!["q".into(), "22".into()],
            ],
        );
        assert_eq!(t, "A    LONG\nxyz  1\nq    22\n");
    }

    #[test]
    fn query_values_are_percent_encoded() {
        assert_eq!(encode("a b&c=d"), "a%20b%26c%3Dd");
    }
}
