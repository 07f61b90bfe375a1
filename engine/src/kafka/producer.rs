//! The instance's Kafka clients: librdkafka's log as tracing events, the producer context
//! (delivery reports: failures and changelog ends), sending with back-pressure, creating a
//! (transactional) producer, and the context of readers that expect end-of-partition events.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::ConsumerContext;
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::message::{DeliveryResult, Message};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer, ProducerContext};

use super::fault::{Fault, RecordFault, classify, input_of};

const CHANGELOG_SUFFIX: &str = "-changelog";

/// How long a transactional or admin call may take.
pub(super) const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// What the producer's delivery reports tell the instance.
#[derive(Default)]
pub(super) struct DeliveryCounter {
    /// Deliveries that failed.
    pub(super) failures: AtomicU64,
    /// Highest delivered offset per changelog partition since the last commit.
    pub(super) changelog_ends: Mutex<HashMap<(String, i32), i64>>,
    /// Records the broker refused as the record's fault (too large, invalid) since the
    /// instance last looked: when their inputs are processed again, those records become
    /// dead letters.
    pub(super) refused: Mutex<Vec<Refused>>,
    /// The first delivery failure retrying cannot mend (not authorized, fenced), if any.
    pub(super) fatal: Mutex<Option<ProducerFatal>>,
}

/// A failure the producer's callbacks saw that retrying cannot mend: the instance must stop.
#[derive(Debug, thiserror::Error)]
pub(super) enum ProducerFatal {
    /// librdkafka raised a fatal producer error (e.g. the idempotent producer lost its sequence).
    #[error("producer: {error}: {reason}")]
    Client {
        /// The error.
        error: KafkaError,
        /// librdkafka's reason.
        reason: String,
    },
    /// A delivery failed for a cause retrying cannot mend (not authorized, fenced).
    #[error("delivery to `{topic}` failed: {error}")]
    Delivery {
        /// The record's topic.
        topic: String,
        /// The delivery report's error.
        error: KafkaError,
    },
}

/// A record the broker refused as the record's fault.
#[derive(Debug, Clone)]
pub(super) struct Refused {
    /// The input the record was produced for: (topic, partition, offset).
    pub(super) input: (String, i32, i64),
    /// The topic the record was for.
    pub(super) topic: String,
    /// Its size in bytes (key + value).
    pub(super) size: usize,
    /// Why.
    pub(super) fault: RecordFault,
    /// The broker's error.
    pub(super) error: String,
}

/// The producer's context: counts deliveries, forwards librdkafka's log.
pub(super) struct ProducerCtx {
    deliveries: Arc<DeliveryCounter>,
}

/// librdkafka's log, as structured tracing events. One `[kafka]` table configures both
/// clients, so each warns about the other's properties: those warnings are dropped.
pub(super) fn forward_log(level: RDKafkaLogLevel, facility: &str, message: &str) {
    if facility == "CONFWARN"
        && (message.contains("is a consumer property") || message.contains("is a producer property"))
    {
        return;
    }
    match level {
        RDKafkaLogLevel::Emerg | RDKafkaLogLevel::Alert | RDKafkaLogLevel::Critical | RDKafkaLogLevel::Error => {
            tracing::error!(target: "librdkafka", facility, "{message}")
        }
        RDKafkaLogLevel::Warning => tracing::warn!(target: "librdkafka", facility, "{message}"),
        RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => tracing::info!(target: "librdkafka", facility, "{message}"),
        RDKafkaLogLevel::Debug => tracing::debug!(target: "librdkafka", facility, "{message}"),
    }
}

impl ClientContext for ProducerCtx {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        forward_log(level, facility, message);
    }

    /// librdkafka raises a fatal producer error (e.g. the idempotent producer lost its
    /// sequence) here: the instance must stop, after aborting its open transaction.
    fn error(&self, error: KafkaError, reason: &str) {
        if classify(&error) == Fault::Fatal {
            let mut fatal = self.deliveries.fatal.lock().unwrap_or_else(|p| p.into_inner());
            fatal.get_or_insert_with(|| ProducerFatal::Client { error, reason: reason.to_owned() });
        } else {
            tracing::warn!(%error, reason, "producer");
        }
    }
}

