//! Where a delegated call's request goes, and whether an earlier attempt of the call already
//! sent it: the durable half of a call's deadline.
//!
//! A request is keyed by its call's derived id and published to the partition Kafka's
//! default partitioner (murmur2, as in the Java client and every kafclaw producer) gives
//! that key, set explicitly, so the partition is known without asking the producer. Before
//! publishing, a call reads that one partition back from the start of its look-back to its
//! end: the first request with its id from this agent is the first attempt's (a retry after
//! a crash), whose `deadline_at` counts and which is not sent again.

use std::time::{Duration, Instant, SystemTime};

use kafclaw_operators::envelope::{Envelope, EnvelopeType};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

use crate::kafka::producer::{CALL_TIMEOUT, QuietEof};
use crate::kafka::settings::ClientSettings;

/// How long reading a partition back to its end may take.
const READ_BACK: Duration = Duration::from_secs(30);

/// Kafka's murmur2 (`org.apache.kafka.common.utils.Utils.murmur2`), the hash of its default
/// partitioner and of librdkafka's `murmur2_random`.
pub(super) fn murmur2(data: &[u8]) -> u32 {
    const M: u32 = 0x5bd1_e995;
    let mut h: u32 = 0x9747_b28c ^ data.len() as u32;
    let chunks = data.chunks_exact(4);
    let tail = chunks.remainder();
    for c in chunks {
        let mut k = u32::from_le_bytes([c[0], c[1], c[2], c[3]]).wrapping_mul(M);
        k ^= k >> 24;
        h = h.wrapping_mul(M) ^ k.wrapping_mul(M);
    }
    if tail.len() >= 3 {
        h ^= u32::from(tail[2]) << 16;
    }
    if tail.len() >= 2 {
        h ^= u32::from(tail[1]) << 8;
    }
    if !tail.is_empty() {
        h ^= u32::from(tail[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^ (h >> 15)
}

/// The partition of `key` among `partitions` (Kafka's `toPositive(murmur2(key)) % n`).
pub(super) fn partition_of(key: &str, partitions: i32) -> i32 {
    ((murmur2(key.as_bytes()) & 0x7fff_ffff) % partitions.max(1) as u32) as i32
}

/// The partition of `topic` a request with call id `id` goes to, and the first request with
/// that id sent by `agent` there since `since` (an earlier attempt's), if any.
///
/// Errors: the topic does not exist, or the partition cannot be read to its end (the
/// infrastructure's fault: the call is not made).
pub(super) fn first_request(
    settings: &ClientSettings,
    agent: &str,
    topic: &str,
    id: &str,
    since: SystemTime,
) -> Result<(i32, Option<Envelope>), String> {
    let consumer: BaseConsumer<QuietEof> = settings
        .client_config(&[
            ("group.id", &format!("{agent}-delegate-readback")),
            ("enable.auto.commit", "false"),
            ("enable.partition.eof", "true"),
            ("isolation.level", "read_committed"),
        ])
        .create_with_context(QuietEof("delegate read-back"))
        .map_err(|e| format!("request read-back: {e}"))?;
    let md = consumer.fetch_metadata(Some(topic), CALL_TIMEOUT).map_err(|e| format!("`{topic}`: {e}"))?;
    let count = md.topics().iter().filter(|t| t.error().is_none()).map(|t| t.partitions().len()).sum::<usize>();
    if count == 0 {
        return Err(format!("request topic `{topic}` does not exist: create it (the peer reads its requests there)"));
    }
    let partition = partition_of(id, count as i32);
    let since_ms = since.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
    let mut times = TopicPartitionList::new();
    times.add_partition_offset(topic, partition, Offset::Offset(since_ms)).map_err(|e| e.to_string())?;
    let starts = consumer.offsets_for_times(times, CALL_TIMEOUT).map_err(|e| format!("`{topic}`: {e}"))?;
    let start = match starts.elements().first().map(|e| e.offset()) {
        Some(Offset::Offset(o)) if o >= 0 => Offset::Offset(o),
        // No record since then: nothing to find.
        _ => return Ok((partition, None)),
    };
    let mut assign = TopicPartitionList::new();
    assign.add_partition_offset(topic, partition, start).map_err(|e| e.to_string())?;
    consumer.assign(&assign).map_err(|e| e.to_string())?;
    let began = Instant::now();
    while began.elapsed() < READ_BACK {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) if m.key() == Some(id.as_bytes()) => {
                let Ok(e) = Envelope::decode(m.payload().unwrap_or_default()) else { continue };
                if e.correlation_id == id
                    && e.sender_id == agent
                    && matches!(e.kind, EnvelopeType::Request | EnvelopeType::SkillRequest)
                {
                    return Ok((partition, Some(e)));
                }
            }
            Some(Ok(_)) => {}
            Some(Err(KafkaError::PartitionEOF(_))) => return Ok((partition, None)),
            Some(Err(KafkaError::MessageConsumption(RDKafkaErrorCode::UnknownTopicOrPartition))) => {
                return Err(format!("request topic `{topic}` does not exist"));
            }
            Some(Err(e)) => return Err(format!("reading `{topic}` [{partition}] back: {e}")),
            None => {}
        }
    }
    Err(format!("reading `{topic}` [{partition}] back did not reach its end within {READ_BACK:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn murmur2_is_kafkas() {
        // Kafka's own test vectors (UtilsTest.testMurmur2), as signed ints.
        for (key, hash) in [
            ("21", -973_932_308_i32),
            ("foobar", -790_332_482),
            ("a-little-bit-long-string", -985_981_536),
            ("a-little-bit-longer-string", -1_486_304_829),
            ("lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58_897_971),
            ("abc", 479_470_107),
        ] {
            assert_eq!(murmur2(key.as_bytes()) as i32, hash, "{key}");
        }
        assert_eq!(partition_of("foobar", 1), 0);
        assert!((0..6).contains(&partition_of("dlg-0123", 6)));
    }
}
