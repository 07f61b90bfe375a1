//! The engine's work on one envelope as a task does it — decode, origin, the CEL filter
//! `payload.n % 2 == 0`, and for the records kept the stamping and the encode — over a JSON
//! Lines file, without Kafka: `hot_path <file.jsonl> [repeat]` prints ns per envelope. Run
//! under `valgrind --tool=callgrind` for instructions per envelope (docs/benchmarks.md, "Cost
//! per envelope"). The kafclaw binary's allocator (mimalloc) is not used here.
use kafclaw_operators::envelope::{ENVELOPE_VERSION, derive_span_id, deterministic_id};
use kafclaw_operators::lang::expr::Expr;
use kafclaw_operators::{Envelope, Origin, Record};
use std::sync::Arc;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let text = std::fs::read(&args[1]).unwrap();
    let repeat: usize = args.get(2).map_or(1, |r| r.parse().unwrap());
    let lines: Vec<&[u8]> = text.split(|b| *b == b'\n').filter(|l| !l.is_empty()).collect();
    let expr = Expr::compile("payload.n % 2 == 0").unwrap();
    let location: Arc<str> = "in.jsonl".into();
    let source: Arc<str> = "in".into();
    let mut buf = Vec::with_capacity(4096);
    let mut kept = 0usize;
    let mut bytes = 0usize;
    let t = std::time::Instant::now();
    for _ in 0..repeat {
        for (i, line) in lines.iter().enumerate() {
            let env = Envelope::decode(line).unwrap();
            let origin = Arc::new(Origin {
                source: source.clone(),
                location: location.clone(),
                partition: 0,
                offset: i as i64,
                line: Some(i as u64 + 1),
                input_id: env.id.clone(),
                input_span_id: env.span_id.clone(),
                trace_id: env.trace_id.clone().unwrap_or_default(),
            });
            let record = Record { envelope: env, origin };
            if !expr.eval_bool(&record).unwrap() {
                continue;
            }
            kept += 1;
            let o = record.origin.clone();
            let mut env = record.envelope;
            let id = deterministic_id(&o.location, o.partition, o.offset, "out", 0);
            env.span_id = Some(derive_span_id(&id));
            env.parent_span_id = o.input_span_id.clone();
            env.trace_id = Some(o.trace_id.clone());
            env.causation_id = o.input_id.clone();
            env.v = Some(ENVELOPE_VERSION);
            env.id = Some(id);
            buf.clear();
            env.encode_into(&mut buf);
            bytes += buf.len();
        }
    }
    let n = lines.len() * repeat;
    let e = t.elapsed();
    println!("{n} envelopes, {kept} kept, {bytes} bytes out: {:.0} ns/envelope", e.as_nanos() as f64 / n as f64);
}
