//! Sending what tasks output — records to sinks, changelog records, dead letters — inside the
//! open transaction, with the rule that nothing is lost (docs/ARCHITECTURE.md, "a position is
//! committed only with every record it caused"):
//!
//! - a record over the producer's `message.max.bytes`, or one the broker refused earlier as
//!   too large or invalid, is **the record's fault**: it becomes a dead letter of its input
//!   (`kafclaw.error.code` `record_too_large` / `record_invalid`, its size and the limit in
//!   headers, a copy cut to fit) and the pipeline goes on;
//! - an oversized **changelog** record cannot be kept either: the key is deleted from the
//!   store and a tombstone goes to the changelog instead, so the store and its changelog
//!   agree, and the input is dead-lettered naming the table;
//! - a dead letter is cut so it always fits under the limit;
//! - any other failed send is the infrastructure's: the instance stops sending, and the open
//!   transaction is aborted before anything else (see [`Core::fail`]).

use std::sync::Arc;

use kafclaw_operators::connectors::kafka::KeyField;
use kafclaw_operators::{DeadLetter, Origin};
use rdkafka::error::KafkaResult;
use rdkafka::producer::BaseRecord;

use super::Core;
use super::fatal::Fatal;
use crate::kafka::fault::RecordKind;
use crate::kafka::fault::{Fault, RecordFault, classify};
use crate::kafka::headers::{self, InputHeaders, OutputHeaders, dead_letter as dl};
use crate::kafka::producer::{Refused, send_record};
use crate::kafka::stats::Stats;
use crate::kafka::topics::changelog_topic;
use crate::runtime::task::TaskOutput;

/// What librdkafka adds to a record's key, value and headers on the wire, at most (record
/// framing, varints, timestamps), in bytes: a margin kept below the limit when cutting.
const RECORD_OVERHEAD: usize = 1024;

/// How large the instance's records may be.
#[derive(Debug, Clone, Copy)]
pub(super) struct Limits {
    /// The producer's `message.max.bytes` (librdkafka's default: 1,000,000).
    pub(super) max_record: usize,
    /// `[dead_letter] max_copy_bytes`: the most bytes of a failed record a dead letter keeps.
    pub(super) dead_letter_copy: Option<usize>,
}

impl Limits {
    /// Reads the producer's limit from its configuration (a user's `message.max.bytes` in
    /// `[kafka]` or `KAFCLAW_KAFKA_MESSAGE_MAX_BYTES` is honoured).
    pub(super) fn from_config(config: &rdkafka::ClientConfig, dead_letter_copy: Option<usize>) -> Self {
        let max_record = config.get("message.max.bytes").and_then(|v| v.trim().parse().ok()).unwrap_or(1_000_000);
        Limits { max_record, dead_letter_copy }
    }

    /// The most bytes of a failed record's copy that `letter` may carry and still fit.
    fn copy_cap(&self, letter: &DeadLetter) -> usize {
        let room = self.max_record.saturating_sub(letter.header_bytes() + RECORD_OVERHEAD + 64);
        self.dead_letter_copy.map_or(room, |c| c.min(room))
    }
}

/// The input an engine record belongs to, as delivery reports name it.
pub(super) type InputKey = (String, i32, i64);

/// Records the broker refused as their own fault, by input: when the input is processed
/// again (after the abort their failure caused), those records become dead letters.
pub(super) type RefusedRecords = std::collections::HashMap<InputKey, Vec<Refused>>;

fn input_key(o: &Origin) -> InputKey {
    (o.location.to_string(), o.partition, o.offset)
}

/// Why a record cannot be written, for its dead letter.
struct Refusal {
    fault: RecordFault,
    why: String,
    /// `kafclaw.record.limit`: the producer's limit in bytes, or `broker`.
    limit: String,
}

/// Bytes of a record on the wire, without framing: key, value, header names and values.
fn record_size(key: Option<&[u8]>, value: &[u8], headers: &[(&str, &[u8])]) -> usize {
    key.map_or(0, <[u8]>::len) + value.len() + headers.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>()
}

