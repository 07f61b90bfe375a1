//! Model calls in flight through the `llm` operator: for each in-flight level N, N
//! conversation keys of `--rounds` calls each (the calls of one key run one after another, so
//! at most N are in flight) through a local-mode topology whose model (`max_concurrency = N`)
//! is a fake OpenAI-compatible server answering every call after a fixed latency. The ideal
//! rate is N / latency (all N keys always waiting on the server).
//!
//! Reports, per level: wall time, calls/s over the whole run and in the steady state (between
//! the 10th and the 90th percentile of the answers, by the server's clock: without the start,
//! when connections open, and the drain), the ratios to the ideal, the peak of calls in
//! flight (seen by the server), the latency the operator measured (p50/p99), whether every
//! key's answers kept their order, and the CPU each side took: the engine's stream thread and
//! its executor (model-call) threads, by thread name from `/proc/self/task/*/stat`, the fake
//! server, and what the rest of the machine used meanwhile. Rewrites the `llm` section of
//! docs/benchmarks.md.
//!
//! The server runs as a child process (this binary with `--serve`) on its own threads: at
//! 10 k in flight the two ends of 10 k HTTP/1.1 connections would need more file descriptors
//! than one process may open here (20,000), and a process of its own keeps its CPU apart.
//!
//!   cargo build --release -p kafclaw-bench && target/release/llm

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Parser;
use kafclaw_engine::compiler::compile_file;
use kafclaw_engine::runtime::{LocalOptions, run_local};

#[derive(Parser)]
struct Args {
    /// Calls in flight to measure at (one run each: that many keys, and the model's
    /// `max_concurrency`).
    #[arg(long, value_delimiter = ',', default_value = "1000,10000")]
    in_flight: Vec<usize>,
    /// Calls per key (the run makes in-flight x rounds calls).
    #[arg(long, default_value_t = 20)]
    rounds: usize,
    /// The server's answer latency.
    #[arg(long, default_value_t = 200)]
    latency_ms: u64,
    /// The fake server's runtime threads.
    #[arg(long, default_value_t = 1)]
    server_threads: usize,
    /// Markdown file whose `llm` section is replaced with the results (`-`: none).
    #[arg(long, default_value = "docs/benchmarks.md")]
    report: PathBuf,
    /// Run as the fake server (internal: the benchmark starts itself so).
    #[arg(long, hide = true)]
    serve: bool,
}

/// Answers are counted in buckets of this many ms since the server's first request.
const BUCKET_MS: u64 = 10;
/// Buckets kept (10 minutes).
const BUCKETS: usize = 60_000;
/// Linux reports CPU times in USER_HZ ticks, 100 per second on every architecture's ABI.
const TICKS_PER_S: f64 = 100.0;

struct Counters {
    in_flight: AtomicUsize,
    peak: AtomicUsize,
    calls: AtomicUsize,
    started: OnceLock<Instant>,
    answered: Vec<AtomicU32>,
}

/// The fake server: POST /v1/chat/completions answers after `latency`. Prints its base URL,
/// then a JSON line of counters for every `stats` line read on stdin; exits at stdin's end.
fn serve(latency: Duration, threads: usize) -> Result<()> {
    use axum::routing::post;
    let c = Arc::new(Counters {
        in_flight: AtomicUsize::new(0),
        peak: AtomicUsize::new(0),
        calls: AtomicUsize::new(0),
        started: OnceLock::new(),
        answered: (0..BUCKETS).map(|_| AtomicU32::new(0)).collect(),
    });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads.max(1))
        .thread_name("fake-llm-server")
        .enable_all()
        .build()?;
    let body: &'static [u8] = br#"{"model":"bench-1","choices":[{"index":0,"message":{"role":"assistant","content":"ok"},"finish_reason":"stop"}],"usage":{"prompt_tokens":12,"completion_tokens":1,"total_tokens":13}}"#;
    let state = c.clone();
    let listener = rt.block_on(async {
        let socket = tokio::net::TcpSocket::new_v4()?;
        socket.set_reuseaddr(true)?;
        socket.bind("127.0.0.1:0".parse().expect("an address"))?;
        // 10 k connections open at once: the default backlog (128) would drop SYNs.
        socket.listen(8192)
    })?;
    let url = format!("http://{}/v1", listener.local_addr()?);
    rt.spawn(async move {
        let app = axum::Router::new().route(
            "/v1/chat/completions",
            post(move || {
                let s = state.clone();
                async move {
                    let started = *s.started.get_or_init(Instant::now);
                    let now = s.in_flight.fetch_add(1, Ordering::Relaxed) + 1;
                    s.peak.fetch_max(now, Ordering::Relaxed);
                    s.calls.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(latency).await;
                    s.in_flight.fetch_sub(1, Ordering::Relaxed);
                    let bucket = (started.elapsed().as_millis() as u64 / BUCKET_MS) as usize;
                    s.answered[bucket.min(BUCKETS - 1)].fetch_add(1, Ordering::Relaxed);
                    ([(axum::http::header::CONTENT_TYPE, "application/json")], body)
                }
            }),
        );
        axum::serve(listener, app).await.expect("the fake server");
    });
    let mut out = std::io::stdout().lock();
    writeln!(out, "{url}")?;
    out.flush()?;
    for line in std::io::stdin().lock().lines() {
        if line?.trim() == "stats" {
            let answered: Vec<u32> = c.answered.iter().map(|a| a.load(Ordering::Relaxed)).collect();
            let last = answered.iter().rposition(|&n| n > 0).map_or(0, |i| i + 1);
            let stats = serde_json::json!({
                "peak": c.peak.load(Ordering::Relaxed),
                "calls": c.calls.load(Ordering::Relaxed),
                "answered": &answered[..last],
            });
            writeln!(out, "{stats}")?;
            out.flush()?;
        }
    }
    Ok(())
}

