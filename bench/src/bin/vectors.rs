//! Vector search on real sentence embeddings: the memory index (`kafclaw_state::VectorIndex`,
//! what `memory-index` / `memory-search` run on) over all-MiniLM-L6-v2 vectors of real English
//! sentences made by `bench/corpus/make-corpus.sh`, and over random vectors for comparison.
//!
//! For each index size: build time (adding the vectors one by one, as the operator does),
//! queries/s per core (one thread, queries / the thread's CPU time; the wall-clock rate
//! beside it), recall@10 against exact search (brute force in f64 over the same vectors),
//! for the exact scan and the HNSW graph, f32, i8 and i8 rescored by f32 originals. `--sweep`
//! adds the graphs' `ef_search` sweep at each size, `--tuning` the sweep at small sizes
//! (exact scan against graph); `--stores`, `--connectivity`, `--ef-construction` and
//! `--ef-search` choose what runs.
//!
//! Run: `bench/corpus/make-corpus.sh && cargo build --release -p kafclaw-bench &&
//! $CARGO_TARGET_DIR/release/vectors --write-doc` (rewrites the `vectors` section of
//! docs/benchmarks.md).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use kafclaw_state::VectorIndex;
use kafclaw_state::vector::{Quantization, VectorOptions, expansion_for};

const MAGIC: &[u8; 8] = b"KCVEC001";
const K: usize = 10;

#[derive(Parser)]
#[command(about = "Vector search benchmark: real all-MiniLM-L6-v2 embeddings and random vectors")]
struct Args {
    /// The corpus folder (made by bench/corpus/make-corpus.sh); default $KAFCLAW_CACHE/corpus
    /// or ~/.cache/kafclaw/corpus.
    #[arg(long)]
    corpus: Option<PathBuf>,
    /// Index sizes for the real embeddings (each at most the corpus's).
    #[arg(long, value_delimiter = ',', default_value = "10000,100000")]
    sizes: Vec<usize>,
    /// Index sizes for random vectors (384-d, uniform in [-1, 1]).
    #[arg(long, value_delimiter = ',', default_value = "10000")]
    random_sizes: Vec<usize>,
    /// Queries per run (held-out sentences; for random vectors, random too).
    #[arg(long, default_value_t = 1000)]
    queries: usize,
    /// Also sweep the graphs' ef_search at each size.
    #[arg(long)]
    sweep: bool,
    /// Also the tuning runs: the sweep at small sizes (1 k to 16 k), exact scan against graph.
    #[arg(long)]
    tuning: bool,
    /// Stores to measure, comma separated: exact-f32, exact-i8, graph-f32, graph-i8,
    /// graph-i8-rescored (default: all).
    #[arg(long, value_delimiter = ',')]
    stores: Vec<String>,
    /// The graphs' connectivity (HNSW M); default: the index's default.
    #[arg(long)]
    connectivity: Option<usize>,
    /// The graphs' ef_construction; default: the index's default.
    #[arg(long)]
    ef_construction: Option<usize>,
    /// The graphs' ef_search: one value for every size, or one per size of `--sizes` (then
    /// the random sizes take the last); default: by size, as the index chooses.
    #[arg(long, value_delimiter = ',')]
    ef_search: Vec<usize>,
    /// Rewrite the `vectors` section of this file (docs/benchmarks.md) with the results.
    #[arg(long, num_args = 0..=1, default_missing_value = "docs/benchmarks.md")]
    write_doc: Option<PathBuf>,
}

/// Row-major vectors.
struct Vectors {
    dims: usize,
    data: Vec<f32>,
}

impl Vectors {
    fn len(&self) -> usize {
        self.data.len() / self.dims
    }
    fn get(&self, i: usize) -> &[f32] {
        &self.data[i * self.dims..(i + 1) * self.dims]
    }
    fn prefix(&self, n: usize) -> Vectors {
        Vectors { dims: self.dims, data: self.data[..n * self.dims].to_vec() }
    }
}

fn read_vec(path: &Path) -> anyhow::Result<Vectors> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    if bytes.len() < 16 || &bytes[..8] != MAGIC {
        bail!("{}: not a KCVEC001 file (see bench/corpus/make_corpus.py)", path.display());
    }
    let count = u32::from_le_bytes(bytes[8..12].try_into()?) as usize;
    let dims = u32::from_le_bytes(bytes[12..16].try_into()?) as usize;
    let body = &bytes[16..];
    if body.len() != count * dims * 4 {
        bail!("{}: header says {count} x {dims} f32, body has {} bytes", path.display(), body.len());
    }
    let data = body.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
    Ok(Vectors { dims, data })
}

fn random(n: usize, dims: usize, seed: u64) -> Vectors {
    let mut s = seed | 1;
    let data = (0..n * dims)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 40) as f32 / (1u64 << 23) as f32 - 1.0
        })
        .collect();
    Vectors { dims, data }
}

