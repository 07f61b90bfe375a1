//! Vector search quality: 10,000 items embedded by the local embedder and indexed in usearch
//! (HNSW); for 100 queries, the index's top 10 must contain at least 95% of the exact top 10
//! found by brute force over the same vectors.

use kafclaw_agent::model::embed::LocalEmbedder;
use kafclaw_state::VectorIndex;

fn text(rng: &mut fastrand::Rng, vocab: &[String]) -> String {
    let n = rng.usize(6..16);
    (0..n).map(|_| vocab[rng.usize(..vocab.len())].as_str()).collect::<Vec<_>>().join(" ")
}

#[test]
fn recall_at_10_against_brute_force_is_at_least_0_95() {
    const ITEMS: usize = 10_000;
    const QUERIES: usize = 100;
    let mut rng = fastrand::Rng::with_seed(7);
    let vocab: Vec<String> = (0..3000).map(|_| (0..rng.usize(3..9)).map(|_| rng.lowercase()).collect()).collect();
    let e = LocalEmbedder::default();
    let vectors: Vec<Vec<f32>> = (0..ITEMS).map(|_| e.embed(&text(&mut rng, &vocab))).collect();
    let index = VectorIndex::new(e.dimensions()).unwrap();
    for (i, v) in vectors.iter().enumerate() {
        index.add(i as u64, v).unwrap();
    }
    assert_eq!(index.len(), ITEMS);
    let mut found = 0;
    for _ in 0..QUERIES {
        let q = e.embed(&text(&mut rng, &vocab));
        let mut exact: Vec<(usize, f32)> =
            vectors.iter().enumerate().map(|(i, v)| (i, v.iter().zip(&q).map(|(a, b)| a * b).sum())).collect();
        exact.sort_by(|a, b| b.1.total_cmp(&a.1));
        let truth: std::collections::HashSet<u64> = exact[..10].iter().map(|(i, _)| *i as u64).collect();
        let got = index.search(&q, 10).unwrap();
        found += got.iter().filter(|(k, _)| truth.contains(k)).count();
    }
    let recall = found as f64 / (QUERIES * 10) as f64;
    eprintln!("recall@10 over {QUERIES} queries, {ITEMS} items: {recall:.4}");
    assert!(recall >= 0.95, "recall@10 = {recall}");
}
