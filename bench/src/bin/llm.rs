//! Model-call throughput of the `llm` operator: N requests over K conversation keys through
//! a local-mode topology whose model is an in-process OpenAI-compatible server answering
//! every call after a fixed latency. Reports calls/s, the peak of calls in flight (seen by the
//! server), the latency the operator measured (p50/p99) and whether every key's answers kept
//! their order, into the `llm` section of docs/benchmarks.md.
//!
//!   cargo run --release -p kafclaw-bench --bin llm -- --calls 5000 --keys 1000 --latency-ms 200

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Parser;
use kafclaw_engine::compiler::compile_file;
use kafclaw_engine::runtime::{LocalOptions, run_local};

#[derive(Parser)]
struct Args {
    /// Requests (one model call each).
    #[arg(long, default_value_t = 5_000)]
    calls: usize,
    /// Conversation keys (calls of one key run one after another).
    #[arg(long, default_value_t = 1_000)]
    keys: usize,
    /// The server's answer latency.
    #[arg(long, default_value_t = 200)]
    latency_ms: u64,
    /// The model's max_concurrency.
    #[arg(long, default_value_t = 1_000)]
    concurrency: usize,
    /// Markdown file whose `llm` section is replaced with the results.
    #[arg(long, default_value = "docs/benchmarks.md")]
    report: PathBuf,
}

#[derive(Default)]
struct Server {
    in_flight: AtomicUsize,
    peak: AtomicUsize,
    calls: AtomicUsize,
}

fn serve(latency: Duration) -> Result<(String, Arc<Server>)> {
    use axum::routing::post;
    let s = Arc::new(Server::default());
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    let state = s.clone();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        rt.block_on(async move {
            let app = axum::Router::new().route(
                "/v1/chat/completions",
                post(move || {
                    let s = state.clone();
                    async move {
                        let now = s.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                        s.peak.fetch_max(now, Ordering::SeqCst);
                        s.calls.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(latency).await;
                        s.in_flight.fetch_sub(1, Ordering::SeqCst);
                        axum::Json(serde_json::json!({
                            "model": "bench-1",
                            "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
                            "usage": {"prompt_tokens": 12, "completion_tokens": 1, "total_tokens": 13}
                        }))
                    }
                }),
            );
            let l = tokio::net::TcpListener::from_std(listener).expect("listener");
            axum::serve(l, app).await.expect("server");
        });
    });
    Ok((format!("http://{addr}/v1"), s))
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn main() -> Result<()> {
    let args = Args::parse();
    let (url, server) = serve(Duration::from_millis(args.latency_ms))?;
    let dir = tempfile::tempdir()?;
    let topo = dir.path().join("bench.toml");
    std::fs::write(
        &topo,
        format!(
            r#"[topology]
name = "llm-bench"

[models.bench]
base_url = "{url}"
model = "bench-1"
max_concurrency = {}
timeout = "30s"

[sources.requests]
type = "file"
path = "in.jsonl"

[operators.answer]
type = "llm"
inputs = ["requests"]
model = "bench"

[sinks.answers]
type = "file"
inputs = ["answer"]
path = "out.jsonl"
"#,
            args.concurrency
        ),
    )?;
    let mut input = String::new();
    for i in 0..args.calls {
        input.push_str(&format!(
            r#"{{"type":"request","correlation_id":"conv-{}","sender_id":"bench","timestamp":"2026-11-24T10:00:00Z","id":"q-{i}","payload":{{"task_id":"q-{i}","description":"question {i}","seq":{i}}}}}"#,
            i % args.keys
        ));
        input.push('\n');
    }
    std::fs::write(dir.path().join("in.jsonl"), input)?;
    let compiled = compile_file(&topo).map_err(|e| anyhow::anyhow!("{e}"))?;
    let started = Instant::now();
    let summary = run_local(&compiled, &LocalOptions::default()).context("run")?;
    let elapsed = started.elapsed();
    let out = std::fs::read_to_string(dir.path().join("out.jsonl"))?;
    let mut latencies = Vec::new();
    let mut last: HashMap<String, u64> = HashMap::new();
    let mut ordered = true;
    for line in out.lines() {
        let v: serde_json::Value = serde_json::from_str(line)?;
        latencies.push(v["payload"]["usage"]["latency_ms"].as_u64().unwrap_or(0));
        let key = v["correlation_id"].as_str().unwrap_or_default().to_owned();
        let seq = v["payload"]["seq"].as_u64().unwrap_or(0);
        if last.insert(key, seq).is_some_and(|prev| prev >= seq) {
            ordered = false;
        }
    }
    if latencies.len() != args.calls || summary.dead_letters > 0 {
        bail!("{} answers of {} ({} dead letters)", latencies.len(), args.calls, summary.dead_letters);
    }
    latencies.sort_unstable();
    let calls_per_s = args.calls as f64 / elapsed.as_secs_f64();
    let peak = server.peak.load(Ordering::SeqCst);
    let ideal = (args.calls as f64 / args.keys.min(args.concurrency) as f64).ceil() * args.latency_ms as f64 / 1000.0;
    let profile = if cfg!(debug_assertions) { "" } else { "--release " };
    let body = format!(
        "`cargo run {}-p kafclaw-bench --bin llm -- --calls {} --keys {} --latency-ms {} --concurrency {}` \
         ({} build; local mode, in-process OpenAI-compatible server, {} ms per answer):\n\n\
         | calls | keys | wall time | calls/s | peak in flight | operator latency p50 / p99 | per-key order |\n\
         |---:|---:|---:|---:|---:|---:|---|\n\
         | {} | {} | {:.2} s (ideal {:.2} s) | {:.0} | {} | {} / {} ms | {} |\n",
        profile,
        args.calls,
        args.keys,
        args.latency_ms,
        args.concurrency,
        if cfg!(debug_assertions) { "debug" } else { "release" },
        args.latency_ms,
        args.calls,
        args.keys,
        elapsed.as_secs_f64(),
        ideal,
        calls_per_s,
        peak,
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        if ordered { "kept" } else { "BROKEN" }
    );
    println!("{body}");
    kafclaw_bench::write_report_section(&args.report, "llm", "Model calls (llm operator)", &body)?;
    if !ordered {
        bail!("per-key order broken");
    }
    Ok(())
}
