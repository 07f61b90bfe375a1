//! Vector search quality of the memory index (`kafclaw_state::VectorIndex` with the options
//! `memory-index` uses): recall@10 against exact brute-force cosine search.
//!
//! - Always: 10,000 items embedded by the local (hashing) embedder: the exact scan (f32 below
//!   its size, i8) and the HNSW graph past it.
//! - With the real corpus (`bench/corpus/make-corpus.sh`: all-MiniLM-L6-v2 embeddings of
//!   English sentences, under $KAFCLAW_CACHE/corpus): the first 10,000 sentences and 200
//!   held-out queries; skipped, with the reason printed, when the corpus is not there.

use std::path::PathBuf;

use kafclaw_agent::memory::{MemoryIndexConfig, SharedIndex};
use kafclaw_agent::model::embed::LocalEmbedder;
use kafclaw_state::VectorIndex;
use kafclaw_state::vector::{Quantization, VectorOptions};

fn text(rng: &mut fastrand::Rng, vocab: &[String]) -> String {
    let n = rng.usize(6..16);
    (0..n).map(|_| vocab[rng.usize(..vocab.len())].as_str()).collect::<Vec<_>>().join(" ")
}

/// recall@10 of `options` over `items`, for `queries`, against brute force.
fn recall(options: VectorOptions, items: &[Vec<f32>], queries: &[Vec<f32>]) -> (f64, bool) {
    let index = VectorIndex::with_options(items[0].len(), options).unwrap();
    for (i, v) in items.iter().enumerate() {
        index.add(i as u64, v).unwrap();
    }
    assert_eq!(index.len(), items.len());
    let unit = |v: &[f32]| {
        let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        v.iter().map(|x| x / n).collect::<Vec<f32>>()
    };
    let items: Vec<Vec<f32>> = items.iter().map(|v| unit(v)).collect();
    let mut found = 0;
    for q in queries {
        let q = unit(q);
        let mut exact: Vec<(usize, f32)> =
            items.iter().enumerate().map(|(i, v)| (i, v.iter().zip(&q).map(|(a, b)| a * b).sum())).collect();
        exact.sort_by(|a, b| b.1.total_cmp(&a.1));
        let truth: std::collections::HashSet<u64> = exact[..10].iter().map(|(i, _)| *i as u64).collect();
        let got = index.search(&q, 10).unwrap();
        assert!(got.windows(2).all(|w| w[0].1 <= w[1].1), "nearest first");
        found += got.iter().filter(|(k, _)| truth.contains(k)).count();
    }
    (found as f64 / (queries.len() * 10) as f64, index.is_exact())
}

/// The options a `memory-index` with no settings uses, and with `quantization = "i8"`.
fn operator_options(extra: &str) -> VectorOptions {
    let config: MemoryIndexConfig = toml::from_str(extra).unwrap();
    config.vector_options()
}

