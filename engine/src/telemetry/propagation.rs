//! The W3C trace context across Kafka records, and the span of each processed record
//! (OpenTelemetry messaging conventions, v1.37+: `process {topic}`, kind consumer,
//! `messaging.system = kafka`, `messaging.destination.name`,
//! `messaging.destination.partition.id`, `messaging.kafka.offset`,
//! `messaging.consumer.group.name`).

use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry::trace::TraceContextExt;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use super::TARGET;
use crate::kafka::headers::TRACEPARENT;

/// The one header an extraction reads.
struct Traceparent<'a>(&'a str);

impl Extractor for Traceparent<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        (key == TRACEPARENT).then_some(self.0)
    }

    fn keys(&self) -> Vec<&str> {
        vec![TRACEPARENT]
    }
}

/// The remote parent a `traceparent` value names; `None` when it is not a valid W3C value
/// (wrong version or length, all-zero ids).
pub fn parent_of(traceparent: &str) -> Option<opentelemetry::Context> {
    let traceparent = traceparent.trim();
    // The fields' lengths (the propagator takes shorter ids as numbers).
    let lengths: Vec<usize> = traceparent.split('-').map(str::len).collect();
    if lengths.len() < 4 || lengths[..4] != [2, 32, 16, 2] {
        return None;
    }
    let cx = TraceContextPropagator::new().extract(&Traceparent(traceparent));
    cx.span().span_context().is_valid().then_some(cx)
}

/// The `traceparent` value (`00-<trace id>-<span id>-<flags>`) of the current span, when it
/// is exported (an OTLP exporter is installed and the span is sampled or recorded); `None`
/// otherwise, so nothing is added to what is published.
pub fn current_traceparent() -> Option<String> {
    let span = Span::current();
    if span.is_disabled() {
        return None;
    }
    let cx = span.context();
    let sc = cx.span().span_context().clone();
    sc.is_valid().then(|| format!("00-{}-{}-{:02x}", sc.trace_id(), sc.span_id(), sc.trace_flags().to_u8()))
}

/// What [`kafka_process_span`] needs of a consumed record (the Kafka client stays in
/// `kafka/`: its instance fills this in).
#[derive(Debug, Clone, Copy)]
pub struct Consumed<'a> {
    /// Topic.
    pub topic: &'a str,
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
    /// Size of the value, in bytes.
    pub body_size: usize,
    /// The `traceparent` header's value, if it has one.
    pub traceparent: Option<&'a [u8]>,
}

/// The span of one record read from Kafka by the consumer group `group`: `process {topic}`,
/// a child of the producer's span its `traceparent` header names (a root span when it has
/// none). Entered while the record is processed; the asynchronous work it starts (model
/// calls) runs in it too.
pub fn kafka_process_span(m: Consumed<'_>, group: &str) -> Span {
    let topic = m.topic;
    let span = tracing::info_span!(
        target: TARGET,
        "process",
        otel.name = %format!("process {topic}"),
        otel.kind = "consumer",
        messaging.system = "kafka",
        messaging.operation.name = "process",
        "messaging.operation.type" = "process",
        messaging.destination.name = topic,
        messaging.destination.partition.id = %m.partition,
        messaging.kafka.offset = m.offset,
        messaging.consumer.group.name = group,
        messaging.message.body.size = m.body_size,
    );
    if span.is_disabled() {
        return span;
    }
    if let Some(cx) = m.traceparent.and_then(|v| std::str::from_utf8(v).ok()).and_then(parent_of) {
        let _ = span.set_parent(cx);
    }
    span
}

/// The span of one record read from a file or standard input in local mode:
/// `process {location}`, kind consumer, a root span.
pub fn local_process_span(location: &str, line: Option<u64>) -> Span {
    tracing::info_span!(
        target: TARGET,
        "process",
        otel.name = %format!("process {location}"),
        otel.kind = "consumer",
        messaging.operation.name = "process",
        "messaging.operation.type" = "process",
        messaging.destination.name = location,
        kafclaw.line = line,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_w3c_traceparent_and_refuses_a_broken_one() {
        let cx = parent_of("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01").expect("valid");
        let sc = cx.span().span_context().clone();
        assert_eq!(sc.trace_id().to_string(), "0af7651916cd43dd8448eb211c80319c");
        assert_eq!(sc.span_id().to_string(), "b7ad6b7169203331");
        assert!(sc.is_remote() && sc.is_sampled());
        for bad in [
            "",
            "00-00000000000000000000000000000000-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b71692033-01",
            "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        ] {
            assert!(parent_of(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn without_an_exporter_spans_are_off_and_nothing_is_propagated() {
        let span = local_process_span("in.jsonl", Some(1));
        assert!(span.is_disabled());
        let _in = span.enter();
        assert!(current_traceparent().is_none());
    }
}