/// The exact top-k of every query: f64 brute force, on every core.
fn truth(base: &Vectors, queries: &Vectors) -> Vec<Vec<usize>> {
    let unit = |v: &[f32]| {
        let n = v.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt().max(f64::MIN_POSITIVE);
        v.iter().map(|x| f64::from(*x) / n).collect::<Vec<f64>>()
    };
    let base_units: Vec<Vec<f64>> = (0..base.len()).map(|i| unit(base.get(i))).collect();
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let per = queries.len().div_ceil(threads);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let base_units = &base_units;
                s.spawn(move || {
                    (t * per..((t + 1) * per).min(queries.len()))
                        .map(|q| {
                            let q = unit(queries.get(q));
                            let mut scored: Vec<(usize, f64)> = base_units
                                .iter()
                                .enumerate()
                                .map(|(i, b)| (i, b.iter().zip(&q).map(|(x, y)| x * y).sum()))
                                .collect();
                            scored.select_nth_unstable_by(K - 1, |a, b| b.1.total_cmp(&a.1));
                            scored[..K].iter().map(|h| h.0).collect()
                        })
                        .collect::<Vec<Vec<usize>>>()
                })
            })
            .collect();
        handles.into_iter().flat_map(|h| h.join().expect("truth thread")).collect()
    })
}

/// This thread's CPU time so far (Linux schedstat: nanoseconds on a CPU).
fn thread_cpu() -> Duration {
    let ns = std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|f| f.parse::<u64>().ok()))
        .unwrap_or(0);
    Duration::from_nanos(ns)
}

/// One measured configuration.
struct Run {
    data: &'static str,
    size: usize,
    store: String,
    build: Duration,
    per_core: f64,
    wall: f64,
    recall: f64,
}

fn build(base: &Vectors, options: VectorOptions) -> anyhow::Result<(VectorIndex, Duration)> {
    let index = VectorIndex::with_options(base.dims, options)?;
    let started = Instant::now();
    for i in 0..base.len() {
        index.add(i as u64, base.get(i))?;
    }
    Ok((index, started.elapsed()))
}

/// Searches every query (repeating the set for at least a second): (per-core q/s, wall q/s, recall@10).
fn measure(index: &VectorIndex, queries: &Vectors, truth: &[Vec<usize>]) -> anyhow::Result<(f64, f64, f64)> {
    let mut found = 0;
    for (q, t) in truth.iter().enumerate() {
        let hits = index.search(queries.get(q), K)?;
        found += hits.iter().filter(|h| t.contains(&(h.0 as usize))).count();
    }
    let recall = found as f64 / (truth.len() * K) as f64;
    let (cpu0, wall0) = (thread_cpu(), Instant::now());
    let mut done = 0usize;
    while done < queries.len() || wall0.elapsed() < Duration::from_secs(1) {
        std::hint::black_box(index.search(queries.get(done % queries.len()), K)?);
        done += 1;
    }
    let (cpu, wall) = (thread_cpu() - cpu0, wall0.elapsed());
    let per_core = if cpu.is_zero() { f64::NAN } else { done as f64 / cpu.as_secs_f64() };
    Ok((per_core, done as f64 / wall.as_secs_f64(), recall))
}

fn store_name(o: &VectorOptions, size: usize) -> String {
    let q = match o.quantization {
        Quantization::F32 => "f32",
        Quantization::I8 => "i8",
    };
    let q = if o.rescore { format!("{q} + f32 rescoring") } else { q.to_owned() };
    if size <= o.exact_up_to {
        format!("exact scan, {q}")
    } else {
        let ef = o.expansion_search.unwrap_or_else(|| expansion_for(size));
        format!("HNSW {q}, M = {}, ef_construction = {}, ef_search = {ef}", o.connectivity, o.expansion_add)
    }
}

