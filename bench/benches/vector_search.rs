//! Vector search micro-benchmark on the index the memory operators use (`VectorIndex` with its
//! default options: the exact scan at 1,000 vectors, the HNSW graph at 10,000): top-10 queries
//! over random 384-d vectors (the hard case for HNSW: no clusters to exploit).
//! Throughput unit: queries per second. The real-embedding benchmark, with recall and build
//! time, is `bench/src/bin/vectors.rs`.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use kafclaw_state::VectorIndex;
use std::hint::black_box;

const DIMS: usize = 384;

fn vector(rng: &mut fastrand::Rng) -> Vec<f32> {
    (0..DIMS).map(|_| rng.f32() * 2.0 - 1.0).collect()
}

fn search(c: &mut Criterion) {
    let mut rng = fastrand::Rng::with_seed(7);
    let mut g = c.benchmark_group("vector_search_top10");
    g.throughput(Throughput::Elements(1));
    g.sample_size(30);
    for size in [1_000u64, 10_000] {
        let index = VectorIndex::new(DIMS).unwrap();
        for key in 0..size {
            index.add(key, &vector(&mut rng)).unwrap();
        }
        let queries: Vec<Vec<f32>> = (0..256).map(|_| vector(&mut rng)).collect();
        let mut q = 0;
        g.bench_function(format!("{size}_vectors_384d"), |b| {
            b.iter(|| {
                q = (q + 1) % queries.len();
                black_box(index.search(black_box(&queries[q]), 10).unwrap())
            })
        });
    }
    g.finish();
}

criterion_group!(benches, search);
criterion_main!(benches);