impl Core {
    /// Why `origin`'s record for `topic` cannot be written: the broker refused it before, or
    /// it is over the producer's limit. `None` when it may be sent.
    fn record_fault(&self, origin: &Origin, topic: &str, size: usize) -> Option<Refusal> {
        let refused = match self.refused.is_empty() {
            true => None,
            false => self.refused.get(&input_key(origin)).and_then(|rs| rs.iter().find(|r| r.topic == topic)),
        };
        if let Some(r) = refused {
            let why = format!("the broker refused the record for `{topic}`: {}", r.error);
            return Some(Refusal { fault: r.fault, why, limit: "broker".to_owned() });
        }
        // Near the limit librdkafka's own count (with framing) decides: its refusal of the send
        // is the record's fault too (see `local_refusal`).
        (size > self.limits.max_record).then(|| self.local_refusal(RecordFault::TooLarge, topic, size))
    }

    /// The producer refused a record itself (its `message.max.bytes`).
    fn local_refusal(&self, fault: RecordFault, topic: &str, size: usize) -> Refusal {
        let limit = self.limits.max_record;
        let why =
            format!("a record of {size} bytes for `{topic}` does not fit the producer's message.max.bytes ({limit})");
        Refusal { fault, why, limit: limit.to_string() }
    }

    /// The dead letter of a record that is its own fault.
    fn record_letter(&self, origin: &Origin, stage: String, r: Refusal, size: usize, raw: Vec<u8>) -> DeadLetter {
        DeadLetter::at(origin, stage, r.why, raw)
            .with_code(r.fault.code(), vec![(dl::RECORD_SIZE, size.to_string()), (dl::RECORD_LIMIT, r.limit)])
    }

    /// Sends one record (through the fault injector of debug builds).
    fn send_kind(&mut self, kind: RecordKind, record: BaseRecord<'_, [u8], [u8]>) -> KafkaResult<()> {
        if let Some(e) = self.inject.fail(kind) {
            return Err(e);
        }
        self.sent_since_commit = true;
        send_record(&self.producer, record)
    }

    /// A send failed: the record's fault (`Some`, the caller dead-letters it) or the
    /// infrastructure's (the instance stops sending and aborts; `None`).
    fn send_failed(&mut self, kind: RecordKind, topic: &str, e: &rdkafka::error::KafkaError) -> Option<RecordFault> {
        match classify(e) {
            Fault::Record(f) => Some(f),
            Fault::Retriable => {
                self.abort_needed(format!("sending a {kind:?} record to `{topic}` failed: {e}"));
                None
            }
            Fault::Fatal => {
                self.fail(Fatal::Send { kind, topic: topic.to_owned(), error: e.clone() });
                None
            }
        }
    }

    /// Sends a task's outputs, changelog records and dead letters into the open transaction.
    /// After an infrastructure failure nothing more is sent: the transaction will be aborted
    /// and the inputs read again.
    pub(super) fn emit(&mut self, out: &mut TaskOutput) {
        // The store failed, not a record: nothing of this batch may commit. The transaction
        // aborts and the tasks rewind to the committed offsets (ten aborts in a row stop the
        // instance); nothing is dead-lettered.
        if let Some(failure) = out.state_failure.take() {
            tracing::warn!(stage = %failure.stage, error = %failure.error, "state store failed: aborting");
            self.abort_needed(format!("state store failed: {failure}"));
        }
        self.emit_records(out);
        self.emit_changelog(out);
        self.emit_dead_letters(out);
        if self.stopping() {
            out.records.clear();
            out.changelog.clear();
            out.dead_letters.clear();
        }
    }

    fn emit_records(&mut self, out: &mut TaskOutput) {
        let mut buf = std::mem::take(&mut self.buf);
        let mut output_headers = OutputHeaders::default();
        for o in out.records.drain(..) {
            if self.stopping() {
                break;
            }
            let target = &self.routes.sinks[&o.sink];
            let topic = target.topic.clone();
            let e = &o.envelope;
            let key = match target.key {
                KeyField::CorrelationId => Some(e.correlation_id.as_bytes()),
                KeyField::SenderId => Some(e.sender_id.as_bytes()),
                KeyField::Id => e.id.as_deref().map(str::as_bytes),
                KeyField::None => None,
            };
            let h = output_headers.write(&o.origin.location, o.origin.partition, o.origin.offset, e);
            buf.clear();
            e.encode_into(&mut buf);
            let size = record_size(key, &buf, &h);
            let fault = match self.record_fault(&o.origin, &topic, size) {
                Some(f) => Some(f),
                None => {
                    let mut record = BaseRecord::to(&topic).payload(&buf[..]).headers(headers::owned(&h));
                    if let Some(k) = key {
                        record = record.key(k);
                    }
                    match self.send_kind(RecordKind::Output, record) {
                        Ok(()) => {
                            Stats::add(&self.stats.produced, 1);
                            self.stats.metrics.produced(&topic);
                            None
                        }
                        Err(err) => match self.send_failed(RecordKind::Output, &topic, &err) {
                            Some(f) => Some(self.local_refusal(f, &topic, size)),
                            None => break,
                        },
                    }
                }
            };
            if let Some(refusal) = fault {
                let stage = format!("sink:{}", self.plan.nodes[o.sink].name);
                let letter = self.record_letter(&o.origin, stage, refusal, size, buf.clone());
                out.dead_letters.push(letter);
            }
        }
        self.buf = buf;
    }

