//! Envelope decode: simd-json (the runtime's decoder) vs serde_json, same visitor, same
//! checks, on a ~1 KB envelope. Throughput unit: bytes of JSON decoded per second.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use kafclaw_operators::Envelope;
use std::hint::black_box;

fn decode(c: &mut Criterion) {
    let input = kafclaw_bench::envelope_1kb();
    let mut g = c.benchmark_group("envelope_decode_1kb");
    g.throughput(Throughput::Bytes(input.len() as u64));
    let mut scratch = Vec::with_capacity(input.len());
    g.bench_function("simd_json", |b| {
        b.iter(|| {
            // The runtime decodes a copy so dead letters keep the original: measure that too.
            scratch.clear();
            scratch.extend_from_slice(black_box(&input));
            black_box(Envelope::decode(&mut scratch).unwrap())
        })
    });
    g.bench_function("serde_json", |b| b.iter(|| black_box(Envelope::decode_serde_json(black_box(&input)).unwrap())));
    g.finish();
}

criterion_group!(benches, decode);
criterion_main!(benches);
