//! Dead-letter topics read and resubmitted (the console's Dead letters page): the newest
//! letters of a topic with their error headers, one letter by its coordinates, and a letter's
//! record written back to the topic it came from (`kafclaw.location`), with headers naming
//! where it came from and who resubmitted it.
//!
//! A letter's value is the record that failed (docs/ARCHITECTURE.md, "Dead letters"): the raw
//! input for decode errors, the envelope as it entered the failing operator otherwise, cut
//! when it did not fit (`kafclaw.raw.size` then gives its whole size).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use kafclaw_operators::api::dead_letter::headers as dlq;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};
use serde_json::{Value, json};

use super::inspect::unique_name;
use super::producer::{CALL_TIMEOUT, Logged};
use super::settings::ClientSettings;

/// The header a resubmitted record carries: `<dead-letter topic> <partition> <offset>`.
pub const RESUBMITTED_FROM: &str = "kafclaw.resubmitted.from";
/// The header a resubmitted record carries: who resubmitted it (a sender id).
pub const RESUBMITTED_BY: &str = "kafclaw.resubmitted.by";

/// How long a read waits for the partitions' ends.
const READ_TIMEOUT: Duration = Duration::from_secs(20);

/// One dead letter.
#[derive(Debug, Clone, PartialEq)]
pub struct Letter {
    /// Its partition of the dead-letter topic.
    pub partition: i32,
    /// Its offset there.
    pub offset: i64,
    /// When it was written (ms since the epoch; none when the broker gave none).
    pub timestamp_ms: Option<i64>,
    /// Its headers, in order (values as UTF-8, lossy).
    pub headers: Vec<(String, String)>,
    /// The failed record's bytes.
    pub value: Vec<u8>,
}

impl Letter {
    /// The value of header `name`, if present.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// Whether the value is a cut copy of the failed record (`kafclaw.raw.size` present).
    pub fn cut(&self) -> bool {
        self.header(dlq::RAW_SIZE).is_some()
    }

    /// The letter as the console shows it: `{"partition", "offset", "timestamp_ms", "error",
    /// "stage", "code", "source", "location", "input_partition", "input_offset", "cut",
    /// "headers": {name: value}, "value": text, "binary"}` (`value` is the bytes as UTF-8,
    /// lossy; `binary` says they were not UTF-8).
    pub fn to_json(&self) -> Value {
        let h = |n: &str| self.header(n);
        let text = std::str::from_utf8(&self.value);
        json!({
            "partition": self.partition,
            "offset": self.offset,
            "timestamp_ms": self.timestamp_ms,
            "error": h(dlq::ERROR),
            "stage": h(dlq::STAGE),
            "code": h(dlq::CODE),
            "source": h(dlq::SOURCE),
            "location": h(dlq::LOCATION),
            "input_partition": h(dlq::PARTITION),
            "input_offset": h(dlq::OFFSET),
            "cut": self.cut(),
            "headers": self.headers.iter().cloned().collect::<BTreeMap<String, String>>(),
            "value": String::from_utf8_lossy(&self.value),
            "binary": text.is_err(),
        })
    }
}

fn reader(settings: &ClientSettings) -> Result<BaseConsumer<Logged>, String> {
    settings
        .client_config(&[
            ("group.id", unique_name("kafclaw-dead-letters").as_str()),
            ("enable.auto.commit", "false"),
            ("enable.auto.offset.store", "false"),
            ("allow.auto.create.topics", "false"),
            ("isolation.level", "read_committed"),
            ("enable.partition.eof", "true"),
        ])
        .create_with_context(Logged("dead-letter reader"))
        .map_err(|e| format!("dead-letter reader: {e}"))
}

/// The partitions of `topic`, or an error naming it when it does not exist (it is not
/// created: the metadata of all topics is asked, as `kafclaw tap` does).
pub fn partitions(settings: &ClientSettings, topic: &str) -> Result<i32, String> {
    let c = reader(settings)?;
    partitions_of(&c, topic)
}

