//! Memory: `memory-index` keeps memory items in a changelogged table and in a vector index
//! (usearch HNSW, via the state crate); `memory-search` finds the items nearest to a record's
//! query text.
//!
//! ```toml
//! [operators.remember]
//! type = "memory-index"
//! inputs = ["memories"]
//! text = 'payload.content'
//!
//! [operators.recall]
//! type = "memory-search"
//! inputs = ["requests"]
//! index = "remember"              # the memory-index operator whose items are searched
//! query = 'payload.description'
//! k = 5
//! into = "payload.memories"
//! ```
//! Items are keyed by their envelope id (or input coordinates); indexing the same id again
//! replaces it. The table `<memory-index>.items` is state like any other (changelogged,
//! restored, rebuilt by replay); the vector index is rebuilt from it when a task starts, so
//! restores and replays give the same answers. One index per instance serves every task of
//! the instance. Vectors come from the built-in local embedder ([`embed`]), or, with
//! `vector = 'payload.embedding'`, from the record itself: an upstream `embed` operator
//! ([`embed_op`]) asked a model's `/v1/embeddings` endpoint once, where the item was written.
//! The index takes the dimensions of its first vector; every later one must match.
//! Up to `exact_up_to` items (default 20,000 for f32 vectors, 40,000 for i8) a search scans
//! every vector exactly; past that the index builds an HNSW graph once (M = 32) and searches
//! it with `ef_search` 256 (512 past 200,000 items), which keeps recall even for the hashing
//! embedder's near-random vectors; `quantization = "i8"` stores vectors in a quarter of the
//! memory, and `rescore = true` beside it keeps f32 copies to re-rank the i8 graph's
//! candidates (figures: docs/benchmarks.md, "Vector search").
//!
//! Conversation memory ([`conversation`]): `conversation` keeps a bounded, summarised history
//! per conversation; `conversation-context` puts it on a request for the model.

pub mod conversation;
pub mod embed_op;

use std::collections::HashMap;
use std::sync::{Arc, OnceLock, RwLock};

use kafclaw_state::VectorIndex;
use kafclaw_state::vector::{Quantization, VectorOptions, exact_up_to_for};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::Digest;
use toml::Spanned;

use crate::model::embed::LocalEmbedder;
use kafclaw_operators::api::config::ConfigError;
use kafclaw_operators::api::config::Errors;
use kafclaw_operators::api::kind::{Built, Kind};
use kafclaw_operators::api::operator::{Cause, Emit, Failure, Port, SyncOperator};
use kafclaw_operators::api::record::Record;
use kafclaw_operators::api::resources::Resources;
use kafclaw_operators::api::state::{StateAccess, TableSpec};
use kafclaw_operators::lang::expr::Expr;
use kafclaw_operators::lang::expr::compile_expr;
use kafclaw_operators::lang::path::FieldPath;
use kafclaw_operators::lang::path::emit_set;

/// One instance's index of one `memory-index` operator, shared by its tasks and by the
/// `memory-search` operators that name it.
#[derive(Debug)]
pub struct SharedIndex {
    /// The `memory-index` operator.
    pub name: String,
    embedder: LocalEmbedder,
    options: VectorOptions,
    index: OnceLock<Result<Arc<VectorIndex>, String>>,
    items: RwLock<HashMap<u64, Item>>,
}

impl SharedIndex {
    /// A new, empty index with the default options.
    pub fn new(name: &str) -> Arc<Self> {
        Self::with_options(name, VectorOptions::default())
    }

    /// A new, empty index.
    pub fn with_options(name: &str, options: VectorOptions) -> Arc<Self> {
        Arc::new(Self {
            name: name.to_owned(),
            embedder: LocalEmbedder::default(),
            options,
            index: OnceLock::new(),
            items: RwLock::new(HashMap::new()),
        })
    }

