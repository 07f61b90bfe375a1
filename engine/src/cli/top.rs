//! `kafclaw top`: live rates of running instances, read from their `/metrics` (`run --http`):
//! per topology the records consumed, produced and dead-lettered per second, commits per
//! second, the consumer lag and the model calls in flight; per operator the records in and
//! out per second; per partition the lag. Rates are the counters' increase between two
//! scrapes divided by the time between them; several instances of a topology add up.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use crate::exit;
use crate::metrics::view::{Samples, View, parse_into, view};

/// Arguments of `kafclaw top`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The instances' HTTP endpoints (`run --http`), e.g. 127.0.0.1:9464.
    #[arg(value_name = "ADDR", required = true)]
    pub instances: Vec<String>,
    /// Time between two scrapes (the window the rates are measured over).
    #[arg(long, value_name = "DURATION", default_value = "2s", value_parser = humantime::parse_duration)]
    pub interval: Duration,
    /// Print one measurement and stop.
    #[arg(long)]
    pub once: bool,
    /// Print each measurement as one JSON line (the shape of [`View`]).
    #[arg(long)]
    pub json: bool,
    /// Environment variable holding the endpoints' bearer token (`run --http-token-env`);
    /// sent when set.
    #[arg(long, value_name = "VAR", default_value = "KAFCLAW_HTTP_TOKEN")]
    pub http_token_env: String,
}

/// Scrapes every instance once.
fn scrape(args: &Args, token: Option<&str>) -> Result<Samples, String> {
    let mut all = Samples::new();
    for addr in &args.instances {
        let (status, text) = super::state::http_get(addr, &["metrics"], None, token)?;
        if status == reqwest::StatusCode::UNAUTHORIZED {
            return Err(format!(
                "{addr}/metrics: {status}: the endpoint needs its bearer token: set {} (--http-token-env)",
                args.http_token_env
            ));
        }
        if !status.is_success() {
            return Err(format!("{addr}/metrics: {status}"));
        }
        parse_into(&mut all, &text).map_err(|e| format!("{addr}/metrics: {e}"))?;
    }
    Ok(all)
}

/// The view as a table.
fn render(v: &View) -> String {
    let mut s = format!("kafclaw top — rates over {:.1} s\n", v.interval_s);
    for t in &v.topologies {
        s += &format!(
            "\n{}  consumed {:.1}/s  produced {:.1}/s  dead letters {:.1}/s  commits {:.1}/s  lag {}  model calls in flight {}\n",
            t.topology,
            t.consumed_per_s,
            t.produced_per_s,
            t.dead_letters_per_s,
            t.commits_per_s,
            t.lag,
            t.model_calls_in_flight
        );
        s += &format!("  {:<32} {:>12} {:>12}\n", "operator", "in/s", "out/s");
        for o in &t.operators {
            s += &format!("  {:<32} {:>12.1} {:>12.1}\n", o.operator, o.in_per_s, o.out_per_s);
        }
        for p in t.partitions.iter().filter(|p| p.lag > 0.0) {
            s += &format!("  lag {}[{}] {}\n", p.topic, p.partition, p.lag);
        }
    }
    s
}

/// Scrapes, waits, scrapes again and prints, until interrupted (or once).
pub(super) fn execute(args: &Args) -> i32 {
    let token = std::env::var(&args.http_token_env).ok().filter(|t| !t.trim().is_empty());
    let mut before = match scrape(args, token.as_deref()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return exit::RUNTIME;
        }
    };
    let mut at = Instant::now();
    let terminal = std::io::stdout().is_terminal();
    loop {
        std::thread::sleep(args.interval);
        let after = match scrape(args, token.as_deref()) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("error: {e}");
                return exit::RUNTIME;
            }
        };
        let now = Instant::now();
        let v = view(&before, &after, now.duration_since(at).as_secs_f64());
        if args.json {
            println!("{}", serde_json::to_string(&v).unwrap_or_default());
        } else {
            if terminal && !args.once {
                print!("\x1b[2J\x1b[H");
            }
            print!("{}", render(&v));
        }
        if args.once {
            return exit::OK;
        }
        (before, at) = (after, now);
    }
}
