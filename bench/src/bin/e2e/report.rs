//! The harness's report: a Markdown table with the ratios and targets, and an SVG chart.

use std::fmt::Write;

use crate::Row;
use crate::contenders::Contender;

pub struct Summary<'a> {
    pub messages: usize,
    pub bytes: u64,
    pub partitions: i32,
    pub latency_messages: usize,
    pub latency_rate: u32,
    pub rounds: usize,
    pub broker: &'a str,
    pub idle_rss_mb: f64,
    pub binary_mb: f64,
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

pub fn table(s: &Summary<'_>, rows: &[Row], chart: &str) -> String {
    let mb = s.bytes as f64 / (1024.0 * 1024.0);
    let find = |who| rows.iter().find(|r| r.who == who).map(|r| msgs_per_sec(s, r));
    let raw = find(Contender::Raw);
    let mut t = String::new();
    let _ = writeln!(
        t,
        "{} envelopes of ~{} bytes per contender on {} partitions, a filter that keeps half; one process per \
         contender, one after the other, same broker ({}) and machine ({}), same run. Throughput: from the \
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
    let _ = writeln!(t, "\n![msgs/s per contender]({chart})\n");
    t.push_str("| ratio | measured | target | |\n|---|---:|---:|---|\n");
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
    ratio("kafclaw exactly-once ÷ Quix Streams", Contender::KafclawExactlyOnce, Contender::Quix, 10.0);
    let _ = writeln!(
        t,
        "\nkafclaw idle (exactly-once filter instance, group joined, no input): **{:.1} MB RSS** (target < 50 MB); \
         kafclaw binary as run: **{:.1} MB** (target < 40 MB for the stripped release build).",
        s.idle_rss_mb, s.binary_mb
    );
    t
}

/// A horizontal bar chart of msgs/s per contender (SVG, no dependencies).
pub fn chart(s: &Summary<'_>, rows: &[Row]) -> String {
    let (w, bar_h, gap, left, top) = (760.0, 34.0, 14.0, 290.0, 46.0);
    let h = top + rows.len() as f64 * (bar_h + gap) + 30.0;
    let max = rows.iter().map(|r| msgs_per_sec(s, r)).fold(1.0, f64::max);
    let scale = (w - left - 110.0) / max;
    let mut svg = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="14">
<rect width="100%" height="100%" fill="white"/>
<text x="10" y="26" font-size="16" font-weight="bold">envelopes/s, {} × ~1 KB, filter keeps half, 6 partitions</text>
"#,
        s.messages
    );
    for (i, r) in rows.iter().enumerate() {
        let y = top + i as f64 * (bar_h + gap);
        let rate = msgs_per_sec(s, r);
        let color = match r.who {
            Contender::Raw => "#888888",
            Contender::KafclawAtLeastOnce => "#3b7dd8",
            Contender::KafclawExactlyOnce => "#1f4e99",
            Contender::Quix => "#d8893b",
        };
        let _ = writeln!(
            svg,
            r#"<text x="{}" y="{}" text-anchor="end">{}</text>
<rect x="{left}" y="{y}" width="{:.1}" height="{bar_h}" fill="{color}"/>
<text x="{:.1}" y="{}">{:.0}</text>"#,
            left - 10.0,
            y + bar_h * 0.65,
            r.who.name(),
            (rate * scale).max(1.0),
            left + rate * scale + 8.0,
            y + bar_h * 0.65,
            rate
        );
    }
    svg.push_str("</svg>\n");
    svg
}
