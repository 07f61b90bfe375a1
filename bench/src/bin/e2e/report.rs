//! The harness's report: the broker table with the ratios and targets, the broker-free tables
//! (`report_free`), and the chart.

use std::fmt::Write;

use crate::Row;
use crate::contenders::Contender;
use crate::free::FreeRow;

pub struct Summary<'a> {
    pub messages: usize,
    pub bytes: u64,
    pub partitions: i32,
    pub latency_messages: usize,
    pub latency_rate: u32,
    pub rounds: usize,
    pub broker: &'a str,
    /// Not measured when no broker contender ran.
    pub idle_rss_mb: Option<f64>,
    pub binary_mb: Option<f64>,
    pub mock_lag: usize,
}

fn msgs_per_sec(s: &Summary<'_>, r: &Row) -> f64 {
    s.messages as f64 / r.secs
}

/// The machine, as /proc tells it.
pub fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map_or("unknown CPU", |m| m.trim_start_matches([' ', '\t', ':']))
        .to_string();
    let cores = cpuinfo.lines().filter(|l| l.starts_with("processor")).count();
    let mem_gib = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0 / 1024.0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!("{cores} × {model}, {mem_gib:.0} GiB, Linux {}", kernel.trim())
}

/// The report's section: what ran of the broker table, the chart, the broker-free tables.
pub fn section(s: &Summary<'_>, rows: &[Row], free: &[FreeRow], chart: &str) -> String {
    let mut t = String::new();
    if !rows.is_empty() {
        t.push_str(&table(s, rows));
    }
    let _ = writeln!(t, "\n![envelopes/s per contender]({chart})\n");
    if !free.is_empty() {
        t.push_str(&crate::report_free::tables(s, free));
    }
    if let Some(idle) = s.idle_rss_mb {
        let _ = writeln!(
            t,
            "\nkafclaw idle (exactly-once filter instance, group joined, no input): **{idle:.1} MB RSS** (target < 50 MB); \
             kafclaw binary as run: **{:.1} MB** (target < 40 MB for the stripped release build).",
            s.binary_mb.unwrap_or_default()
        );
    }
    t
}

