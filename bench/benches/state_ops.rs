//! State store operations on RocksDB (the runtime's backend): point reads of committed keys,
//! and sealing an epoch of writes (what a commit applies: one atomic write batch).
//! Throughput unit: keys read or written per second.

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use kafclaw_state::{Batch, RocksStore, StateStore, Write};
use std::hint::black_box;

const KEYS: u64 = 100_000;

fn key(i: u64) -> Vec<u8> {
    format!("key-{i:012}").into_bytes()
}

fn state(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let mut store = RocksStore::open(dir.path()).unwrap();
    store.open_table("counts").unwrap();
    let value = vec![7u8; 100];
    let writes = (0..KEYS)
        .map(|i| Write { table: "counts".into(), partition: (i % 6) as u32, key: key(i), value: Some(value.clone()) })
        .collect();
    store.apply(&Batch { writes, checkpoints: Vec::new() }).unwrap();

    let mut g = c.benchmark_group("state_rocksdb");
    g.throughput(Throughput::Elements(1));
    let mut i = 0u64;
    g.bench_function("get_hit_100b", |b| {
        b.iter(|| {
            i = (i + 7919) % KEYS;
            black_box(store.get("counts", (i % 6) as u32, &key(i)).unwrap().unwrap())
        })
    });
    g.bench_function("get_miss", |b| b.iter(|| black_box(store.get("counts", 0, b"absent").unwrap())));

    const BATCH: u64 = 1_000;
    g.throughput(Throughput::Elements(BATCH));
    let mut round = 0u64;
    g.bench_function("seal_epoch_1000_puts_100b", |b| {
        b.iter_batched(
            || {
                round += 1;
                let writes = (0..BATCH)
                    .map(|j| {
                        let i = (round * BATCH + j) % KEYS;
                        Write {
                            table: "counts".into(),
                            partition: (i % 6) as u32,
                            key: key(i),
                            value: Some(value.clone()),
                        }
                    })
                    .collect();
                Batch { writes, checkpoints: vec![("counts".into(), 0, round as i64)] }
            },
            |batch| store.apply(&batch).unwrap(),
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

criterion_group!(benches, state);
criterion_main!(benches);