#[test]
fn recall_at_10_of_the_hashing_embedder_items() {
    const ITEMS: usize = 10_000;
    const QUERIES: usize = 100;
    let mut rng = fastrand::Rng::with_seed(7);
    let vocab: Vec<String> = (0..3000).map(|_| (0..rng.usize(3..9)).map(|_| rng.lowercase()).collect()).collect();
    let e = LocalEmbedder::default();
    let items: Vec<Vec<f32>> = (0..ITEMS).map(|_| e.embed(&text(&mut rng, &vocab))).collect();
    let queries: Vec<Vec<f32>> = (0..QUERIES).map(|_| e.embed(&text(&mut rng, &vocab))).collect();
    // Below exact_up_to (20,000 for f32): the exact scan, so the exact top 10.
    let (r, exact) = recall(operator_options(""), &items[..5_000], &queries);
    eprintln!("hashing embedder, 5,000 items, f32 (default: exact scan): recall@10 = {r:.4}");
    assert!(exact && r >= 0.999, "exact = {exact}, recall@10 = {r}");
    // i8 scans exactly up to 40,000 items: only quantisation loses recall.
    let (r, exact) = recall(operator_options(r#"quantization = "i8""#), &items, &queries);
    eprintln!("hashing embedder, {ITEMS} items, i8 (default: exact scan): recall@10 = {r:.4}");
    assert!(exact && r >= 0.9, "exact = {exact}, i8 recall@10 = {r}");
    // The default graph (exact_up_to = 0 forces it): near-random vectors need its wide search.
    let (r, exact) = recall(operator_options("exact_up_to = 0"), &items, &queries);
    eprintln!("hashing embedder, {ITEMS} items, f32 default graph: recall@10 = {r:.4}");
    assert!(!exact && r >= 0.9, "exact = {exact}, recall@10 = {r}");
}

fn corpus() -> PathBuf {
    std::env::var_os("KAFCLAW_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/kafclaw"))
        .join("corpus")
}

/// The first `n` vectors of a KCVEC001 file (bench/corpus/make_corpus.py).
fn read_vec(path: &std::path::Path, n: usize) -> Vec<Vec<f32>> {
    let bytes = std::fs::read(path).unwrap();
    assert_eq!(&bytes[..8], b"KCVEC001", "{}", path.display());
    let count = u32::from_le_bytes(bytes[8..12].try_into().unwrap()) as usize;
    let dims = u32::from_le_bytes(bytes[12..16].try_into().unwrap()) as usize;
    let floats: Vec<f32> = bytes[16..]
        .chunks_exact(4)
        .take(n.min(count) * dims)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    floats.chunks_exact(dims).map(<[f32]>::to_vec).collect()
}

#[test]
fn recall_at_10_on_minilm_sentence_embeddings_is_at_least_0_99() {
    let dir = corpus();
    let (base, queries) = (dir.join("minilm-base.vec"), dir.join("minilm-queries.vec"));
    if !base.exists() || !queries.exists() {
        eprintln!(
            "SKIPPED: no real-embedding corpus at {} (run bench/corpus/make-corpus.sh); the hashing-embedder test covers the index",
            dir.display()
        );
        return;
    }
    let items = read_vec(&base, 10_000);
    let queries = read_vec(&queries, 200);
    assert_eq!(items.len(), 10_000, "the corpus holds at least 10,000 sentences");
    let (r, exact) = recall(operator_options("exact_up_to = 0\nef_search = 64"), &items, &queries);
    eprintln!("all-MiniLM-L6-v2, 10,000 sentences, f32 graph, ef_search = 64: recall@10 = {r:.4}");
    assert!(!exact);
    assert!(r >= 0.99, "recall@10 = {r}");
    let (r, _) = recall(operator_options(r#"quantization = "i8""#), &items, &queries);
    eprintln!("all-MiniLM-L6-v2, 10,000 sentences, i8: recall@10 = {r:.4}");
    assert!(r >= 0.95, "i8 recall@10 = {r}");
    // The i8 graph's candidates re-ranked by the f32 originals: f32's recall again.
    let rescored = operator_options("quantization = \"i8\"\nrescore = true\nexact_up_to = 0\nef_search = 64");
    assert!(rescored.rescore);
    let (r, exact) = recall(rescored, &items, &queries);
    eprintln!("all-MiniLM-L6-v2, 10,000 sentences, i8 graph rescored by f32, ef_search = 64: recall@10 = {r:.4}");
    assert!(!exact);
    assert!(r >= 0.99, "rescored i8 recall@10 = {r}");
    let exact_scan = VectorOptions { quantization: Quantization::F32, exact_up_to: usize::MAX, ..Default::default() };
    let (r, exact) = recall(exact_scan, &items, &queries);
    assert!(exact);
    assert!(r >= 0.999, "the exact scan is exact: recall@10 = {r}");
}

#[test]
fn a_memory_index_takes_its_vector_options_from_its_config() {
    let o = operator_options("quantization = \"i8\"\nexact_up_to = 100\nef_search = 80");
    assert_eq!((o.quantization, o.exact_up_to, o.expansion_search), (Quantization::I8, 100, Some(80)));
    assert!(!o.rescore, "no rescoring unless asked");
    let rescored = operator_options("quantization = \"i8\"\nrescore = true");
    assert!(rescored.rescore);
    assert_eq!(rescored.exact_up_to, 20_000, "a rescored index scans f32 copies while small: f32's threshold");
    assert_eq!(operator_options("quantization = \"i8\"").exact_up_to, 40_000);
    assert!(toml::from_str::<MemoryIndexConfig>("quantization = \"f16\"").is_err(), "f32 or i8 only");
    assert!(toml::from_str::<MemoryIndexConfig>("ef = 3").is_err(), "unknown fields are refused");
    let shared = SharedIndex::with_options("remember", o);
    assert!(shared.is_empty());
}