fn run_set(
    data: &'static str,
    base: &Vectors,
    queries: &Vectors,
    sizes: &[usize],
    set: &Args,
    sweep: bool,
    runs: &mut Vec<Run>,
) -> anyhow::Result<()> {
    for (nth, &size) in sizes.iter().enumerate() {
        let ef_search = set.ef_search.get(nth).or(set.ef_search.last()).copied();
        if size > base.len() {
            eprintln!("{data}: {size} vectors asked for, the corpus has {}: skipped", base.len());
            continue;
        }
        let base = base.prefix(size);
        eprintln!("{data}, {size} vectors: exact top-{K} of {} queries (brute force)...", queries.len());
        let truth = truth(&base, queries);
        let exact = |quantization| VectorOptions { quantization, exact_up_to: usize::MAX, ..VectorOptions::default() };
        let graph = |quantization| {
            let d = VectorOptions::default();
            VectorOptions {
                quantization,
                exact_up_to: 0,
                connectivity: set.connectivity.unwrap_or(d.connectivity),
                expansion_add: set.ef_construction.unwrap_or(d.expansion_add),
                expansion_search: ef_search,
                ..d
            }
        };
        let configs = [
            ("exact-f32", exact(Quantization::F32)),
            ("exact-i8", exact(Quantization::I8)),
            ("graph-f32", graph(Quantization::F32)),
            ("graph-i8", graph(Quantization::I8)),
            ("graph-i8-rescored", VectorOptions { rescore: true, ..graph(Quantization::I8) }),
        ];
        let chosen =
            configs.into_iter().filter(|(name, _)| set.stores.is_empty() || set.stores.iter().any(|s| s == name));
        for (_, options) in chosen {
            let name = store_name(&options, size);
            eprintln!("  {name}: building...");
            let (index, took) = build(&base, options.clone())?;
            let (per_core, wall, recall) = measure(&index, queries, &truth)?;
            eprintln!(
                "  {name}: built in {took:.2?}, {per_core:.0} q/s per core ({wall:.0} wall), recall@10 {recall:.4}"
            );
            if sweep && options.exact_up_to == 0 {
                for ef in [16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512] {
                    index.set_expansion_search(ef);
                    let (per_core, wall, recall) = measure(&index, queries, &truth)?;
                    eprintln!(
                        "    sweep ef_search = {ef}: {per_core:.0} q/s per core ({wall:.0} wall), recall@10 {recall:.4}"
                    );
                }
            }
            runs.push(Run { data, size, store: name, build: took, per_core, wall, recall });
        }
    }
    Ok(())
}

fn table(runs: &[Run]) -> String {
    let mut out = String::from(
        "| vectors | index size | store | build | queries/s per core | queries/s (wall) | recall@10 |\n|---|---|---|---|---|---|---|\n",
    );
    for r in runs {
        out += &format!(
            "| {} | {} | {} | {:.2} s | {:.0} | {:.0} | {:.4} |\n",
            r.data,
            r.size,
            r.store,
            r.build.as_secs_f64(),
            r.per_core,
            r.wall,
            r.recall
        );
    }
    out
}

fn write_doc(path: &Path, body: &str) -> anyhow::Result<()> {
    let (begin, end) = ("<!-- vectors:begin -->", "<!-- vectors:end -->");
    let doc = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let (Some(b), Some(e)) = (doc.find(begin), doc.find(end)) else {
        bail!("{}: no `{begin}` … `{end}` section", path.display());
    };
    let new = format!("{}{begin}\n{body}{}", &doc[..b], &doc[e..]);
    std::fs::write(path, new).with_context(|| format!("writing {}", path.display()))?;
    eprintln!("rewrote the vectors section of {}", path.display());
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let corpus = args.corpus.clone().unwrap_or_else(|| {
        let cache = std::env::var_os("KAFCLAW_CACHE")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/kafclaw"));
        cache.join("corpus")
    });
    let mut runs = Vec::new();
    let base_path = corpus.join("minilm-base.vec");
    let mut corpus_note = String::new();
    if base_path.exists() {
        let base = read_vec(&base_path)?;
        let all_queries = read_vec(&corpus.join("minilm-queries.vec"))?;
        let queries = all_queries.prefix(args.queries.min(all_queries.len()));
        eprintln!("corpus: {} vectors of {} dimensions, {} held-out queries", base.len(), base.dims, queries.len());
        corpus_note = format!(
            "all-MiniLM-L6-v2 embeddings of English sentences (WordNet glosses and examples, fortune cookies; `bench/corpus/make-corpus.sh`), {} held-out sentences as queries",
            queries.len()
        );
        if args.tuning {
            let small: Vec<usize> =
                [1_000, 2_000, 4_000, 8_000, 16_000].into_iter().filter(|s| *s <= base.len()).collect();
            let mut tuning = Vec::new();
            run_set("tuning", &base, &queries, &small, &args, true, &mut tuning)?;
        }
        run_set("MiniLM", &base, &queries, &args.sizes, &args, args.sweep, &mut runs)?;
    } else {
        eprintln!("no corpus at {}: run bench/corpus/make-corpus.sh; random vectors only", base_path.display());
    }
    if !args.random_sizes.is_empty() {
        let most = args.random_sizes.iter().copied().max().unwrap_or(0);
        let base = random(most, 384, 7);
        let queries = random(args.queries, 384, 11);
        run_set("random", &base, &queries, &args.random_sizes, &args, args.sweep, &mut runs)?;
    }
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let body = format!(
        "`{}` ({} build, {cores} cores; one search thread; queries/s per core = queries / that thread's CPU time). Data: {}; random: uniform 384-d. Recall@10 against exact (f64 brute-force) cosine search; build = adding the vectors one by one, one thread.\n\n{}",
        std::env::args().collect::<Vec<_>>().join(" "),
        if cfg!(debug_assertions) { "debug" } else { "release" },
        if corpus_note.is_empty() { "no corpus (random vectors only)".to_owned() } else { corpus_note },
        table(&runs)
    );
    println!("{body}");
    if let Some(path) = &args.write_doc {
        write_doc(path, &body)?;
    }
    Ok(())
}
