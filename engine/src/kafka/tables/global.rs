//! Global tables: a Kafka source with `global = true` is read in full by every instance,
//! outside the consumer group. At start-up the instance reads it to its end (as Kafka Streams
//! bootstraps global stores) before it joins the group; then the stream thread follows it.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::BorrowedMessage;
use rdkafka::{Offset, TopicPartitionList};

use crate::kafka::producer::{CALL_TIMEOUT, QuietEof};
use crate::kafka::settings::ClientSettings;
use crate::kafka::topics::partition_counts;

/// With several topics, whose end-of-partition events name only the partition: how long
/// nothing may arrive before the ends reported count (global tables and replays).
pub(in crate::kafka) const MULTI_TOPIC_QUIET: Duration = Duration::from_secs(2);

/// Reads the global topics from the beginning to their end, handing every record to
/// `process`, and returns the consumer that follows them afterwards.
pub(in crate::kafka) fn bootstrap_global(
    settings: &ClientSettings,
    app: &str,
    topics: &HashSet<String>,
    stop: &AtomicBool,
    mut process: impl FnMut(&BorrowedMessage<'_>),
) -> Result<BaseConsumer<QuietEof>, String> {
    let g: BaseConsumer<QuietEof> = settings
        .client_config(&[
            ("group.id", &format!("{app}-global")),
            ("enable.auto.commit", "false"),
            ("enable.partition.eof", "true"),
            ("isolation.level", "read_committed"),
        ])
        .create_with_context(QuietEof("global table"))
        .map_err(|e| format!("consumer: {e}"))?;
    let names: Vec<&str> = topics.iter().map(String::as_str).collect();
    let counts = partition_counts(settings, &names, CALL_TIMEOUT).map_err(|e| e.to_string())?;
    let mut tpl = TopicPartitionList::new();
    let mut waiting: HashSet<i32> = HashSet::new();
    for (t, n) in names.iter().zip(counts) {
        for p in 0..n.unwrap_or(0) as i32 {
            tpl.add_partition_offset(t, p, Offset::Beginning).map_err(|e| e.to_string())?;
            waiting.insert(p);
        }
    }
    g.assign(&tpl).map_err(|e| format!("assign: {e}"))?;
    let started = Instant::now();
    let mut read = 0u64;
    let mut last = Instant::now();
    // Done when every partition number reported its end and (with several topics, whose end
    // events name only the partition) nothing arrived for a moment.
    while !(waiting.is_empty() && (topics.len() == 1 || last.elapsed() >= MULTI_TOPIC_QUIET)) {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        match g.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                process(&m);
                read += 1;
                last = Instant::now();
            }
            Some(Err(KafkaError::PartitionEOF(p))) => {
                waiting.remove(&p);
            }
            Some(Err(e)) => tracing::warn!(error = %e, "global table consume error"),
            None => {}
        }
    }
    tracing::info!(records = read, ms = started.elapsed().as_millis() as u64, topics = ?names, "global tables loaded");
    Ok(g)
}
