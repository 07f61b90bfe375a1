//! Embedders: text → unit vector.
//!
//! [`LocalEmbedder`] needs no network and no model file: it is a **hashing embedder** (the
//! "hashing trick"): lower-cased words, word bigrams and character trigrams are hashed
//! (FNV-1a) into a fixed number of signed buckets, weighted, and the vector is L2-normalised.
//! Its quality, honestly: it finds texts that share words and word pieces (typos and
//! inflections partly survive through the trigrams), ranks them by overlap, and is fully
//! deterministic; it knows no meaning — "refund" does not find "money back". Use an
//! OpenAI-compatible `/v1/embeddings` model for semantic search.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::model::SharedModel;

/// Vectors for a batch of texts, and what they took.
#[derive(Debug, Clone, PartialEq)]
pub struct Embedding {
    /// One vector per text, in order.
    pub vectors: Vec<Vec<f32>>,
    /// The model that made them (`local` for the built-in embedder).
    pub model: String,
    /// Prompt tokens billed (0 for the built-in embedder).
    pub tokens: u64,
}

/// Vectors on their way.
pub type EmbedFuture = Pin<Box<dyn Future<Output = Result<Embedding, String>> + Send>>;

/// Turns texts into vectors: the built-in [`LocalEmbedder`], or a model's `/v1/embeddings`
/// endpoint ([`ModelEmbedder`]).
pub trait Embedder: Send + Sync + std::fmt::Debug {
    /// Embeds `texts` (one call for the batch).
    fn embed_texts(&self, texts: Vec<String>) -> EmbedFuture;
    /// Connects (reads keys and settings) so a misconfiguration stops start-up, not records.
    fn open(&self) -> Result<(), String> {
        Ok(())
    }
    /// The entry a journal export holds for `operator`'s record `key`, when the embedder runs
    /// from one (`Some(Err)`: the export lacks the record).
    fn recorded(&self, _operator: &str, _key: &str) -> Option<Result<serde_json::Value, String>> {
        None
    }
}

/// A declared model's OpenAI-compatible `/v1/embeddings` endpoint (retries, backoff,
/// `Retry-After` and adaptive concurrency as for chat calls; the client is shared with any
/// `llm` operator naming the same model).
#[derive(Debug, Clone)]
pub struct ModelEmbedder {
    model: Arc<SharedModel>,
}

impl ModelEmbedder {
    /// The embedder of a declared model.
    pub fn new(model: Arc<SharedModel>) -> Self {
        Self { model }
    }
}

impl Embedder for ModelEmbedder {
    fn embed_texts(&self, texts: Vec<String>) -> EmbedFuture {
        let client = self.model.client();
        Box::pin(async move {
            let e = client?.embed(texts).await.map_err(|e| e.to_string())?;
            Ok(Embedding { vectors: e.vectors, model: e.model, tokens: e.usage.prompt_tokens })
        })
    }

    fn open(&self) -> Result<(), String> {
        self.model.client().map(|_| ())
    }

    fn recorded(&self, operator: &str, key: &str) -> Option<Result<serde_json::Value, String>> {
        let client = self.model.client().ok()?;
        let found = client.recorded_entry(operator, key)?;
        Some(found.cloned().map_err(|e| e.to_string()))
    }
}

/// The built-in hashing embedder.
#[derive(Debug, Clone)]
pub struct LocalEmbedder {
    dimensions: usize,
}

impl Default for LocalEmbedder {
    fn default() -> Self {
        Self::new(384)
    }
}

fn fnv1a(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in parts {
        for b in *p {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        h ^= 0xff;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

impl LocalEmbedder {
    /// An embedder of `dimensions` buckets (at least 8).
    pub fn new(dimensions: usize) -> Self {
        Self { dimensions: dimensions.max(8) }
    }

    fn bump(&self, v: &mut [f32], h: u64, weight: f32) {
        let i = (h % self.dimensions as u64) as usize;
        v[i] += if h >> 63 == 0 { weight } else { -weight };
    }
}

impl Embedder for LocalEmbedder {
    fn embed_texts(&self, texts: Vec<String>) -> EmbedFuture {
        let vectors = texts.iter().map(|t| self.embed(t)).collect();
        Box::pin(std::future::ready(Ok(Embedding { vectors, model: "local".into(), tokens: 0 })))
    }
}

impl LocalEmbedder {
    /// The vectors' length.
    pub fn dimensions(&self) -> usize {
        self.dimensions
    }

    /// The unit vector of `text` (all zeros for text with no words).
    pub fn embed(&self, text: &str) -> Vec<f32> {
        let lower = text.to_lowercase();
        let words: Vec<&str> = lower.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()).collect();
        let mut v = vec![0f32; self.dimensions];
        for w in &words {
            self.bump(&mut v, fnv1a(&[b"w", w.as_bytes()]), 1.0);
            let padded: Vec<char> = std::iter::once('^').chain(w.chars()).chain(std::iter::once('$')).collect();
            for t in padded.windows(3) {
                let s: String = t.iter().collect();
                self.bump(&mut v, fnv1a(&[b"t", s.as_bytes()]), 0.25);
            }
        }
        for pair in words.windows(2) {
            self.bump(&mut v, fnv1a(&[b"b", pair[0].as_bytes(), pair[1].as_bytes()]), 0.5);
        }
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        if norm > 0.0 {
            v.iter_mut().for_each(|x| *x /= norm);
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cos(a: &[f32], b: &[f32]) -> f32 {
        a.iter().zip(b).map(|(x, y)| x * y).sum()
    }

    #[test]
    fn shared_words_are_closer_than_none_and_it_is_deterministic() {
        let e = LocalEmbedder::default();
        let a = e.embed("Refund policy: invoices over 50 EUR need approval");
        let b = e.embed("what is the refund policy for invoices?");
        let c = e.embed("the cat sat on the mat");
        assert!(cos(&a, &b) > cos(&a, &c) + 0.2, "{} vs {}", cos(&a, &b), cos(&a, &c));
        assert_eq!(a, e.embed("Refund policy: invoices over 50 EUR need approval"));
        assert!((cos(&a, &a) - 1.0).abs() < 1e-5, "unit length");
        assert!(e.embed("  ,. ").iter().all(|x| *x == 0.0));
    }
}