    fn emit_changelog(&mut self, out: &mut TaskOutput) {
        let mut input_headers = InputHeaders::default();
        for w in std::mem::take(&mut out.changelog) {
            if self.stopping() {
                break;
            }
            let topic = changelog_topic(&self.plan, &w.table);
            let h = input_headers.write(&w.origin.location, w.origin.partition, w.origin.offset);
            let size = record_size(Some(&w.key), w.value.as_deref().unwrap_or_default(), &h);
            let mut fault = self.record_fault(&w.origin, &topic, size);
            loop {
                // A write that cannot be logged is not kept either: the key goes from the store
                // and a tombstone to the changelog, so the two agree.
                let value = if fault.is_some() { None } else { w.value.as_deref() };
                if value.is_none() && w.value.is_some() {
                    self.store.delete(&w.table, w.partition as u32, &w.key);
                }
                let mut record =
                    BaseRecord::to(&topic).key(&w.key[..]).partition(w.partition).headers(headers::owned(&h));
                if let Some(v) = value {
                    record = record.payload(v);
                }
                match self.send_kind(RecordKind::Changelog, record) {
                    Ok(()) => break,
                    Err(e) => match self.send_failed(RecordKind::Changelog, &topic, &e) {
                        Some(f) if value.is_some() => fault = Some(self.local_refusal(f, &topic, size)),
                        Some(_) => {
                            self.abort_needed(format!("a tombstone for changelog `{topic}` failed: {e}"));
                            break;
                        }
                        None => break,
                    },
                }
            }
            if let Some(mut refusal) = fault {
                let raw = w.value.clone().unwrap_or_default();
                let stage = format!("changelog:{}", w.table);
                refusal.why.push_str("; the state entry is deleted");
                out.dead_letters.push(self.record_letter(&w.origin, stage, refusal, size, raw));
            }
        }
    }

    fn emit_dead_letters(&mut self, out: &mut TaskOutput) {
        let dlq = self.routes.dlq_topic.clone();
        for mut letter in std::mem::take(&mut out.dead_letters) {
            if self.stopping() {
                break;
            }
            let origin = Origin {
                source: Arc::from(letter.source.as_str()),
                location: Arc::from(letter.location.as_str()),
                partition: letter.partition,
                offset: letter.offset,
                line: letter.line,
                input_id: None,
                input_span_id: None,
                trace_id: String::new(),
            };
            // Refused by the broker before: keep no copy at all.
            if self.record_fault(&origin, &dlq, 0).is_some() {
                letter.cut_raw(0);
            }
            let cap = self.limits.copy_cap(&letter);
            letter.cut_raw(cap);
            loop {
                let h = headers::dead_letter_headers(&letter);
                tracing::debug!(stage = %letter.stage, input = %letter.describe_input(), error = %letter.error, "record dead-lettered");
                let record = BaseRecord::to(&dlq).payload(&letter.raw[..]).headers(h);
                match self.send_kind(RecordKind::DeadLetter, record) {
                    Ok(()) => {
                        Stats::add(&self.stats.dead_lettered, 1);
                        self.stats.metrics.dead_lettered(&letter);
                        break;
                    }
                    // Too large although cut to fit: once more with no copy.
                    Err(e) => match self.send_failed(RecordKind::DeadLetter, &dlq, &e) {
                        Some(_) if !letter.raw.is_empty() => letter.cut_raw(0),
                        Some(_) => {
                            self.abort_needed(format!("dead-letter topic `{dlq}`: {e}"));
                            break;
                        }
                        None => break,
                    },
                }
            }
        }
    }
}
