//! Envelope decode on a ~1 KB envelope. Throughput unit: bytes of envelope JSON per second.
//!
//! - `typed_fields`: what the runtime does per record — every typed field read and checked
//!   (RFC 3339 timestamp, W3C ids, unknown fields kept), the payload checked to be well-formed
//!   JSON and kept as text (a filter or router never parses more).
//! - `typed_fields_and_one_payload_field`: the above plus one payload field read without
//!   building the rest (what a filter on `payload.priority` does).
//! - `typed_fields_and_whole_payload`: the above plus the payload parsed into a tree (what an
//!   operator that reads arbitrary payload paths pays on first access).

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use kafclaw_operators::Envelope;
use std::hint::black_box;

fn decode(c: &mut Criterion) {
    let input = kafclaw_bench::envelope_1kb();
    let mut g = c.benchmark_group("envelope_decode_1kb");
    g.throughput(Throughput::Bytes(input.len() as u64));
    g.bench_function("typed_fields", |b| b.iter(|| black_box(Envelope::decode(black_box(&input)).unwrap())));
    let wanted = ["priority".to_owned()];
    g.bench_function("typed_fields_and_one_payload_field", |b| {
        b.iter(|| {
            let e = Envelope::decode(black_box(&input)).unwrap();
            black_box(e.payload.fields(&wanted, |v| v.as_i64()).len())
        })
    });
    g.bench_function("typed_fields_and_whole_payload", |b| {
        b.iter(|| {
            let e = Envelope::decode(black_box(&input)).unwrap();
            black_box(e.payload.as_object().map(|m| m.len()))
        })
    });
    g.finish();
}

criterion_group!(benches, decode);
criterion_main!(benches);