fn table(s: &Summary<'_>, rows: &[Row]) -> String {
    let mb = s.bytes as f64 / (1024.0 * 1024.0);
    let find = |who| rows.iter().find(|r| r.who == who).map(|r| msgs_per_sec(s, r));
    let raw = find(Contender::Raw);
    let mut t = String::new();
    let _ = writeln!(
        t,
        "{} envelopes of ~{} bytes per contender on {} partitions, a filter that keeps half; one process per \
         contender, one after the other, same broker ({}) and machine ({}), same run; kafclaw runs with its \
         default of one stream thread. Throughput: from the \
         process's start until its group has committed every input offset (includes start-up and group join). \
         CPU: user + system seconds of the contender's process over that time; the broker's over the same time \
         beside it. \
         Latency: {} more envelopes at {}/s once the backlog is done, send → read back from the output \
         (read_committed). {}\n",
        s.messages,
        s.bytes / s.messages.max(1) as u64,
        s.partitions,
        s.broker,
        machine(),
        s.latency_messages,
        s.latency_rate,
        match s.rounds {
            1 => "One round.".to_owned(),
            n => format!(
                "{n} rounds, interleaved; each contender's median round, msgs/s of its slowest–fastest in brackets."
            ),
        },
    );
    let _ = writeln!(
        t,
        "| contender | msgs/s | MB/s in | × raw loop | p50 ms | p99 ms | CPU s | CPU µs/msg | peak RSS MB | broker CPU s |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    for r in rows {
        let rate = msgs_per_sec(s, r);
        let _ = writeln!(
            t,
            "| {} | {:.0}{} | {:.1} | {} | {:.1} | {:.1} | {:.1} | {:.1} | {:.0} | {} |",
            r.who.name(),
            rate,
            match s.rounds {
                1 => String::new(),
                _ => format!(" [{:.0}–{:.0}]", s.messages as f64 / r.spread.0, s.messages as f64 / r.spread.1),
            },
            mb / r.secs,
            raw.map_or("–".into(), |raw| format!("{:.2}", rate / raw)),
            r.p50_ms,
            r.p99_ms,
            r.usage.cpu_secs,
            r.usage.cpu_secs * 1e6 / s.messages as f64,
            r.usage.peak_rss_mb,
            r.broker_cpu_secs.map_or("–".into(), |c| format!("{c:.1}")),
        );
    }
    t.push_str("\n| ratio | measured | target | |\n|---|---:|---:|---|\n");
    let mut ratio = |label: &str, a: Contender, b: Contender, target: f64| {
        if let (Some(a), Some(b)) = (find(a), find(b)) {
            let v = a / b;
            let verdict = if v >= target { "met" } else { "missed" };
            let _ = writeln!(t, "| {label} | {v:.2} | ≥ {target} | {verdict} |");
        }
    };
    ratio("exactly-once ÷ raw loop", Contender::KafclawExactlyOnce, Contender::Raw, 0.8);
    ratio("exactly-once ÷ at-least-once", Contender::KafclawExactlyOnce, Contender::KafclawAtLeastOnce, 0.9);
    ratio("kafclaw at-least-once ÷ Quix Streams", Contender::KafclawAtLeastOnce, Contender::Quix, 10.0);
    ratio(
        "kafclaw exactly-once ÷ Quix Streams exactly-once",
        Contender::KafclawExactlyOnce,
        Contender::QuixExactlyOnce,
        10.0,
    );
    let cpu = |who| rows.iter().find(|r| r.who == who).map(|r| r.usage.cpu_secs);
    let mut cpu_ratio = |label: &str, a: Contender, b: Contender, target: f64| {
        if let (Some(a), Some(b)) = (cpu(a), cpu(b)) {
            let v = a / b;
            let verdict = if v <= target { "met" } else { "missed" };
            let _ = writeln!(t, "| {label} | {v:.2} | ≤ {target} | {verdict} |");
        }
    };
    cpu_ratio("CPU µs/envelope: exactly-once ÷ raw loop", Contender::KafclawExactlyOnce, Contender::Raw, 1.0);
    cpu_ratio(
        "CPU µs/envelope: exactly-once ÷ Quix Streams at-least-once",
        Contender::KafclawExactlyOnce,
        Contender::Quix,
        0.3,
    );
    cpu_ratio(
        "CPU µs/envelope: exactly-once ÷ Quix Streams exactly-once",
        Contender::KafclawExactlyOnce,
        Contender::QuixExactlyOnce,
        0.3,
    );
    t
}

/// The chart: the broker contenders, then the broker-free ones (each panel its own scale).
pub fn chart(s: &Summary<'_>, rows: &[Row], free: &[FreeRow]) -> String {
    let mut panels = Vec::new();
    if !rows.is_empty() {
        let bars = rows
            .iter()
            .map(|r| {
                let color = match r.who {
                    Contender::Raw => "#888888",
                    Contender::KafclawAtLeastOnce => "#3b7dd8",
                    Contender::KafclawExactlyOnce => "#1f4e99",
                    Contender::Quix => "#d8893b",
                    Contender::QuixExactlyOnce => "#a8601c",
                };
                (r.who.name().to_owned(), msgs_per_sec(s, r), color)
            })
            .collect();
        panels.push((format!("on the test broker ({})", s.broker), bars));
    }
    let (local, mock): (Vec<&FreeRow>, Vec<&FreeRow>) = free.iter().partition(|r| r.who == crate::free::Free::Local);
    let free_bar = |r: &&FreeRow| {
        let color = if r.who == crate::free::Free::MockRaw { "#888888" } else { "#2a8a4a" };
        (r.who.name().to_owned(), s.messages as f64 / r.secs, color)
    };
    if !mock.is_empty() {
        panels.push((
            "broker-free: librdkafka's mock cluster in the process (at-least-once)".to_owned(),
            mock.iter().map(free_bar).collect(),
        ));
    }
    if !local.is_empty() {
        panels.push(("broker-free: local mode, no Kafka".to_owned(), local.iter().map(free_bar).collect()));
    }
    crate::chart::svg(
        &format!("envelopes/s, {} × ~1 KB, filter keeps half, {} partitions", s.messages, s.partitions),
        &panels,
    )
}
