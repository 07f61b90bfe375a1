//! Filter evaluation: the `filter` operator's CEL condition on one decoded ~1 KB envelope,
//! as the runtime runs it per record. Throughput unit: records (envelopes) evaluated per second.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use kafclaw_operators::{Envelope, Record, lang::expr::Expr};
use std::hint::black_box;

fn filter(c: &mut Criterion) {
    let record = Record::detached(Envelope::decode(&kafclaw_bench::envelope_1kb()).unwrap());
    let mut g = c.benchmark_group("filter_eval");
    g.throughput(Throughput::Elements(1));
    for (name, source) in [
        // The end-to-end benchmark's condition: one payload field, arithmetic.
        ("payload_int_mod", "payload.priority % 2 == 1"),
        // Envelope fields only (no payload access).
        ("type_and_sender", r#"type == "request" && sender_id.startsWith("support-")"#),
        // A payload string and list.
        ("payload_string_and_list", r#"payload.description.contains("502") && "p1" in payload.tags"#),
    ] {
        let expr = Expr::compile(source).unwrap();
        assert!(expr.eval_bool(&record).unwrap(), "{source}");
        g.bench_function(name, |b| b.iter(|| black_box(expr.eval_bool(black_box(&record)).unwrap())));
    }
    g.finish();
}

criterion_group!(benches, filter);
criterion_main!(benches);
