//! What an MCP server says, as kafclaw reads it (pure; read from the JSON of the messages so
//! every content kind of MCP 2025-06-18 / 2025-11-25 is handled, and an unknown one too):
//! the tools of a `tools/list` answer, and a `tools/call` result as the text the model reads.

use serde_json::Value;

/// A tool as the server lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct Listed {
    /// Its MCP name.
    pub name: String,
    /// `description` (else `title`, else empty).
    pub description: String,
    /// `inputSchema` (an object schema; `{"type": "object"}` when missing).
    pub input_schema: Value,
    /// `annotations.readOnlyHint`.
    pub read_only: bool,
}

/// Most characters of a tool's description kept (the rest cut, with `…`): it goes to the
/// model with every call, and a server writes it.
pub const MAX_DESCRIPTION_CHARS: usize = 2048;

/// A `Tool` of `tools/list`, as JSON.
pub fn listed(tool: &Value) -> Option<Listed> {
    let name = tool.get("name")?.as_str()?.to_owned();
    let description = tool
        .get("description")
        .and_then(Value::as_str)
        .or_else(|| tool.get("title").and_then(Value::as_str))
        .unwrap_or_default();
    let description = match description.char_indices().nth(MAX_DESCRIPTION_CHARS) {
        Some((at, _)) => format!("{}…", &description[..at]),
        None => description.to_owned(),
    };
    let input_schema = match tool.get("inputSchema") {
        Some(s @ Value::Object(_)) => s.clone(),
        _ => serde_json::json!({"type": "object"}),
    };
    let read_only = tool.pointer("/annotations/readOnlyHint").and_then(Value::as_bool).unwrap_or(false);
    Some(Listed { name, description, input_schema, read_only })
}

/// A `CallToolResult` as JSON → (whether the server flagged it `isError`, the text the model
/// reads). Text parts are joined by newlines; images, audio, resource links and embedded
/// resources are each summarised on a line of their own (never dropped); `structuredContent`
/// is appended as JSON only when no text part is there: MCP (2025-06-18, "Structured
/// Content") says a tool returning structured content SHOULD also return it in a text part,
/// and servers write that part for a reader (server-filesystem's `read_text_file` gives the
/// file's text and `{"content": <the same text>}`), so the value would be read twice.
pub fn result_text(result: &Value) -> (bool, String) {
    let is_error = result.get("isError").and_then(Value::as_bool).unwrap_or(false);
    let mut lines: Vec<String> = Vec::new();
    let mut has_text = false;
    for block in result.get("content").and_then(Value::as_array).into_iter().flatten() {
        let kind = block.get("type").and_then(Value::as_str).unwrap_or("?");
        let s = |k: &str| block.get(k).and_then(Value::as_str).unwrap_or_default();
        let line = match kind {
            "text" => {
                has_text = true;
                s("text").to_owned()
            }
            "image" | "audio" => {
                format!("[{kind}: {}, {} bytes]", s("mimeType"), base64_len(s("data")))
            }
            "resource_link" => {
                let mime = block.get("mimeType").and_then(Value::as_str).map(|m| format!(", {m}")).unwrap_or_default();
                format!("[resource link: {} ({}{mime})]", s("uri"), s("name"))
            }
            "resource" => {
                let r = block.get("resource").cloned().unwrap_or(Value::Null);
                let rs = |k: &str| r.get(k).and_then(Value::as_str).unwrap_or_default().to_owned();
                match r.get("text").and_then(Value::as_str) {
                    Some(text) => format!("[resource {}]\n{text}", rs("uri")),
                    None => format!("[resource {}: {}, {} bytes]", rs("uri"), rs("mimeType"), base64_len(&rs("blob"))),
                }
            }
            other => {
                let json = block.to_string();
                let cut: String = json.chars().take(200).collect();
                format!("[{other} content: {cut}]")
            }
        };
        lines.push(line);
    }
    if let Some(structured) = result.get("structuredContent")
        && !has_text
    {
        lines.push(structured.to_string());
    }
    (is_error, lines.join("\n"))
}

/// Bytes of base64 `data` once decoded.
fn base64_len(data: &str) -> usize {
    let padding = data.bytes().rev().take_while(|b| *b == b'=').count();
    (data.len() / 4 * 3).saturating_sub(padding)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn every_content_kind_becomes_text() {
        let result = json!({"content": [
            {"type": "text", "text": "The sum of 2 and 3 is 5."},
            {"type": "image", "data": "AAAA", "mimeType": "image/png"},
            {"type": "audio", "data": "AAA=", "mimeType": "audio/wav"},
            {"type": "resource_link", "uri": "demo://r/1", "name": "r1", "mimeType": "text/plain"},
            {"type": "resource", "resource": {"uri": "demo://r/2", "text": "inline text"}},
            {"type": "resource", "resource": {"uri": "demo://r/3", "mimeType": "application/gzip", "blob": "AAAAAAAA"}},
            {"type": "hologram", "beam": 1}
        ]});
        let (error, text) = result_text(&result);
        assert!(!error);
        let hologram = result["content"][6].to_string();
        assert_eq!(
            text,
            format!(
                "The sum of 2 and 3 is 5.\n[image: image/png, 3 bytes]\n[audio: audio/wav, 2 bytes]\n\
                 [resource link: demo://r/1 (r1, text/plain)]\n[resource demo://r/2]\ninline text\n\
                 [resource demo://r/3: application/gzip, 6 bytes]\n[hologram content: {hologram}]"
            )
        );
    }

    #[test]
    fn structured_content_is_read_only_without_a_text_part_and_errors_are_flagged() {
        let r = json!({"content": [{"type": "text", "text": "{\"a\": 1}"}], "structuredContent": {"a": 1}, "isError": true});
        assert_eq!(result_text(&r), (true, "{\"a\": 1}".to_owned()));
        let file = json!({"content": [{"type": "text", "text": "hello"}], "structuredContent": {"content": "hello"}});
        assert_eq!(result_text(&file), (false, "hello".to_owned()));
        let image = json!({"content": [{"type": "image", "data": "AAAA", "mimeType": "image/png"}], "structuredContent": {"t": 21}});
        assert_eq!(result_text(&image), (false, "[image: image/png, 3 bytes]\n{\"t\":21}".to_owned()));
        assert_eq!(result_text(&json!({})), (false, String::new()));
    }

    #[test]
    fn listed_tools_keep_their_schema_or_get_an_object_one() {
        let t =
            listed(&json!({"name": "add", "title": "Add", "inputSchema": {"type": "object", "properties": {"a": {}}},
            "annotations": {"readOnlyHint": true}}))
            .unwrap();
        assert_eq!((t.name.as_str(), t.description.as_str(), t.read_only), ("add", "Add", true));
        assert_eq!(t.input_schema["properties"]["a"], json!({}));
        let t = listed(&json!({"name": "x", "description": "d", "inputSchema": "nonsense"})).unwrap();
        assert_eq!((t.input_schema, t.read_only), (json!({"type": "object"}), false));
        assert!(listed(&json!({"description": "no name"})).is_none());
        let long = listed(&json!({"name": "x", "description": "é".repeat(5000)})).unwrap();
        assert_eq!(long.description.chars().count(), MAX_DESCRIPTION_CHARS + 1);
        assert!(long.description.ends_with('…'));
    }
}