fn partitions_of(c: &BaseConsumer<Logged>, topic: &str) -> Result<i32, String> {
    let md = c.fetch_metadata(None, CALL_TIMEOUT).map_err(|e| format!("metadata: {e}"))?;
    md.topics()
        .iter()
        .find(|t| t.name() == topic && t.error().is_none())
        .map(|t| t.partitions().len() as i32)
        .filter(|n| *n > 0)
        .ok_or_else(|| format!("topic `{topic}` does not exist"))
}

fn letter_of(m: &rdkafka::message::BorrowedMessage<'_>) -> Letter {
    let headers = m
        .headers()
        .map(|h| {
            h.iter()
                .map(|Header { key, value }| {
                    (key.to_owned(), String::from_utf8_lossy(value.unwrap_or_default()).into_owned())
                })
                .collect()
        })
        .unwrap_or_default();
    Letter {
        partition: m.partition(),
        offset: m.offset(),
        timestamp_ms: m.timestamp().to_millis(),
        headers,
        value: m.payload().unwrap_or_default().to_vec(),
    }
}

/// Reads the partitions of `c`'s assignment from `starts` until each is at its end (or
/// `stop_at` says so), handing each letter to `on`.
fn read(
    c: &BaseConsumer<Logged>,
    topic: &str,
    starts: &[(i32, i64)],
    mut on: impl FnMut(Letter) -> bool,
) -> Result<(), String> {
    let mut tpl = TopicPartitionList::new();
    for (p, at) in starts {
        tpl.add_partition_offset(topic, *p, Offset::Offset(*at)).map_err(|e| e.to_string())?;
    }
    c.assign(&tpl).map_err(|e| e.to_string())?;
    let mut open: BTreeSet<i32> = starts.iter().map(|(p, _)| *p).collect();
    let deadline = std::time::Instant::now() + READ_TIMEOUT;
    while !open.is_empty() {
        if std::time::Instant::now() > deadline {
            return Err(format!("`{topic}`: partitions {open:?} not read to their end in {READ_TIMEOUT:?}"));
        }
        match c.poll(Duration::from_millis(200)) {
            None => {}
            Some(Ok(m)) if !on(letter_of(&m)) => return Ok(()),
            Some(Ok(_)) => {}
            Some(Err(KafkaError::PartitionEOF(p))) => {
                open.remove(&p);
            }
            Some(Err(e)) => return Err(format!("`{topic}`: {e}")),
        }
    }
    Ok(())
}

/// The newest letters of `topic`: up to `per_partition` of each partition, newest first.
pub fn newest(settings: &ClientSettings, topic: &str, per_partition: i64) -> Result<Vec<Letter>, String> {
    let c = reader(settings)?;
    let n = partitions_of(&c, topic)?;
    let mut starts = Vec::new();
    for p in 0..n {
        let (low, high) = c.fetch_watermarks(topic, p, CALL_TIMEOUT).map_err(|e| format!("`{topic}`: {e}"))?;
        if high > low {
            starts.push((p, (high - per_partition).max(low)));
        }
    }
    let mut out = Vec::new();
    if !starts.is_empty() {
        read(&c, topic, &starts, |l| {
            out.push(l);
            true
        })?;
    }
    out.sort_by_key(|l| std::cmp::Reverse((l.timestamp_ms, l.offset)));
    Ok(out)
}

/// The letter at `partition` / `offset` of `topic` (none: no record there, e.g. a
/// transaction marker or an offset past the end).
pub fn one(settings: &ClientSettings, topic: &str, partition: i32, offset: i64) -> Result<Option<Letter>, String> {
    let c = reader(settings)?;
    let n = partitions_of(&c, topic)?;
    if !(0..n).contains(&partition) || offset < 0 {
        return Ok(None);
    }
    let mut found = None;
    read(&c, topic, &[(partition, offset)], |l| {
        if l.offset == offset {
            found = Some(l);
        }
        // Past it: it is not there (compacted away, or a marker).
        false
    })?;
    Ok(found)
}