    /// Indexes an item (replacing one with the same id): its own vector when it carries one
    /// (from an `embed` operator), else the local embedder's.
    pub fn add(&self, item: Item) -> Result<(), String> {
        let key = item_key(&item.id);
        let local;
        let vector = match &item.vector {
            Some(v) => v,
            None => {
                local = self.embedder.embed(&item.text);
                &local
            }
        };
        self.index(vector.len())?.add(key, vector).map_err(|e| e.to_string())?;
        self.items.write().unwrap_or_else(|p| p.into_inner()).insert(key, item);
        Ok(())
    }

    /// The `k` items nearest to `text` (embedded by the local embedder), with their scores
    /// (cosine similarity), best first.
    pub fn search(&self, text: &str, k: usize) -> Result<Vec<(Item, f32)>, String> {
        self.search_vector(&self.embedder.embed(text), k)
    }

    /// The `k` items nearest to `vector`, with their scores, best first (none while the
    /// index is empty).
    pub fn search_vector(&self, vector: &[f32], k: usize) -> Result<Vec<(Item, f32)>, String> {
        if self.index.get().is_none() {
            return Ok(Vec::new());
        }
        let hits = self.index(vector.len())?.search(vector, k).map_err(|e| e.to_string())?;
        let items = self.items.read().unwrap_or_else(|p| p.into_inner());
        Ok(hits.into_iter().filter_map(|(key, d)| items.get(&key).map(|i| (i.clone(), 1.0 - d))).collect())
    }

    /// How many items are indexed.
    pub fn len(&self) -> usize {
        self.items.read().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The vector index, created on first use with the first vector's dimensions; a vector of
    /// other dimensions (a different embedder) is an error naming both.
    fn index(&self, dimensions: usize) -> Result<Arc<VectorIndex>, String> {
        let index = self
            .index
            .get_or_init(|| {
                VectorIndex::with_options(dimensions, self.options.clone()).map(Arc::new).map_err(|e| e.to_string())
            })
            .clone()?;
        if index.dimensions() != dimensions {
            return Err(format!(
                "memory `{}` holds vectors of {} dimensions, this one has {dimensions}: every item and query of one index must come from the same embedder",
                self.name,
                index.dimensions()
            ));
        }
        Ok(index)
    }
}

/// The key of an item in the vector index.
pub fn item_key(id: &str) -> u64 {
    let d = sha2::Sha256::digest(id.as_bytes());
    u64::from_be_bytes(d[..8].try_into().expect("8 bytes"))
}

/// A stored item (the value of `<memory-index>.items`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Item {
    /// Its id.
    pub id: String,
    /// The indexed text.
    pub text: String,
    /// Who remembered it.
    pub sender_id: String,
    /// When.
    pub timestamp: String,
    /// Its vector, when an `embed` operator made it (else the local embedder's is used).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vector: Option<Vec<f32>>,
}

/// Config half of `memory-index`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemoryIndexConfig {
    /// CEL expression giving the text to index.
    #[serde(default = "default_text")]
    pub text: Spanned<String>,
    /// CEL expression giving the item's vector (a list of numbers), e.g. `payload.embedding`
    /// from an upstream `embed` operator; without it, the built-in local embedder embeds
    /// `text`. The vector is stored with the item, so restores and replays call no model.
    #[serde(default)]
    pub vector: Option<Spanned<String>>,
    /// How the vector index stores vectors: `"f32"` (the default: exact values) or `"i8"`
    /// (a quarter of the memory, each vector scaled to ±127; a little lower recall, see
    /// docs/benchmarks.md, "Vector search").
    #[serde(default)]
    pub quantization: VectorQuantization,
    /// Up to this many items a search compares the query with every vector (exact, and
    /// faster than a graph at that size); past it the index builds an HNSW graph, once.
    /// 0: the graph from the first item. Default: 20,000 (f32, and i8 with `rescore`, whose
    /// scan reads the f32 copies) or 40,000 (i8), up to where the exact scan is no slower
    /// than the default graph (docs/benchmarks.md).
    #[serde(default)]
    pub exact_up_to: Option<usize>,
    /// The HNSW graph's `ef_search`: candidates kept while searching (higher finds more of
    /// the true nearest items, more slowly). Default: 256 (512 past 200,000 items), which the
    /// hashing embedder's near-random vectors need. Real sentence embeddings (all-MiniLM-L6-v2)
    /// reach recall@10 ≥ 0.99 with 64 up to 12,000 items, 96 up to 50,000 and 128 up to
    /// 200,000 (docs/benchmarks.md): set it lower for speed.
    #[serde(default)]
    pub ef_search: Option<Spanned<usize>>,
    /// With `quantization = "i8"`: also keep each item's vector as f32 (memory: 1.25× an f32
    /// index's instead of 0.25×), search exactly in f32 while the index is small, and re-rank
    /// the i8 graph's best 4 × k candidates (at least 40) by their exact cosine: recall close
    /// to f32's at close to the i8 graph's speed (docs/benchmarks.md, "Vector search").
    /// Rejected with `"f32"`, where it would change nothing.
    #[serde(default)]
    pub rescore: Option<Spanned<bool>>,
}

