//! The report's broker-free tables: local mode, and the mock-cluster runs with their CPU split
//! by thread (mock cluster, the harness's feeder, the contender).

use std::fmt::Write;

use crate::free::{Free, FreeRow};
use crate::report::Summary;

fn rate(s: &Summary<'_>, r: &FreeRow) -> f64 {
    s.messages as f64 / r.secs
}

fn spread(s: &Summary<'_>, r: &FreeRow) -> String {
    match s.rounds {
        1 => String::new(),
        _ => format!(" [{:.0}–{:.0}]", s.messages as f64 / r.spread.0, s.messages as f64 / r.spread.1),
    }
}

pub fn tables(s: &Summary<'_>, rows: &[FreeRow]) -> String {
    let mut t = String::new();
    let find = |who| rows.iter().find(|r| r.who == who);
    let us = |cpu: f64| cpu * 1e6 / s.messages as f64;
    let mb = s.bytes as f64 / (1024.0 * 1024.0);
    let machine_cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let _ = writeln!(t, "### Broker-free ceiling\n");
    if let Some(r) = find(Free::Local) {
        let _ = writeln!(
            t,
            "**Local mode** (`kafclaw run --local` of the same topology, its Kafka source and sink stood in by \
             files: {} envelopes read from a JSONL file, the filter, the kept half written to a file; one \
             process, from its start to its exit; CPU: the process's user + system seconds):\n",
            s.messages
        );
        let _ = writeln!(
            t,
            "| contender | msgs/s | MB/s in | CPU s | CPU µs/msg | peak RSS MB | target | |\n\
             |---|---:|---:|---:|---:|---:|---:|---|"
        );
        let v = rate(s, r);
        let _ = writeln!(
            t,
            "| {} | {v:.0}{} | {:.1} | {:.1} | {:.2} | {:.0} | ≥ 500000 msgs/s | {} |\n",
            r.who.name(),
            spread(s, r),
            mb / r.secs,
            r.process_cpu,
            us(r.process_cpu),
            r.peak_rss_mb,
            if v >= 500_000.0 { "met" } else { "missed" },
        );
    }
    let mock: Vec<&FreeRow> = rows.iter().filter(|r| r.who != Free::Local).collect();
    if mock.is_empty() {
        return t;
    }
    let _ = writeln!(
        t,
        "**librdkafka's mock cluster** (`rd_kafka_mock_cluster`, one broker, in the contender's process; \
         **at-least-once only: the mock cluster is not faithful for transactions**, so exactly-once is measured \
         on the test broker only). Each contender is a process of its own (`e2e mock-run`) on {} partitions; the \
         mock cluster keeps only 5 MB per partition, so a feeder thread of the harness writes the {} input \
         envelopes in batches of up to 1 MB (linger 20 ms: the mock answers a fetch with one batch per \
         partition) while the contender reads, each partition at most {} envelopes ahead of what the contender \
         consumed of it (the output's count is checked). Throughput: from the contender's start until its \
         group has committed every input offset (group join included; the mock's initial rebalance delay is set to 0; the contenders' session \
         timeout is 2 s, as the mock waits that less 1 s for members to rejoin at a rebalance); steady: from \
         10 % to 90 % of the input consumed. CPU over the whole run, by thread \
         name (/proc/self/task): the mock cluster's thread (`rdk:mock`), the feeder (thread and producer), and \
         the rest, the contender's own (its librdkafka clients included); the process total beside them. All \
         of it shares the machine's {machine_cores} cores. msgs per contender CPU s: the contender's envelopes/s \
         per core.\n",
        s.partitions,
        s.messages,
        crate::mockrun::per_partition(s.mock_lag, s.partitions)
    );
    let _ = writeln!(
        t,
        "| contender | msgs/s | × threads = 1 | steady msgs/s | first record s | process CPU s | mock cluster CPU s | feeder CPU s | \
         contender CPU s | contender CPU µs/msg | msgs per contender CPU s | peak RSS MB |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    let t1 = find(Free::MockThreads1).map(|r| rate(s, r));
    for r in &mock {
        let v = rate(s, r);
        let _ = writeln!(
            t,
            "| {} | {v:.0}{} | {} | {} | {} | {:.1} | {:.1} | {:.1} | {:.1} | {:.2} | {:.0} | {:.0} |",
            r.who.name(),
            spread(s, r),
            t1.map_or("–".into(), |t1| format!("{:.2}", v / t1)),
            r.steady_rate.map_or("–".into(), |v| format!("{v:.0}")),
            r.first_secs.map_or("–".into(), |f| format!("{f:.2}")),
            r.process_cpu,
            r.mock_cpu.unwrap_or_default(),
            r.harness_cpu.unwrap_or_default(),
            r.contender_cpu,
            us(r.contender_cpu),
            s.messages as f64 / r.contender_cpu.max(1e-9),
            r.peak_rss_mb,
        );
    }
    t.push_str("\n| ratio (mock cluster) | measured | target | |\n|---|---:|---:|---|\n");
    let ratio = |a: Free, b: Free| find(a).zip(find(b)).map(|(a, b)| rate(s, a) / rate(s, b));
    if let Some(v) = ratio(Free::MockThreads2, Free::MockThreads1) {
        let verdict = if v >= 1.6 { "met" } else { "missed" };
        let _ = writeln!(t, "| threads = 2 ÷ threads = 1 (one instance) | {v:.2} | ≥ 1.6 | {verdict} |");
    }
    let steady = |w| find(w).and_then(|r| r.steady_rate);
    if let (Some(a), Some(b)) = (steady(Free::MockThreads2), steady(Free::MockThreads1)) {
        let _ = writeln!(t, "| the same, steady msgs/s | {:.2} | | |", a / b);
    }
    if let Some(v) = ratio(Free::MockTwoInstances, Free::MockThreads1) {
        let _ = writeln!(t, "| 2 instances × 1 thread ÷ threads = 1 | {v:.2} | – | |");
    }
    if let Some(v) = ratio(Free::MockThreads1, Free::MockRaw) {
        let _ = writeln!(t, "| kafclaw threads = 1 ÷ raw loop | {v:.2} | – | |");
    }
    if let Some(r) = find(Free::MockThreads2) {
        let _ = writeln!(
            t,
            "\nIn the threads = 2 run the mock cluster's thread took {:.1} CPU s of the {:.1} s run ({:.0} % of one \
             core) and the feeder {:.1} CPU s, beside kafclaw's {:.1}.",
            r.mock_cpu.unwrap_or_default(),
            r.secs,
            100.0 * r.mock_cpu.unwrap_or_default() / r.secs,
            r.harness_cpu.unwrap_or_default(),
            r.contender_cpu
        );
    }
    t
}
