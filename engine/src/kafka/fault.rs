//! What a failed send means, and who is at fault: the record (it becomes a dead letter of its
//! input and the pipeline goes on) or the infrastructure (the open transaction is aborted and
//! the inputs are read again; where retrying cannot help, the instance stops, non-zero).
//!
//! The rule the instance keeps (docs/ARCHITECTURE.md, "a position is committed only with every
//! record it caused"): no error path commits an input's offset without its outputs, its
//! changelog records or its dead letter in the same transaction (at-least-once: delivered); an
//! input that caused none has nothing to wait for.

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Headers, Message};

/// Which kind of record a send is, for fault injection and for messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RecordKind {
    /// An output to a sink topic.
    Output,
    /// A state table's changelog record.
    Changelog,
    /// A dead letter.
    DeadLetter,
}

/// Who a failed send is the fault of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The record itself can never be written: larger than the producer's or the broker's
    /// limit, or refused as invalid. It becomes a dead letter of its input.
    Record(RecordFault),
    /// The cluster or the connection: abort the open transaction, rewind, read again.
    Retriable,
    /// Retrying cannot help (not authorized, fenced, a fatal client error): abort the open
    /// transaction and stop the instance with an error; a restart resumes from the last commit.
    Fatal,
}

/// Why a record cannot be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordFault {
    /// Over `message.max.bytes` (the producer's) or the topic's `max.message.bytes` (the
    /// broker's). Dead letters name it `record_too_large`.
    TooLarge,
    /// Refused by the broker as an invalid record (e.g. a compacted topic given no key).
    /// Dead letters name it `record_invalid`.
    Invalid,
}

impl RecordFault {
    /// The error code dead letters carry in `kafclaw.error.code`.
    pub fn code(self) -> &'static str {
        match self {
            RecordFault::TooLarge => "record_too_large",
            RecordFault::Invalid => "record_invalid",
        }
    }
}

/// Classifies the error of a send or of a delivery report.
pub fn classify(e: &KafkaError) -> Fault {
    use RDKafkaErrorCode as C;
    let code = match e {
        KafkaError::Transaction(t) if t.is_fatal() => return Fault::Fatal,
        KafkaError::Transaction(_) => return Fault::Retriable,
        _ => e.rdkafka_error_code(),
    };
    match code {
        Some(C::MessageSizeTooLarge | C::MessageBatchTooLarge | C::InvalidMessageSize) => {
            Fault::Record(RecordFault::TooLarge)
        }
        Some(C::InvalidRecord) => Fault::Record(RecordFault::Invalid),
        Some(
            C::TopicAuthorizationFailed
            | C::ClusterAuthorizationFailed
            | C::GroupAuthorizationFailed
            | C::TransactionalIdAuthorizationFailed
            | C::SaslAuthenticationFailed
            | C::Authentication
            | C::Fatal
            | C::Fenced
            | C::ProducerFenced
            | C::InvalidProducerEpoch,
        ) => Fault::Fatal,
        _ => Fault::Retriable,
    }
}

/// The input an engine record was produced for, read from its headers: outputs and changelog
/// records carry `kafclaw.input.{topic,partition,offset}`, dead letters
/// `kafclaw.{location,partition,offset}`. `None` for a record without them.
pub fn input_of<M: Message>(m: &M) -> Option<(String, i32, i64)> {
    use super::headers::{self as out, dead_letter as dl};
    let h = m.headers()?;
    let get =
        |name: &str| h.iter().find(|x| x.key == name).and_then(|x| x.value).and_then(|v| std::str::from_utf8(v).ok());
    let (topic, partition, offset) = match get(out::INPUT_TOPIC) {
        Some(t) => (t, get(out::INPUT_PARTITION)?, get(out::INPUT_OFFSET)?),
        None => (get(dl::LOCATION)?, get(dl::PARTITION)?, get(dl::OFFSET)?),
    };
    Some((topic.to_owned(), partition.parse().ok()?, offset.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::error::RDKafkaErrorCode as C;

    #[test]
    fn sizes_are_the_records_fault_authorization_is_fatal_the_rest_retried() {
        let p = |c| KafkaError::MessageProduction(c);
        assert_eq!(classify(&p(C::MessageSizeTooLarge)), Fault::Record(RecordFault::TooLarge));
        assert_eq!(classify(&p(C::MessageBatchTooLarge)), Fault::Record(RecordFault::TooLarge));
        assert_eq!(classify(&p(C::InvalidRecord)), Fault::Record(RecordFault::Invalid));
        assert_eq!(classify(&p(C::TopicAuthorizationFailed)), Fault::Fatal);
        assert_eq!(classify(&p(C::ProducerFenced)), Fault::Fatal);
        assert_eq!(classify(&p(C::UnknownTopicOrPartition)), Fault::Retriable);
        assert_eq!(classify(&p(C::MessageTimedOut)), Fault::Retriable);
        assert_eq!(classify(&p(C::Fail)), Fault::Retriable);
        assert_eq!(classify(&KafkaError::Canceled), Fault::Retriable);
    }
}