/// How a `memory-index` stores its vectors.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VectorQuantization {
    /// 32-bit floats.
    #[default]
    F32,
    /// 8-bit integers.
    I8,
}

fn default_text() -> Spanned<String> {
    Spanned::new(0..0, "payload.content".to_owned())
}

impl MemoryIndexConfig {
    /// The vector index's options.
    pub fn vector_options(&self) -> VectorOptions {
        let quantization = match self.quantization {
            VectorQuantization::F32 => Quantization::F32,
            VectorQuantization::I8 => Quantization::I8,
        };
        let rescore = self.rescore.as_ref().is_some_and(|r| *r.get_ref());
        // Rescored indexes scan their f32 originals while small: f32's threshold.
        let scanned = if rescore { Quantization::F32 } else { quantization };
        VectorOptions {
            quantization,
            exact_up_to: self.exact_up_to.unwrap_or_else(|| exact_up_to_for(scanned)),
            expansion_search: self.ef_search.as_ref().map(|ef| *ef.get_ref()),
            rescore,
            ..VectorOptions::default()
        }
    }

    /// The state table of node `node`: its items.
    fn state_table(node: &str) -> TableSpec {
        TableSpec::kept(format!("{node}.items"))
    }
}

impl Kind for MemoryIndexConfig {
    /// `<node>.items`.
    fn tables(&self, node: &str) -> Vec<TableSpec> {
        vec![Self::state_table(node)]
    }

    /// The instance's index, shared by the node's tasks and by the `memory-search` operators
    /// and `memory` tools that name the node.
    fn provides(&self, node: &str, resources: &mut Resources) {
        resources.insert(node, SharedIndex::with_options(node, self.vector_options()));
    }

    fn build(&self, node: &str, resources: &Resources) -> Result<Built, Vec<ConfigError>> {
        let mut errors = Errors::default();
        let text = errors.take(compile_expr(&self.text));
        let vector = match &self.vector {
            Some(v) => errors.take(compile_expr(v)).map(Some),
            None => Some(None),
        };
        if let Some(ef) = self.ef_search.as_ref().filter(|ef| *ef.get_ref() == 0) {
            errors.push(ConfigError::at(ef.span(), "`ef_search` = 0: the graph search needs at least 1 candidate"));
        }
        if let Some(r) = self.rescore.as_ref().filter(|r| *r.get_ref() && self.quantization == VectorQuantization::F32)
        {
            errors.push(ConfigError::at(
                r.span(),
                "`rescore` = true re-ranks an i8 index's candidates by their f32 vectors; with `quantization` = \"f32\" \
                 they are f32 already: remove it or set `quantization` = \"i8\"",
            ));
        }
        let shared = resources
            .get::<SharedIndex>(node)
            .unwrap_or_else(|| SharedIndex::with_options(node, self.vector_options()));
        errors.finish(|| {
            Some(Built::Sync(Box::new(MemoryIndex {
                text: text?,
                vector: vector?,
                shared,
                table: Self::state_table(node),
                loaded: false,
                item_id_field: vec!["item_id".to_owned()],
            })))
        })
    }
}

