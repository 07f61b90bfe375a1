//! Feeds the timeline (`crate::timeline`) from a group's topics: every partition is read
//! from the position the timeline holds for it (or the beginning), and records are written in
//! batches, each batch with its positions in one SQLite transaction.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use kafclaw_operators::envelope::Envelope;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

use crate::kafka::producer::{CALL_TIMEOUT, QuietEof};
use crate::kafka::settings::ClientSettings;
use crate::timeline::Timeline;

/// What a follow did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Followed {
    /// Envelopes recorded.
    pub recorded: u64,
    /// Records that were not envelopes (skipped).
    pub skipped: u64,
}

/// Follows `topics` into `timeline` until `stop`, or (`to_end`) until every partition is read
/// to its end. A partition resumes where the timeline's position says; one it has no position
/// for starts at its first record, or, given `since_ms` (ms since the epoch), at its first
/// record written since then. Topics that do not exist are skipped with a warning.
pub fn follow(
    settings: &ClientSettings,
    topics: &[String],
    timeline: &mut Timeline,
    to_end: bool,
    since_ms: Option<i64>,
    stop: &Arc<AtomicBool>,
) -> Result<Followed, String> {
    if !to_end {
        return follow_some(settings, topics, timeline, false, since_ms, stop);
    }
    // An end-of-partition event names only the partition: read to the end one topic at a time.
    let mut done = Followed::default();
    for t in topics {
        let f = follow_some(settings, std::slice::from_ref(t), timeline, true, since_ms, stop)?;
        done.recorded += f.recorded;
        done.skipped += f.skipped;
    }
    Ok(done)
}

/// The offset of the first record of `topic`/`partition` written at or after `ms` (none such:
/// its end).
fn since(consumer: &BaseConsumer<QuietEof>, topic: &str, partition: i32, ms: i64) -> Result<Offset, String> {
    let mut ask = TopicPartitionList::new();
    ask.add_partition_offset(topic, partition, Offset::Offset(ms)).map_err(|e| e.to_string())?;
    let found = consumer.offsets_for_times(ask, CALL_TIMEOUT).map_err(|e| format!("{topic}: {e}"))?;
    Ok(match found.find_partition(topic, partition).map(|e| e.offset()) {
        Some(Offset::Offset(o)) => Offset::Offset(o),
        _ => Offset::End,
    })
}

fn follow_some(
    settings: &ClientSettings,
    topics: &[String],
    timeline: &mut Timeline,
    to_end: bool,
    since_ms: Option<i64>,
    stop: &Arc<AtomicBool>,
) -> Result<Followed, String> {
    let consumer: BaseConsumer<QuietEof> = settings
        .client_config(&[
            ("group.id", "kafclaw-timeline"),
            ("enable.auto.commit", "false"),
            ("enable.partition.eof", "true"),
            ("isolation.level", "read_committed"),
        ])
        .create_with_context(QuietEof("timeline"))
        .map_err(|e| format!("timeline reader: {e}"))?;
    let mut assign = TopicPartitionList::new();
    let mut open: HashSet<(String, i32)> = HashSet::new();
    for t in topics {
        let md = consumer.fetch_metadata(Some(t), CALL_TIMEOUT).map_err(|e| format!("{t}: {e}"))?;
        let parts: Vec<i32> =
            md.topics().iter().filter(|m| m.error().is_none()).flat_map(|m| m.partitions()).map(|p| p.id()).collect();
        if parts.is_empty() {
            tracing::warn!(topic = %t, "no such topic: not followed");
        }
        for p in parts {
            let at = match (timeline.position(t, p).map_err(|e| e.to_string())?, since_ms) {
                (Some(next), _) => Offset::Offset(next),
                (None, Some(ms)) => since(&consumer, t, p, ms)?,
                (None, None) => Offset::Beginning,
            };
            assign.add_partition_offset(t, p, at).map_err(|e| e.to_string())?;
            open.insert((t.clone(), p));
        }
    }
    consumer.assign(&assign).map_err(|e| e.to_string())?;
    let mut done = Followed::default();
    let mut batch = Vec::new();
    let mut flushed = Instant::now();
    let mut quiet_since = Instant::now();
    loop {
        let read_to_end = to_end && open.is_empty();
        if read_to_end || stop.load(Ordering::Relaxed) {
            break;
        }
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                quiet_since = Instant::now();
                match Envelope::decode(m.payload().unwrap_or_default()) {
                    Ok(e) => {
                        let at = m.timestamp().to_millis().unwrap_or_default();
                        batch.push((m.topic().to_owned(), m.partition(), m.offset(), at, e));
                    }
                    Err(err) => {
                        tracing::debug!(topic = m.topic(), partition = m.partition(), offset = m.offset(), error = %err, "not an envelope");
                        done.skipped += 1;
                    }
                }
            }
            Some(Err(KafkaError::PartitionEOF(p))) => {
                open.retain(|(_, q)| *q != p);
            }
            Some(Err(e)) => tracing::warn!(error = %e, "timeline reader"),
            None if to_end && quiet_since.elapsed() > Duration::from_secs(10) => break,
            None => {}
        }
        if batch.len() >= 500 || (!batch.is_empty() && flushed.elapsed() > Duration::from_millis(200)) {
            timeline.record(&batch).map_err(|e| e.to_string())?;
            done.recorded += batch.len() as u64;
            batch.clear();
            flushed = Instant::now();
        }
    }
    if !batch.is_empty() {
        timeline.record(&batch).map_err(|e| e.to_string())?;
        done.recorded += batch.len() as u64;
    }
    Ok(done)
}