impl ProducerContext for ProducerCtx {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Ok(m) = result
            && m.topic().ends_with(CHANGELOG_SUFFIX)
        {
            let mut ends = self.deliveries.changelog_ends.lock().unwrap_or_else(|p| p.into_inner());
            let e = ends.entry((m.topic().to_owned(), m.partition())).or_insert(-1);
            *e = (*e).max(m.offset());
        }
        if let Err((e, m)) = result {
            self.deliveries.failures.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(topic = m.topic(), partition = m.partition(), error = %e, "delivery failed");
            match classify(e) {
                Fault::Record(fault) => match input_of(m) {
                    Some(input) => {
                        let size = m.payload_len() + m.key().map_or(0, <[u8]>::len);
                        let refused = Refused { input, topic: m.topic().to_owned(), size, fault, error: e.to_string() };
                        self.deliveries.refused.lock().unwrap_or_else(|p| p.into_inner()).push(refused);
                    }
                    None => tracing::warn!(topic = m.topic(), "a refused record names no input"),
                },
                Fault::Fatal => {
                    let mut fatal = self.deliveries.fatal.lock().unwrap_or_else(|p| p.into_inner());
                    fatal.get_or_insert_with(|| ProducerFatal::Delivery {
                        topic: m.topic().to_owned(),
                        error: e.clone(),
                    });
                }
                Fault::Retriable => {}
            }
        }
    }
}

/// Sends one record, waiting for room in the producer's queue.
pub(super) fn send_record(
    producer: &BaseProducer<ProducerCtx>,
    mut record: BaseRecord<'_, [u8], [u8]>,
) -> KafkaResult<()> {
    loop {
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                producer.poll(Duration::from_millis(10));
                record = r;
            }
            Err((e, _)) => return Err(e),
        }
    }
}

/// Creates a producer and, when it is transactional, initialises its transactions (fencing
/// any earlier incarnation with the same transactional id).
pub(super) fn new_producer(
    config: &rdkafka::ClientConfig,
    deliveries: &Arc<DeliveryCounter>,
) -> KafkaResult<BaseProducer<ProducerCtx>> {
    let producer: BaseProducer<ProducerCtx> =
        config.create_with_context(ProducerCtx { deliveries: deliveries.clone() })?;
    if config.get("transactional.id").is_some() {
        producer.init_transactions(CALL_TIMEOUT)?;
    }
    Ok(producer)
}

/// The context of readers that expect end-of-partition events (changelog restores, global
/// tables): those are not errors; anything else is a warning naming the reader.
pub(super) struct QuietEof(pub(super) &'static str);

impl ClientContext for QuietEof {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        forward_log(level, facility, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        if error.rdkafka_error_code() != Some(RDKafkaErrorCode::PartitionEOF) {
            tracing::warn!(%error, reason, reader = self.0, "kafka reader");
        }
    }
}

impl ConsumerContext for QuietEof {}

/// The context of the instance's other clients (the delegate bus): librdkafka's log as
/// tracing events, errors as warnings naming the client.
pub(super) struct Logged(pub(super) &'static str);

impl ClientContext for Logged {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        forward_log(level, facility, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        tracing::warn!(%error, reason, client = self.0, "kafka client");
    }
}

impl ConsumerContext for Logged {}

impl ProducerContext for Logged {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((e, m)) = result {
            tracing::warn!(error = %e, topic = m.topic(), client = self.0, "delivery failed");
        }
    }
}

/// Assigns every partition of `topics` to `consumer`, each from its first record at or after
/// `since` (a time; the end when there is none): a reader of recent history that needs no
/// consumer group. `incremental`: added to the partitions already assigned (librdkafka's
/// incremental assign, safe while another thread polls), else replacing them. Returns how
/// many partitions were assigned.
pub(super) fn assign_since<C: rdkafka::consumer::ConsumerContext>(
    consumer: &rdkafka::consumer::BaseConsumer<C>,
    topics: &[String],
    since: std::time::SystemTime,
    incremental: bool,
) -> Result<usize, String> {
    use rdkafka::consumer::Consumer;
    use rdkafka::{Offset, TopicPartitionList};
    let since = since.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
    let mut times = TopicPartitionList::new();
    for t in topics {
        let md = consumer.fetch_metadata(Some(t), CALL_TIMEOUT).map_err(|e| format!("{t}: {e}"))?;
        for p in md.topics().iter().filter(|m| m.error().is_none()).flat_map(|m| m.partitions()) {
            times.add_partition_offset(t, p.id(), Offset::Offset(since)).map_err(|e| e.to_string())?;
        }
    }
    let starts = consumer.offsets_for_times(times, CALL_TIMEOUT).map_err(|e| e.to_string())?;
    let mut assign = TopicPartitionList::new();
    for e in starts.elements() {
        let at = match e.offset() {
            Offset::Offset(o) if o >= 0 => Offset::Offset(o),
            _ => Offset::End,
        };
        assign.add_partition_offset(e.topic(), e.partition(), at).map_err(|e| e.to_string())?;
    }
    if incremental {
        consumer.incremental_assign(&assign).map_err(|e| e.to_string())?;
    } else {
        consumer.assign(&assign).map_err(|e| e.to_string())?;
    }
    Ok(assign.count())
}