/// Runtime half of `memory-index`.
pub struct MemoryIndex {
    text: Expr,
    vector: Option<Expr>,
    shared: Arc<SharedIndex>,
    table: TableSpec,
    /// Whether this task's items are in the vector index yet.
    loaded: bool,
    /// `["item_id"]`: the payload field that names an item, when it has one.
    item_id_field: Vec<String>,
}

impl MemoryIndex {
    /// Puts this task's stored items into the vector index (after a restore or a replay).
    fn load(&mut self, state: &mut dyn StateAccess) -> Result<(), Cause> {
        if self.loaded {
            return Ok(());
        }
        for (_, v) in state.scan(&self.table.name, &[], None)? {
            let item: Item = serde_json::from_slice(&v).map_err(|e| format!("state `{}`: {e}", self.table.name))?;
            self.shared.add(item)?;
        }
        self.loaded = true;
        Ok(())
    }

    fn index(&mut self, record: &Record, state: &mut dyn StateAccess) -> Result<(), Cause> {
        self.load(state)?;
        let text = match self.text.eval_json(record)? {
            Value::String(s) => s,
            other => return Err(Cause::Record(format!("`{}` gave {other}, not text", self.text.source()))),
        };
        let vector = match &self.vector {
            Some(e) => Some(vector_of(e, record)?),
            None => None,
        };
        // A memory's own id (`payload.item_id`: an llm call that remembers two things emits two
        // items from one input), else the input's key. Picked from the payload's text, so an
        // untouched payload stays as written.
        let picked = record.envelope.payload.fields(&self.item_id_field, |v| v.as_str().map(str::to_owned));
        let id = match picked.into_values().next().flatten() {
            Some(s) if !s.is_empty() => s,
            _ => record.input_key(),
        };
        let item = Item {
            id,
            text,
            sender_id: record.envelope.sender_id.clone(),
            timestamp: record.envelope.timestamp.clone(),
            vector,
        };
        let bytes = serde_json::to_vec(&item).map_err(|e| e.to_string())?;
        let id = item.id.clone();
        self.shared.add(item)?;
        Ok(state.put(&self.table.name, id.as_bytes(), &bytes)?)
    }
}

/// The `search_memory {index}` or `upsert_memory {index}` span of one memory operation
/// (`operation`), for the conversation `conversation` (the input's correlation id); see
/// [`crate::telemetry`].
pub(crate) fn memory_span(operation: &'static str, index: &str, conversation: &str) -> tracing::Span {
    tracing::info_span!(
        target: crate::telemetry::TARGET,
        "memory",
        otel.name = %format!("{operation} {index}"),
        otel.kind = "internal",
        otel.status_code = tracing::field::Empty,
        gen_ai.operation.name = operation,
        gen_ai.data_source.id = index,
        gen_ai.conversation.id = conversation,
        kafclaw.memory.hits = tracing::field::Empty,
    )
}

impl SyncOperator for MemoryIndex {
    fn process(&mut self, record: Record, state: &mut dyn StateAccess, out: &mut Emit) -> Result<(), Failure> {
        let span = memory_span("upsert_memory", &self.shared.name, &record.envelope.correlation_id);
        let _in = span.enter();
        match self.index(&record, state) {
            Ok(()) => {
                out.emit(Port::DEFAULT, record);
                Ok(())
            }
            Err(cause) => Err(Failure::because(record, cause)),
        }
    }
}

/// The vector an expression gives: a non-empty list of numbers.
fn vector_of(e: &Expr, record: &Record) -> Result<Vec<f32>, String> {
    let not = |what: &str| format!("`{}` gave {what}, not a vector (a list of numbers)", e.source());
    match e.eval_json(record)? {
        Value::Array(a) if !a.is_empty() => {
            a.iter().map(|x| x.as_f64().map(|f| f as f32).ok_or_else(|| not(&format!("an item {x}")))).collect()
        }
        Value::Array(_) => Err(not("an empty list")),
        other => Err(not(&other.to_string())),
    }
}

