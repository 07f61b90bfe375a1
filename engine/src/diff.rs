//! `kafclaw diff a.jsonl b.jsonl`: compares two runs' outputs envelope by envelope, matched
//! by their deterministic `id` (in file order when envelopes have none), ignoring the fields
//! named with `--ignore` (dotted paths such as `payload.usage.latency_ms`).
//!
//! Output ids are derived from where the input was read (topic or file), so runs of one
//! topology over the same envelopes from different places (a Kafka run, and an offline run
//! over a file) match by another field: `--key causation_id` pairs each output with the
//! input it came from (the n-th output of an input with the n-th; an `id` ignored by the
//! comparison then).
//!
//! Numbers compare as numbers, exactly (`kafclaw_operators::lang::exact::json_eq`): `1.0` equals `1`
//! and `1e2` equals `100`, while two 25-digit ids that differ in their last digit differ (the
//! files are read keeping every number's text).

use std::collections::BTreeMap;
use std::path::Path;

use kafclaw_operators::lang::exact::json_eq;
use serde_json::Value;
use similar::TextDiff;

/// How two runs differ.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct DiffReport {
    /// Envelopes compared.
    pub compared: usize,
    /// Ids only in the first run.
    pub only_a: Vec<String>,
    /// Ids only in the second run.
    pub only_b: Vec<String>,
    /// Ids whose envelopes differ, each with a unified diff.
    pub changed: Vec<(String, String)>,
}

impl DiffReport {
    /// Whether the runs are the same.
    pub fn same(&self) -> bool {
        self.only_a.is_empty() && self.only_b.is_empty() && self.changed.is_empty()
    }
}

fn read(path: &Path, key: &str, ignore: &[String]) -> Result<BTreeMap<String, Value>, String> {
    let text = kafclaw_operators::connectors::read_text(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut out = BTreeMap::new();
    let mut seen: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let mut v: Value =
            serde_json::from_str(line).map_err(|e| format!("{}:{}: not JSON: {e}", path.display(), i + 1))?;
        let k = match get_path(&v, key) {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Null) | None => format!("#{:06}", i + 1),
            Some(other) => other.to_string(),
        };
        let n = seen.entry(k.clone()).or_default();
        *n += 1;
        let k = if *n == 1 { k } else { format!("{k} #{n}") };
        for p in ignore {
            remove_path(&mut v, p);
        }
        out.insert(k, v);
    }
    Ok(out)
}

fn get_path<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(v, |cur, p| cur.get(p))
}

fn remove_path(v: &mut Value, path: &str) {
    let mut parts: Vec<&str> = path.split('.').collect();
    let Some(last) = parts.pop() else { return };
    let mut cur = v;
    for p in parts {
        match cur.get_mut(p) {
            Some(next) => cur = next,
            None => return,
        }
    }
    if let Some(o) = cur.as_object_mut() {
        o.remove(last);
    }
}

/// Compares two output files, matching envelopes by the dotted path `key` (`id` by default).
pub fn diff_files(a: &Path, b: &Path, key: &str, ignore: &[String]) -> Result<DiffReport, String> {
    let mut ignore = ignore.to_vec();
    if key != "id" {
        ignore.push("id".into());
    }
    let (ra, rb) = (read(a, key, &ignore)?, read(b, key, &ignore)?);
    let mut report = DiffReport::default();
    for (id, va) in &ra {
        match rb.get(id) {
            None => report.only_a.push(id.clone()),
            Some(vb) => {
                report.compared += 1;
                if !json_eq(va, vb) {
                    let pa = serde_json::to_string_pretty(va).unwrap_or_default() + "\n";
                    let pb = serde_json::to_string_pretty(vb).unwrap_or_default() + "\n";
                    let d = TextDiff::from_lines(&pa, &pb)
                        .unified_diff()
                        .context_radius(2)
                        .header(&a.display().to_string(), &b.display().to_string())
                        .to_string();
                    report.changed.push((id.clone(), d));
                }
            }
        }
    }
    report.only_b = rb.keys().filter(|k| !ra.contains_key(*k)).cloned().collect();
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_by_id_and_ignores_what_it_is_told() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.jsonl");
        let b = dir.path().join("b.jsonl");
        std::fs::write(
            &a,
            "{\"id\":\"1\",\"x\":1,\"payload\":{\"usage\":{\"latency_ms\":5}}}\n{\"id\":\"2\",\"x\":2}\n",
        )
        .unwrap();
        std::fs::write(&b, "{\"id\":\"2\",\"x\":2}\n{\"id\":\"1\",\"x\":1,\"payload\":{\"usage\":{\"latency_ms\":9}}}\n{\"id\":\"3\"}\n").unwrap();
        let r = diff_files(&a, &b, "id", &["payload.usage.latency_ms".into()]).unwrap();
        assert_eq!((r.compared, r.only_a.len(), r.only_b.clone(), r.changed.len()), (2, 0, vec!["3".to_owned()], 0));
        let r = diff_files(&a, &b, "id", &[]).unwrap();
        assert_eq!(r.changed.len(), 1);
        assert!(
            r.changed[0].1.lines().any(|l| l.starts_with('-') && l.contains("\"latency_ms\": 5")),
            "{}",
            r.changed[0].1
        );
        assert!(!r.same());
    }

    #[test]
    fn matches_by_another_key_numbering_repeats() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.jsonl");
        let b = dir.path().join("b.jsonl");
        std::fs::write(
            &a,
            "{\"id\":\"a1\",\"causation_id\":\"q\",\"n\":1}\n{\"id\":\"a2\",\"causation_id\":\"q\",\"n\":2}\n",
        )
        .unwrap();
        std::fs::write(
            &b,
            "{\"id\":\"b1\",\"causation_id\":\"q\",\"n\":1}\n{\"id\":\"b2\",\"causation_id\":\"q\",\"n\":3}\n",
        )
        .unwrap();
        let r = diff_files(&a, &b, "causation_id", &[]).unwrap();
        assert_eq!(r.compared, 2);
        assert_eq!(r.changed.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>(), ["q #2"]);
    }

    #[test]
    fn numbers_compare_exactly_as_numbers() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a.jsonl"), dir.path().join("b.jsonl"));
        std::fs::write(
            &a,
            "{\"id\":\"1\",\"n\":1234567890123456789012345}\n{\"id\":\"2\",\"n\":1.0,\"m\":1e2}\n{\"id\":\"3\",\"n\":0.1}\n",
        )
        .unwrap();
        std::fs::write(
            &b,
            "{\"id\":\"1\",\"n\":1234567890123456789012346}\n{\"id\":\"2\",\"n\":1,\"m\":100}\n{\"id\":\"3\",\"n\":0.1000000000000000055511151231257827}\n",
        )
        .unwrap();
        let r = diff_files(&a, &b, "id", &[]).unwrap();
        assert_eq!(r.compared, 3);
        assert_eq!(r.changed.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>(), ["1", "3"]);
        assert!(r.changed[0].1.contains("-  \"n\": 1234567890123456789012345"), "{}", r.changed[0].1);
        assert!(r.changed[0].1.contains("+  \"n\": 1234567890123456789012346"), "{}", r.changed[0].1);
    }
}
