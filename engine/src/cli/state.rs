//! `kafclaw state`: query the state stores of a running instance over its HTTP endpoint
//! (`run --http`): list the tables (`state inspect`) or read one key (`state get`). When the
//! instance has a token (`run --http-token-env`), the same variable here sends it.

use std::time::Duration;

use clap::Subcommand;

use crate::exit;

/// Arguments of `kafclaw state`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// What to query.
    #[command(subcommand)]
    pub query: StateCommand,
}

/// `kafclaw state …`.
#[derive(Debug, Subcommand)]
pub enum StateCommand {
    /// Tables with key counts, sizes and sample keys.
    Inspect(InspectArgs),
    /// The committed value of one key.
    Get(GetArgs),
}

/// Arguments of `kafclaw state inspect`.
#[derive(Debug, clap::Args)]
pub struct InspectArgs {
    /// The instance's HTTP endpoint (`run --http`).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:9464")]
    pub http: String,
    /// Environment variable holding the endpoint's bearer token (`run --http-token-env`);
    /// sent when set.
    #[arg(long, value_name = "VAR", default_value = "KAFCLAW_HTTP_TOKEN")]
    pub http_token_env: String,
    /// Sample keys per table.
    #[arg(long, default_value_t = 5)]
    pub samples: usize,
    /// Print the JSON as served.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `kafclaw state get`.
#[derive(Debug, clap::Args)]
pub struct GetArgs {
    /// Table.
    pub table: String,
    /// Key.
    pub key: String,
    /// The instance's HTTP endpoint (`run --http`).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:9464")]
    pub http: String,
    /// Environment variable holding the endpoint's bearer token (`run --http-token-env`);
    /// sent when set.
    #[arg(long, value_name = "VAR", default_value = "KAFCLAW_HTTP_TOKEN")]
    pub http_token_env: String,
}

/// `GET` of `segments` (each percent-encoded as one path segment) on the endpoint at `addr`.
pub(super) fn http_get(
    addr: &str,
    segments: &[&str],
    query: Option<&str>,
    token: Option<&str>,
) -> Result<(reqwest::StatusCode, String), String> {
    let base = if addr.starts_with("http://") || addr.starts_with("https://") {
        addr.to_owned()
    } else {
        format!("http://{addr}")
    };
    let mut url = reqwest::Url::parse(&base).map_err(|e| format!("`{addr}`: {e}"))?;
    url.path_segments_mut().map_err(|()| format!("`{addr}` cannot take a path"))?.pop_if_empty().extend(segments);
    url.set_query(query);
    let client =
        reqwest::blocking::Client::builder().timeout(Duration::from_secs(30)).build().map_err(|e| e.to_string())?;
    let mut request = client.get(url.clone());
    if let Some(t) = token {
        request = request.bearer_auth(t);
    }
    let resp = request.send().map_err(|e| format!("{url}: {e}"))?;
    let status = resp.status();
    Ok((status, resp.text().map_err(|e| e.to_string())?))
}

/// Queries the endpoint and prints the answer: the JSON as served, or a table of the tables.
pub(super) fn execute(args: &Args) -> i32 {
    use crate::runtime::query::TableReport;
    let (addr, token_env, segments, query, json) = match &args.query {
        StateCommand::Inspect(InspectArgs { http, http_token_env, samples, json }) => {
            (http, http_token_env, vec!["state"], Some(format!("samples={samples}")), *json)
        }
        StateCommand::Get(GetArgs { table, key, http, http_token_env }) => {
            (http, http_token_env, vec!["state", table.as_str(), key.as_str()], None, true)
        }
    };
    let token = crate::health::token_from_env(token_env);
    let (status, body) = match http_get(addr, &segments, query.as_deref(), token.as_deref()) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return exit::RUNTIME;
        }
    };
    if status == reqwest::StatusCode::NOT_FOUND {
        eprint!("{body}");
        return exit::RUNTIME;
    }
    if status == reqwest::StatusCode::UNAUTHORIZED {
        let why = if token.is_some() { "was refused" } else { "is needed" };
        eprintln!("error: {status}: the endpoint's bearer token {why}: set {token_env} (--http-token-env)");
        return exit::RUNTIME;
    }
    if !status.is_success() {
        eprintln!("error: {status}: {}", body.trim_end());
        return exit::RUNTIME;
    }
    if json {
        println!("{}", body.trim_end());
        return exit::OK;
    }
    let tables: Vec<TableReport> = match serde_json::from_str(&body) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: unexpected answer from {addr}: {e}");
            return exit::RUNTIME;
        }
    };
    println!("{:<32} {:>10} {:>12} {:>10}  sample keys", "table", "keys", "bytes", "partitions");
    for t in tables {
        println!(
            "{:<32} {:>10} {:>12} {:>10}  {}",
            t.table,
            t.keys,
            t.bytes,
            t.partitions.len(),
            t.sample_keys.join(", ")
        );
    }
    exit::OK
}
