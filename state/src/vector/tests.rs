use super::*;

fn options(quantization: Quantization, exact_up_to: usize) -> VectorOptions {
    VectorOptions { quantization, exact_up_to, ..VectorOptions::default() }
}

/// i8 with f32 originals to re-rank by.
fn rescored(exact_up_to: usize) -> VectorOptions {
    VectorOptions { rescore: true, ..options(Quantization::I8, exact_up_to) }
}

/// Every store: exact and graph, f32, i8 and i8 rescored.
fn every_store() -> Vec<VectorOptions> {
    vec![
        options(Quantization::F32, 1000),
        options(Quantization::I8, 1000),
        rescored(1000),
        options(Quantization::F32, 0),
        options(Quantization::I8, 0),
        rescored(0),
    ]
}

#[test]
fn finds_what_was_added_and_forgets_what_was_removed() {
    for o in every_store() {
        let idx = VectorIndex::with_options(3, o.clone()).unwrap();
        assert_eq!(idx.is_exact(), o.exact_up_to > 0);
        idx.add(1, &[1.0, 0.0, 0.0]).unwrap();
        idx.add(2, &[0.0, 1.0, 0.0]).unwrap();
        idx.add(3, &[0.7, 0.7, 0.0]).unwrap();
        let hits = idx.search(&[1.0, 0.1, 0.0], 2).unwrap();
        assert_eq!(hits.iter().map(|h| h.0).collect::<Vec<_>>(), vec![1, 3], "{o:?}");
        assert!(hits[0].1 < 0.01 && hits[0].1 < hits[1].1, "cosine distances, nearest first: {hits:?}");
        idx.remove(1).unwrap();
        assert_eq!(idx.search(&[1.0, 0.1, 0.0], 1).unwrap()[0].0, 3, "{o:?}");
        idx.add(3, &[0.0, 0.0, 1.0]).unwrap();
        assert_eq!(idx.len(), 2, "adding a key again replaces it: {o:?}");
        assert_eq!(idx.search(&[0.0, 0.0, 1.0], 1).unwrap()[0].0, 3, "{o:?}");
        assert!(idx.add(4, &[1.0]).is_err());
        assert!(idx.search(&[1.0], 1).is_err());
    }
}

#[test]
fn grows_past_its_first_reservation() {
    for o in every_store() {
        let idx = VectorIndex::with_options(2, o).unwrap();
        for i in 0..5000u64 {
            let a = i as f32 / 5000.0 * std::f32::consts::PI;
            idx.add(i, &[a.cos(), a.sin()]).unwrap();
        }
        assert_eq!(idx.len(), 5000);
        assert!(!idx.is_exact(), "past exact_up_to the graph serves");
    }
}

/// Clustered unit-ish vectors (like sentence embeddings: topics, not uniform noise).
fn clustered(n: usize, dims: usize, rng: &mut u64) -> Vec<Vec<f32>> {
    let mut next = move || {
        *rng ^= *rng << 13;
        *rng ^= *rng >> 7;
        *rng ^= *rng << 17;
        (*rng >> 40) as f32 / (1u64 << 24) as f32 - 0.5
    };
    let centres: Vec<Vec<f32>> = (0..32).map(|_| (0..dims).map(|_| next()).collect()).collect();
    (0..n).map(|i| centres[i % centres.len()].iter().map(|c| c + 0.6 * next()).collect()).collect()
}

fn brute_force(vectors: &[Vec<f32>], q: &[f32], k: usize) -> Vec<u64> {
    let unit = normalized(q);
    let mut all: Vec<(u64, f32)> = vectors
        .iter()
        .enumerate()
        .map(|(i, v)| (i as u64, normalized(v).iter().zip(&unit).map(|(a, b)| a * b).sum()))
        .collect();
    all.sort_by(|a, b| b.1.total_cmp(&a.1));
    all[..k].iter().map(|h| h.0).collect()
}

#[test]
fn the_exact_scan_is_exact_and_the_graph_takes_over_past_the_threshold() {
    let mut rng = 0x9e37_79b9_7f4a_7c15;
    let vectors = clustered(1500, 48, &mut rng);
    let queries = clustered(40, 48, &mut rng);
    let idx = VectorIndex::with_options(48, options(Quantization::F32, 1000)).unwrap();
    for (i, v) in vectors[..1000].iter().enumerate() {
        idx.add(i as u64, v).unwrap();
    }
    assert!(idx.is_exact());
    for q in &queries {
        let got: Vec<u64> = idx.search(q, 10).unwrap().iter().map(|h| h.0).collect();
        assert_eq!(got, brute_force(&vectors[..1000], q, 10), "the exact scan returns the exact top 10, in order");
    }
    for (i, v) in vectors.iter().enumerate().skip(1000) {
        idx.add(i as u64, v).unwrap();
    }
    assert!(!idx.is_exact(), "1,500 vectors > exact_up_to = 1,000: the graph serves");
    assert_eq!(idx.len(), 1500, "every vector moved into the graph");
    let mut found = 0;
    for q in &queries {
        let truth = brute_force(&vectors, q, 10);
        found += idx.search(q, 10).unwrap().iter().filter(|h| truth.contains(&h.0)).count();
    }
    let recall = found as f64 / (queries.len() * 10) as f64;
    assert!(recall >= 0.95, "graph recall@10 = {recall}");
}