/// Where a resubmitted record went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resubmitted {
    /// The topic.
    pub topic: String,
    /// Its partition.
    pub partition: i32,
    /// Its offset.
    pub offset: i64,
}

/// A letter's record going back: what [`resubmit`] writes.
#[derive(Debug, Clone, Copy)]
pub struct Resubmission<'a> {
    /// The letter's coordinates: dead-letter topic, partition, offset.
    pub from: (&'a str, i32, i64),
    /// The topic it goes back to (it must exist; it is not created).
    pub to: &'a str,
    /// The record's key (none: no key).
    pub key: Option<&'a str>,
    /// The record.
    pub value: &'a [u8],
    /// Who resubmits it (a sender id).
    pub by: &'a str,
}

/// Writes `r.value` to `r.to`, keyed by `r.key`, with the headers [`RESUBMITTED_FROM`] (the
/// letter's coordinates) and [`RESUBMITTED_BY`], and then `audit` (the envelope
/// `audit(&where_it_went)` makes, keyed by `r.key` too) to `audit_topic`, **in one
/// transaction**: both are written or neither is.
pub async fn resubmit(
    settings: &ClientSettings,
    r: Resubmission<'_>,
    audit_topic: &str,
    audit: impl FnOnce(&Resubmitted) -> Vec<u8>,
) -> Result<Resubmitted, String> {
    let Resubmission { from, to, key, value, by } = r;
    let producer: FutureProducer<Logged> = settings
        .client_config(&[
            ("transactional.id", unique_name("kafclaw-gateway-resubmit").as_str()),
            ("allow.auto.create.topics", "false"),
            ("client.id", "kafclaw-gateway-resubmit"),
            ("linger.ms", "0"),
            ("partitioner", "murmur2_random"),
        ])
        .create_with_context(Logged("resubmit producer"))
        .map_err(|e| format!("resubmit producer: {e}"))?;
    let blocking = |p: &FutureProducer<Logged>, step: fn(&FutureProducer<Logged>) -> Result<(), KafkaError>| {
        let p = p.clone();
        async move {
            tokio::task::spawn_blocking(move || step(&p)).await.map_err(|e| e.to_string())?.map_err(|e| e.to_string())
        }
    };
    blocking(&producer, |p| p.init_transactions(CALL_TIMEOUT)).await?;
    blocking(&producer, |p| p.begin_transaction()).await?;
    let written = async {
        let origin = format!("{} {} {}", from.0, from.1, from.2);
        let headers = OwnedHeaders::new()
            .insert(Header { key: RESUBMITTED_FROM, value: Some(origin.as_bytes()) })
            .insert(Header { key: RESUBMITTED_BY, value: Some(by.as_bytes()) });
        let mut record = FutureRecord::to(to).payload(value).headers(headers);
        if let Some(k) = key {
            record = record.key(k);
        }
        let d = producer.send(record, CALL_TIMEOUT).await.map_err(|(e, _)| format!("writing to `{to}`: {e}"))?;
        let done = Resubmitted { topic: to.to_owned(), partition: d.partition, offset: d.offset };
        let audit = audit(&done);
        let mut record = FutureRecord::to(audit_topic).payload(&audit);
        if let Some(k) = key {
            record = record.key(k);
        }
        producer.send(record, CALL_TIMEOUT).await.map_err(|(e, _)| format!("writing to `{audit_topic}`: {e}"))?;
        Ok::<_, String>(done)
    }
    .await;
    match written {
        Ok(done) => {
            blocking(&producer, |p| p.commit_transaction(CALL_TIMEOUT)).await?;
            Ok(done)
        }
        Err(e) => {
            let _ = blocking(&producer, |p| p.abort_transaction(CALL_TIMEOUT)).await;
            Err(e)
        }
    }
}
