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
//! the instance. Embeddings come from the built-in local embedder ([`embed`]).

pub mod embed;

use std::collections::HashMap;
use std::sync::{Arc, OnceLock, RwLock};

use kafclaw_state::VectorIndex;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::Digest;
use toml::Spanned;

use crate::expr::Expr;
use crate::filter::compile_expr;
use crate::keyed::Errors;
use crate::llm::journal_key;
use crate::operator::{ConfigError, Emit, Failure, SyncOperator, emit_set};
use crate::path::FieldPath;
use crate::record::Record;
use crate::state::{StateAccess, TableSpec};
use embed::{Embedder, LocalEmbedder};

/// One instance's index of one `memory-index` operator, shared by its tasks and by the
/// `memory-search` operators that name it.
#[derive(Debug)]
pub struct SharedIndex {
    /// The `memory-index` operator.
    pub name: String,
    embedder: LocalEmbedder,
    index: OnceLock<Result<Arc<VectorIndex>, String>>,
    items: RwLock<HashMap<u64, Item>>,
}

impl SharedIndex {
    /// A new, empty index.
    pub fn new(name: &str) -> Arc<Self> {
        Arc::new(Self {
            name: name.to_owned(),
            embedder: LocalEmbedder::default(),
            index: OnceLock::new(),
            items: RwLock::new(HashMap::new()),
        })
    }

    /// Indexes an item (replacing one with the same id).
    pub fn add(&self, item: Item) -> Result<(), String> {
        let key = item_key(&item.id);
        self.index()?.add(key, &self.embedder.embed(&item.text)).map_err(|e| e.to_string())?;
        self.items.write().unwrap_or_else(|p| p.into_inner()).insert(key, item);
        Ok(())
    }

    /// The `k` items nearest to `text`, with their scores (cosine similarity), best first.
    pub fn search(&self, text: &str, k: usize) -> Result<Vec<(Item, f32)>, String> {
        let hits = self.index()?.search(&self.embedder.embed(text), k).map_err(|e| e.to_string())?;
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

    /// The vector index, created on first use.
    pub fn index(&self) -> Result<Arc<VectorIndex>, String> {
        self.index
            .get_or_init(|| VectorIndex::new(self.embedder.dimensions()).map(Arc::new).map_err(|e| e.to_string()))
            .clone()
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
}

/// Config half of `memory-index`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemoryIndexConfig {
    /// CEL expression giving the text to index.
    #[serde(default = "default_text")]
    pub text: Spanned<String>,
    /// The instance's index, made by the compiler.
    #[serde(skip)]
    pub shared: Option<Arc<SharedIndex>>,
}

fn default_text() -> Spanned<String> {
    Spanned::new(0..0, "payload.content".to_owned())
}

impl MemoryIndexConfig {
    /// Builds the runtime half; its table is `<name>.items`.
    pub fn build(&self, name: &str) -> Result<MemoryIndex, Vec<ConfigError>> {
        let text = compile_expr(&self.text)?;
        let shared = self.shared.clone().unwrap_or_else(|| SharedIndex::new(name));
        Ok(MemoryIndex { text, shared, table: TableSpec::kept(format!("{name}.items")), loaded: false })
    }
}

/// Runtime half of `memory-index`.
pub struct MemoryIndex {
    text: Expr,
    shared: Arc<SharedIndex>,
    table: TableSpec,
    /// Whether this task's items are in the vector index yet.
    loaded: bool,
}

impl MemoryIndex {
    /// Puts this task's stored items into the vector index (after a restore or a replay).
    fn load(&mut self, state: &mut dyn StateAccess) -> Result<(), String> {
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

    fn index(&mut self, record: &Record, state: &mut dyn StateAccess) -> Result<(), String> {
        self.load(state)?;
        let text = match self.text.eval_json(record)? {
            Value::String(s) => s,
            other => return Err(format!("`{}` gave {other}, not text", self.text.source())),
        };
        let item = Item {
            id: journal_key(record),
            text,
            sender_id: record.envelope.sender_id.clone(),
            timestamp: record.envelope.timestamp.clone(),
        };
        let bytes = serde_json::to_vec(&item).map_err(|e| e.to_string())?;
        let id = item.id.clone();
        self.shared.add(item)?;
        state.put(&self.table.name, id.as_bytes(), &bytes)
    }
}

impl SyncOperator for MemoryIndex {
    fn process(&mut self, record: Record, state: &mut dyn StateAccess, out: &mut Emit) -> Result<(), Failure> {
        match self.index(&record, state) {
            Ok(()) => {
                out.emit(0, record);
                Ok(())
            }
            Err(m) => Err(Failure::new(record, m)),
        }
    }

    fn tables(&self) -> Vec<TableSpec> {
        vec![self.table.clone()]
    }
}

/// Config half of `memory-search`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemorySearchConfig {
    /// The `memory-index` operator whose items are searched.
    pub index: Spanned<String>,
    /// CEL expression giving the query text.
    #[serde(default = "default_query")]
    pub query: Spanned<String>,
    /// How many items to return.
    #[serde(default = "default_k")]
    pub k: usize,
    /// Field the hits (`[{id, text, sender_id, timestamp, score}]`, best first) go to.
    #[serde(default = "default_memories")]
    pub into: Spanned<String>,
    /// The index, resolved by the compiler.
    #[serde(skip)]
    pub shared: Option<Arc<SharedIndex>>,
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

impl MemorySearchConfig {
    /// Builds the runtime half.
    pub fn build(&self) -> Result<MemorySearch, Vec<ConfigError>> {
        let mut errors = Errors::default();
        let query = errors.take(compile_expr(&self.query));
        let into = errors.take_one(FieldPath::parse_spanned(&self.into));
        if self.shared.is_none() {
            errors.push(
                ConfigError::at(
                    self.index.span(),
                    format!("`{}` is not a memory-index operator", self.index.get_ref()),
                )
                .with_hint(Some("name an operator of type \"memory-index\"".into())),
            );
        }
        errors.finish(|| {
            Some(MemorySearch { query: query?, into: into?, k: self.k.max(1), shared: self.shared.clone()? })
        })
    }
}

/// Runtime half of `memory-search`.
pub struct MemorySearch {
    query: Expr,
    into: FieldPath,
    k: usize,
    shared: Arc<SharedIndex>,
}

impl MemorySearch {
    fn search(&self, record: &Record) -> Result<Value, String> {
        let text = match self.query.eval_json(record)? {
            Value::String(s) => s,
            other => return Err(format!("`{}` gave {other}, not text", self.query.source())),
        };
        let hits = self.shared.search(&text, self.k)?;
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
        match self.search(&record) {
            Ok(hits) => emit_set(out, 0, record, &self.into, hits),
            Err(m) => Err(Failure::new(record, m)),
        }
    }
}
