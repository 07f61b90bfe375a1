//! `memory`: the model remembers a fact for the group, or recalls what the group remembers.
//!
//! `remember` hands the text back to the `llm` operator, which emits it as a `memory`
//! envelope on its `memories` output (wire that to the shared memory topic, or straight into
//! a `memory-index`): the write is part of the output transaction, never a side effect outside
//! kafclaw. `recall` searches a `memory-index` operator's index (the same one `memory-search`
//! uses), embedding the query with the index's embedder.

use std::fmt::Write;
use std::sync::Arc;

use serde_json::{Value, json};
use tracing::Instrument;

use super::{CallContext, Tool, ToolFuture, ToolOutput};
use crate::memory::SharedIndex;
use crate::model::SharedModel;
use crate::model::embed::{Embedder, ModelEmbedder};

/// The `memory` tool.
#[derive(Debug)]
pub struct MemoryTool {
    index: Arc<SharedIndex>,
    embedder: Option<ModelEmbedder>,
    k: usize,
    description: Option<String>,
}

impl MemoryTool {
    /// A tool over `index`; recall queries are embedded by `model` (or the local embedder).
    pub fn new(
        index: Arc<SharedIndex>,
        model: Option<Arc<SharedModel>>,
        k: usize,
        description: Option<String>,
    ) -> Self {
        Self { index, embedder: model.map(ModelEmbedder::new), k, description }
    }
}

/// The hits as the model reads them.
fn listing(hits: &[(crate::memory::Item, f32)]) -> String {
    if hits.is_empty() {
        return "nothing remembered about that".into();
    }
    let mut text = String::new();
    for (item, score) in hits {
        let _ = writeln!(text, "- {} (score {score:.2}; from {} at {})", item.text, item.sender_id, item.timestamp);
    }
    text
}

impl Tool for MemoryTool {
    fn description(&self) -> String {
        self.description.clone().unwrap_or_else(|| {
            "Remember a fact for the whole group (action \"remember\"), or recall what the group remembers about a subject (action \"recall\").".into()
        })
    }

    fn parameters(&self) -> Value {
        json!({
            "type": "object",
            "properties": {
                "action": {"type": "string", "enum": ["remember", "recall"]},
                "text": {"type": "string", "description": "the fact to remember, or the subject to recall"}
            },
            "required": ["action", "text"]
        })
    }

    fn side_effects(&self) -> bool {
        false
    }

    fn remembers(&self) -> bool {
        true
    }

    fn call(&self, args: Value, cx: CallContext) -> ToolFuture {
        let text = args["text"].as_str().unwrap_or_default().trim().to_owned();
        let action = args["action"].as_str().unwrap_or_default().to_owned();
        let index = self.index.clone();
        let embedder = self.embedder.clone();
        let k = self.k;
        Box::pin(async move {
            if text.is_empty() {
                return Err("argument `text` (a non-empty string) is missing".into());
            }
            match action.as_str() {
                "remember" => {
                    Ok(ToolOutput { text: "remembered".into(), remember: vec![text], ..ToolOutput::default() })
                }
                "recall" => {
                    let span = crate::memory::memory_span("search_memory", &index.name, &cx.conversation_id);
                    let hits = async {
                        let hits = match embedder {
                            None => index.search(&text, k)?,
                            Some(e) => {
                                let mut v = e.embed_texts(vec![text]).await?.vectors;
                                let vector = v.pop().ok_or("the embedder gave no vector")?;
                                index.search_vector(&vector, k)?
                            }
                        };
                        Ok::<_, String>(hits)
                    }
                    .instrument(span.clone())
                    .await;
                    match &hits {
                        Ok(h) => span.record("kafclaw.memory.hits", h.len()),
                        Err(_) => span.record("otel.status_code", "error"),
                    };
                    Ok(ToolOutput::from(listing(&hits?)))
                }
                other => Err(format!("action `{other}`: use \"remember\" or \"recall\"")),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::Item;

    fn item(id: &str, text: &str) -> Item {
        Item { id: id.into(), text: text.into(), sender_id: "carol".into(), timestamp: "t".into(), vector: None }
    }

    #[tokio::test]
    async fn remembers_by_handing_the_text_back_and_recalls_from_the_index() {
        let index = SharedIndex::new("remember");
        let tool = MemoryTool::new(index.clone(), None, 2, None);
        let empty = tool.call(json!({"action": "recall", "text": "refunds"}), "k".into()).await.unwrap();
        assert_eq!(empty.text, "nothing remembered about that");
        index.add(item("a", "Refunds over 50 EUR need approval")).unwrap();
        index.add(item("b", "The office cat is called Miso")).unwrap();
        let hits = tool.call(json!({"action": "recall", "text": "refunds over 50 EUR"}), "k".into()).await.unwrap();
        assert!(hits.text.starts_with("- Refunds over 50 EUR need approval (score"), "{}", hits.text);
        assert!(hits.remember.is_empty());
        let r = tool.call(json!({"action": "remember", "text": " Invoices are due in 30 days "}), "k".into()).await;
        assert_eq!(
            r.unwrap(),
            ToolOutput {
                text: "remembered".into(),
                remember: vec!["Invoices are due in 30 days".into()],
                ..ToolOutput::default()
            }
        );
        let bad = tool.call(json!({"action": "forget", "text": "x"}), "k".into()).await.unwrap_err();
        assert!(bad.contains("use \"remember\" or \"recall\""), "{bad}");
        assert!(tool.call(json!({"action": "remember"}), "k".into()).await.is_err());
    }
}