#[test]
fn i8_keeps_recall_on_clustered_vectors() {
    let mut rng = 0x2545_f491_4f6c_dd1d;
    let vectors = clustered(2000, 64, &mut rng);
    let queries = clustered(50, 64, &mut rng);
    for exact_up_to in [usize::MAX, 0] {
        let idx = VectorIndex::with_options(64, options(Quantization::I8, exact_up_to)).unwrap();
        for (i, v) in vectors.iter().enumerate() {
            idx.add(i as u64, v).unwrap();
        }
        let mut found = 0;
        for q in &queries {
            let truth = brute_force(&vectors, q, 10);
            let hits = idx.search(q, 10).unwrap();
            assert!(hits.windows(2).all(|w| w[0].1 <= w[1].1), "nearest first");
            found += hits.iter().filter(|h| truth.contains(&h.0)).count();
        }
        let recall = found as f64 / (queries.len() * 10) as f64;
        assert!(recall >= 0.9, "i8 recall@10 = {recall} (exact_up_to = {exact_up_to})");
    }
}

/// Rescoring re-ranks the i8 graph's candidates by the f32 originals: the distances are the
/// exact f32 cosine distances, the order exact among what the graph found, recall at least
/// the plain i8 graph's; removed and replaced vectors leave the originals too; below the
/// threshold the scan is exact f32 (no quantisation loss at all).
#[test]
fn rescoring_gives_exact_f32_distances_and_keeps_the_originals_in_step() {
    let mut rng = 0x1234_5678_9abc_def1;
    let vectors = clustered(2000, 64, &mut rng);
    let queries = clustered(50, 64, &mut rng);
    let small = VectorIndex::with_options(64, rescored(usize::MAX)).unwrap();
    for (i, v) in vectors[..500].iter().enumerate() {
        small.add(i as u64, v).unwrap();
    }
    for q in &queries {
        let got: Vec<u64> = small.search(q, 10).unwrap().iter().map(|h| h.0).collect();
        assert_eq!(got, brute_force(&vectors[..500], q, 10), "below the threshold: the exact f32 top 10, in order");
    }
    let recall = |options: VectorOptions| {
        let idx = VectorIndex::with_options(64, options).unwrap();
        for (i, v) in vectors.iter().enumerate() {
            idx.add(i as u64, v).unwrap();
        }
        let mut found = 0;
        for q in &queries {
            let truth = brute_force(&vectors, q, 10);
            let unit = normalized(q);
            let hits = idx.search(q, 10).unwrap();
            if idx.options().rescore {
                for (key, distance) in &hits {
                    let exact =
                        1.0 - normalized(&vectors[*key as usize]).iter().zip(&unit).map(|(a, b)| a * b).sum::<f32>();
                    assert!((distance - exact).abs() < 1e-4, "key {key}: distance {distance}, exact f32 {exact}");
                }
            }
            assert!(hits.windows(2).all(|w| w[0].1 <= w[1].1), "nearest first");
            found += hits.iter().filter(|h| truth.contains(&h.0)).count();
        }
        (found as f64 / (queries.len() * 10) as f64, idx)
    };
    let (plain, _) = recall(options(Quantization::I8, 1000));
    let (with_rescoring, idx) = recall(rescored(1000));
    assert!(!idx.is_exact());
    assert!(with_rescoring >= plain && with_rescoring >= 0.95, "recall@10 {with_rescoring}, plain i8 graph {plain}");
    // Remove a query's nearest vector, and move another: the answers follow.
    let q = &queries[0];
    let first = idx.search(q, 1).unwrap()[0].0;
    idx.remove(first).unwrap();
    assert!(idx.search(q, 10).unwrap().iter().all(|h| h.0 != first), "a removed key is never returned");
    idx.add(first, &vectors[1].iter().map(|x| -x).collect::<Vec<f32>>()).unwrap();
    assert_eq!(idx.search(&vectors[1].iter().map(|x| -x).collect::<Vec<f32>>(), 1).unwrap()[0].0, first);
    assert_eq!(idx.len(), 2000);
}

#[test]
fn ef_search_grows_with_the_index() {
    assert!(expansion_for(1_000) <= expansion_for(100_000));
    assert!(expansion_for(100_000) <= expansion_for(1_000_000));
    assert!(expansion_for(0) >= 10, "at least k = 10 candidates");
}