/// Config half of `memory-search`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemorySearchConfig {
    /// The `memory-index` operator whose items are searched.
    pub index: Spanned<String>,
    /// CEL expression giving the query text (embedded by the built-in local embedder).
    #[serde(default = "default_query")]
    pub query: Spanned<String>,
    /// CEL expression giving the query's vector instead (e.g. `payload.embedding` from an
    /// upstream `embed` operator using the same model as the index's items).
    #[serde(default)]
    pub vector: Option<Spanned<String>>,
    /// How many items to return.
    #[serde(default = "default_k")]
    pub k: usize,
    /// Field the hits (`[{id, text, sender_id, timestamp, score}]`, best first) go to.
    #[serde(default = "default_memories")]
    pub into: Spanned<String>,
}

fn default_query() -> Spanned<String> {
    Spanned::new(0..0, "payload.description".to_owned())
}
fn default_k() -> usize {
    5
}
fn default_memories() -> Spanned<String> {
    Spanned::new(0..0, "payload.memories".to_owned())
}

impl Kind for MemorySearchConfig {
    /// Builds the runtime half, over the index of the `memory-index` operator `index` names.
    fn build(&self, _: &str, resources: &Resources) -> Result<Built, Vec<ConfigError>> {
        let mut errors = Errors::default();
        let query = errors.take(compile_expr(&self.query));
        let vector = match &self.vector {
            Some(v) => errors.take(compile_expr(v)).map(Some),
            None => Some(None),
        };
        let into = errors.take_one(FieldPath::parse_spanned(&self.into));
        let shared = resources.get::<SharedIndex>(self.index.get_ref());
        if shared.is_none() {
            errors.push(
                ConfigError::at(
                    self.index.span(),
                    format!("`{}` is not a memory-index operator", self.index.get_ref()),
                )
                .with_hint(Some("name an operator of type \"memory-index\"".into())),
            );
        }
        errors.finish(|| {
            Some(Built::Sync(Box::new(MemorySearch {
                query: query?,
                vector: vector?,
                into: into?,
                k: self.k.max(1),
                shared: shared?,
            })))
        })
    }
}

/// Runtime half of `memory-search`.
pub struct MemorySearch {
    query: Expr,
    vector: Option<Expr>,
    into: FieldPath,
    k: usize,
    shared: Arc<SharedIndex>,
}

impl MemorySearch {
    fn search(&self, record: &Record) -> Result<Value, String> {
        let hits = match &self.vector {
            Some(e) => self.shared.search_vector(&vector_of(e, record)?, self.k)?,
            None => match self.query.eval_json(record)? {
                Value::String(s) => self.shared.search(&s, self.k)?,
                other => return Err(format!("`{}` gave {other}, not text", self.query.source())),
            },
        };
        Ok(Value::Array(
            hits.into_iter()
                .map(|(i, score)| {
                    json!({"id": i.id, "text": i.text, "sender_id": i.sender_id, "timestamp": i.timestamp, "score": score})
                })
                .collect(),
        ))
    }
}

impl SyncOperator for MemorySearch {
    fn process(&mut self, record: Record, _: &mut dyn StateAccess, out: &mut Emit) -> Result<(), Failure> {
        let span = memory_span("search_memory", &self.shared.name, &record.envelope.correlation_id);
        let _in = span.enter();
        match self.search(&record) {
            Ok(hits) => {
                span.record("kafclaw.memory.hits", hits.as_array().map_or(0, Vec::len));
                emit_set(out, Port::DEFAULT, record, &self.into, hits)
            }
            Err(m) => {
                span.record("otel.status_code", "error");
                Err(Failure::new(record, m))
            }
        }
    }
}