/// The fake server, running as a child process.
struct FakeServer {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    url: String,
}

impl FakeServer {
    fn start(latency_ms: u64, threads: usize) -> Result<Self> {
        let mut child = Command::new(std::env::current_exe()?)
            .args(["--serve", "--latency-ms", &latency_ms.to_string(), "--server-threads", &threads.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .context("starting the fake server")?;
        let stdin = child.stdin.take().context("the server's stdin")?;
        let mut stdout = BufReader::new(child.stdout.take().context("the server's stdout")?);
        let mut url = String::new();
        stdout.read_line(&mut url)?;
        if url.trim().is_empty() {
            bail!("the fake server did not start");
        }
        Ok(Self { child, stdin, stdout, url: url.trim().to_owned() })
    }

    /// CPU seconds the server process has used.
    fn cpu_s(&self) -> f64 {
        cpu_ticks(&format!("/proc/{}/stat", self.child.id())).map_or(0.0, |t| t as f64 / TICKS_PER_S)
    }

    fn stats(&mut self) -> Result<serde_json::Value> {
        writeln!(self.stdin, "stats")?;
        self.stdin.flush()?;
        let mut line = String::new();
        self.stdout.read_line(&mut line)?;
        Ok(serde_json::from_str(&line)?)
    }
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// (thread name, utime + stime in ticks) of a `/proc/.../stat` file.
fn stat_of(path: &str) -> Option<(String, u64)> {
    let text = std::fs::read_to_string(path).ok()?;
    let (open, close) = (text.find('(')?, text.rfind(')')?);
    let fields: Vec<&str> = text[close + 1..].split_whitespace().collect();
    // Fields 14 and 15 of the file (utime, stime); field 3 is the first after the name.
    let ticks = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some((text[open + 1..close].to_owned(), ticks))
}

fn cpu_ticks(path: &str) -> Option<u64> {
    stat_of(path).map(|(_, t)| t)
}

/// (busy, total) ticks of the whole machine, from `/proc/stat`.
fn machine_ticks() -> (u64, u64) {
    let text = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let v: Vec<u64> =
        text.lines().next().unwrap_or_default().split_whitespace().skip(1).filter_map(|f| f.parse().ok()).collect();
    let total: u64 = v.iter().take(8).sum();
    let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
    (total - idle, total)
}

/// Samples the CPU of this process's threads while a run lasts (a thread's ticks vanish from
/// `/proc` when it exits, so the last sample of each is kept).
struct ThreadCpu {
    stop: Arc<AtomicBool>,
    sampler: std::thread::JoinHandle<HashMap<u64, (String, u64)>>,
}

impl ThreadCpu {
    fn start() -> Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let sampler = std::thread::Builder::new().name("cpu-sampler".into()).spawn(move || {
            let mut seen: HashMap<u64, (String, u64)> = HashMap::new();
            loop {
                let last = flag.load(Ordering::Relaxed);
                for entry in std::fs::read_dir("/proc/self/task").into_iter().flatten().flatten() {
                    let Ok(tid) = entry.file_name().to_string_lossy().parse::<u64>() else { continue };
                    if let Some(s) = stat_of(&format!("/proc/self/task/{tid}/stat")) {
                        seen.insert(tid, s);
                    }
                }
                if last {
                    return seen;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        })?;
        Ok(Self { stop, sampler })
    }

    /// CPU seconds by role: (stream threads, executor threads, other engine threads), counted
    /// from `before` (the ticks each thread had at the start).
    fn finish(self, before: &HashMap<u64, (String, u64)>) -> (f64, f64, f64) {
        self.stop.store(true, Ordering::Relaxed);
        let seen = self.sampler.join().unwrap_or_default();
        let main = std::process::id() as u64;
        let (mut stream, mut executor, mut other) = (0, 0, 0);
        for (tid, (name, ticks)) in &seen {
            let used = ticks - before.get(tid).map_or(0, |(_, t)| *t);
            match name.as_str() {
                "cpu-sampler" => {}
                "kafclaw-async" => executor += used,
                // Local mode's sub-topology threads are unnamed (the process's name); the
                // main thread waits for them.
                n if n == "llm" && *tid != main => stream += used,
                _ => other += used,
            }
        }
        let s = |t: u64| t as f64 / TICKS_PER_S;
        (s(stream), s(executor), s(other))
    }
}

fn threads_now() -> HashMap<u64, (String, u64)> {
    let mut now = HashMap::new();
    for entry in std::fs::read_dir("/proc/self/task").into_iter().flatten().flatten() {
        let Ok(tid) = entry.file_name().to_string_lossy().parse::<u64>() else { continue };
        if let Some(s) = stat_of(&format!("/proc/self/task/{tid}/stat")) {
            now.insert(tid, s);
        }
    }
    now
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// Calls per second between the answers at the 10th and the 90th percentile of `answered`
/// (answers per bucket).
fn steady_rate(answered: &[u64]) -> f64 {
    let total: u64 = answered.iter().sum();
    let (lo, hi) = (total / 10, total * 9 / 10);
    let (mut seen, mut from, mut to) = (0, None, None);
    for (i, n) in answered.iter().enumerate() {
        seen += n;
        if from.is_none() && seen > lo {
            from = Some((i, seen));
        }
        if to.is_none() && seen >= hi {
            to = Some((i, seen));
        }
    }
    match (from, to) {
        (Some((a, ca)), Some((b, cb))) if b > a => (cb - ca) as f64 / ((b - a) as f64 * BUCKET_MS as f64 / 1000.0),
        _ => 0.0,
    }
}

/// One level's figures.
struct Run {
    in_flight: usize,
    calls: usize,
    wall_s: f64,
    steady: f64,
    peak: u64,
    p50: u64,
    p99: u64,
    ordered: bool,
    cpu_stream: f64,
    cpu_executor: f64,
    cpu_engine_other: f64,
    cpu_server: f64,
    cpu_others: f64,
}

fn run(args: &Args, n: usize) -> Result<Run> {
    let mut server = FakeServer::start(args.latency_ms, args.server_threads)?;
    let dir = tempfile::tempdir()?;
    let topo = dir.path().join("bench.toml");
    std::fs::write(
        &topo,
        format!(
            r#"[topology]
name = "llm-bench"

[models.bench]
base_url = "{}"
model = "bench-1"
max_concurrency = {n}
timeout = "60s"

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
            server.url
        ),
    )?;
    let calls = n * args.rounds;
    write_input(&dir.path().join("in.jsonl"), calls, n)?;
    let compiled = compile_file(&topo).map_err(|e| anyhow::anyhow!("{e}"))?;

    let before = threads_now();
    let (server0, (busy0, _)) = (server.cpu_s(), machine_ticks());
    let self0 = cpu_ticks("/proc/self/stat").unwrap_or(0);
    let sampler = ThreadCpu::start()?;
    let started = Instant::now();
    let summary = run_local(&compiled, &LocalOptions::default()).context("run")?;
    let wall_s = started.elapsed().as_secs_f64();
    let (cpu_stream, cpu_executor, _) = sampler.finish(&before);
    let engine = (cpu_ticks("/proc/self/stat").unwrap_or(0) - self0) as f64 / TICKS_PER_S;
    let cpu_server = server.cpu_s() - server0;
    let busy = (machine_ticks().0 - busy0) as f64 / TICKS_PER_S;
    let stats = server.stats()?;
    drop(server);

    let out = std::fs::read_to_string(dir.path().join("out.jsonl"))?;
    let mut latencies = Vec::with_capacity(calls);
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
    if latencies.len() != calls || summary.dead_letters > 0 {
        bail!("{} answers of {calls} ({} dead letters)", latencies.len(), summary.dead_letters);
    }
    latencies.sort_unstable();
    let answered: Vec<u64> =
        stats["answered"].as_array().map(|a| a.iter().filter_map(|v| v.as_u64()).collect()).unwrap_or_default();
    Ok(Run {
        in_flight: n,
        calls,
        wall_s,
        steady: steady_rate(&answered),
        peak: stats["peak"].as_u64().unwrap_or(0),
        p50: percentile(&latencies, 0.5),
        p99: percentile(&latencies, 0.99),
        ordered,
        cpu_stream,
        cpu_executor,
        // The engine's process total, less its stream and executor threads (the main thread,
        // the sampler, threads that ended between samples).
        cpu_engine_other: (engine - cpu_stream - cpu_executor).max(0.0),
        cpu_server,
        cpu_others: (busy - engine - cpu_server).max(0.0),
    })
}

/// `calls` requests over `keys` conversations, key `i % keys` for request `i` (so each key's
/// calls are spread over the file, `payload.seq` their order).
fn write_input(path: &Path, calls: usize, keys: usize) -> Result<()> {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path)?);
    for i in 0..calls {
        writeln!(
            f,
            r#"{{"type":"request","correlation_id":"conv-{}","sender_id":"bench","timestamp":"2026-11-24T10:00:00Z","id":"q-{i}","payload":{{"task_id":"q-{i}","description":"question {i}","seq":{i}}}}}"#,
            i % keys
        )?;
    }
    f.flush()?;
    Ok(())
}

fn report(args: &Args, runs: &[Run]) -> String {
    let latency_s = args.latency_ms as f64 / 1000.0;
    let build = if cfg!(debug_assertions) { "debug" } else { "release" };
    let levels: Vec<String> = args.in_flight.iter().map(usize::to_string).collect();
    let mut body = format!(
        "`cargo build --release -p kafclaw-bench && target/release/llm --in-flight {} --rounds {} --latency-ms {} \
         --server-threads {}` ({build} build; local mode; N keys of {} calls each, a key's calls one after \
         another, model `max_concurrency = N`; a fake OpenAI-compatible server answering after {} ms, in a \
         process of its own with {} runtime thread(s); ideal = N / {} s). Steady = the rate between the 10th \
         and the 90th percentile answer (server's clock), without the start and the drain.\n\n\
         | in flight N | calls | wall time (ideal) | calls/s | steady calls/s | ideal calls/s | ratio (whole / steady) \
         | peak in flight | operator latency p50 / p99 | per-key order |\n\
         |---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n",
        levels.join(","),
        args.rounds,
        args.latency_ms,
        args.server_threads,
        args.rounds,
        args.latency_ms,
        args.server_threads,
        latency_s,
    );
    for r in runs {
        let ideal = r.in_flight as f64 / latency_s;
        let rate = r.calls as f64 / r.wall_s;
        body.push_str(&format!(
            "| {} | {} | {:.2} s ({:.2} s) | {:.0} | {:.0} | {:.0} | **{:.2}** / **{:.2}** | {} | {} / {} ms | {} |\n",
            r.in_flight,
            r.calls,
            r.wall_s,
            args.rounds as f64 * latency_s,
            rate,
            r.steady,
            ideal,
            rate / ideal,
            r.steady / ideal,
            r.peak,
            r.p50,
            r.p99,
            if r.ordered { "kept" } else { "BROKEN" },
        ));
    }
    body.push_str(
        "\nCPU seconds during each run (per-thread from `/proc/self/task/*/stat`; the server from its \
         process; the rest of the machine from `/proc/stat`), and CPU µs per call:\n\n\
         | in flight N | stream thread | executor (HTTP client) | other engine threads | fake server | rest of the machine | engine µs/call | server µs/call |\n\
         |---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for r in runs {
        let engine = r.cpu_stream + r.cpu_executor + r.cpu_engine_other;
        body.push_str(&format!(
            "| {} | {:.2} s | {:.2} s | {:.2} s | {:.2} s | {:.2} s | {:.1} | {:.1} |\n",
            r.in_flight,
            r.cpu_stream,
            r.cpu_executor,
            r.cpu_engine_other,
            r.cpu_server,
            r.cpu_others,
            engine * 1e6 / r.calls as f64,
            r.cpu_server * 1e6 / r.calls as f64,
        ));
    }
    body
}

fn main() -> Result<()> {
    let args = Args::parse();
    if args.serve {
        return serve(Duration::from_millis(args.latency_ms), args.server_threads);
    }
    let mut runs = Vec::new();
    for &n in &args.in_flight {
        let r = run(&args, n).with_context(|| format!("{n} in flight"))?;
        eprintln!(
            "{n} in flight: {} calls in {:.2} s, {:.0} calls/s, steady {:.0}",
            r.calls,
            r.wall_s,
            r.calls as f64 / r.wall_s,
            r.steady
        );
        runs.push(r);
    }
    let body = report(&args, &runs);
    println!("{body}");
    if args.report != Path::new("-") {
        kafclaw_bench::write_report_section(&args.report, "llm", "Model calls (llm operator)", &body)?;
    }
    if runs.iter().any(|r| !r.ordered) {
        bail!("per-key order broken");
    }
    Ok(())
}
