//! deploy/grafana/kafclaw.json: a well-formed dashboard whose every PromQL expression names
//! only metrics kafclaw serves, with their own labels (the list in docs/deploy.md between the
//! `metrics:begin`/`metrics:end` markers), quantiles taken from histogram buckets only, and a
//! panel for every metric of that list.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use super::repo;

/// A documented metric: its labels and its type.
#[derive(Debug)]
struct Metric {
    labels: BTreeSet<String>,
    kind: String,
}

/// Labels every scraped series has besides its own (Prometheus target labels) and `le`.
const EXTRA_LABELS: &[&str] = &["instance", "job", "le"];

/// The metric list of docs/deploy.md: lines `- name{label,…} type …` between the markers.
fn documented() -> BTreeMap<String, Metric> {
    let doc = std::fs::read_to_string(repo("docs/deploy.md")).unwrap();
    let block = doc
        .split("<!-- metrics:begin -->")
        .nth(1)
        .and_then(|r| r.split("<!-- metrics:end -->").next())
        .expect("docs/deploy.md has the metrics block");
    let mut metrics = BTreeMap::new();
    for line in block.lines().filter_map(|l| l.strip_prefix("- ")) {
        let (name, rest) = line.split_once('{').unwrap_or_else(|| panic!("no labels: {line}"));
        let (labels, rest) = rest.split_once('}').unwrap();
        let kind = ["counter", "gauge", "histogram"]
            .into_iter()
            .find(|k| rest.split_whitespace().any(|w| w == *k))
            .unwrap_or_else(|| panic!("no type: {line}"));
        let labels = labels.split(',').map(|l| l.trim().to_owned()).filter(|l| !l.is_empty()).collect();
        metrics.insert(name.trim().to_owned(), Metric { labels, kind: kind.to_owned() });
    }
    assert!(metrics.len() >= 20, "{metrics:?}");
    metrics
}

/// The metric names and the label names an expression uses. Metric names are the identifiers
/// outside braces, grouping clauses and strings that start with a kafclaw or GenAI prefix;
/// label names are those of matchers, `by (…)`/`without (…)`, and `label_values(…, label)`.
fn names(expr: &str) -> (BTreeSet<String>, BTreeSet<String>) {
    let (mut metrics, mut labels) = (BTreeSet::new(), BTreeSet::new());
    let ident = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
    let mut outside = String::new();
    let mut rest = expr;
    while let Some(c) = rest.chars().next() {
        if c == '"' {
            let end = rest[1..].find('"').expect("closed string") + 2;
            rest = &rest[end..];
        } else if c == '{' {
            let end = rest.find('}').expect("closed braces");
            for matcher in rest[1..end].split(',') {
                let name: String = matcher.trim().chars().take_while(|c| ident(*c)).collect();
                if !name.is_empty() {
                    labels.insert(name);
                }
            }
            rest = &rest[end + 1..];
        } else {
            outside.push(c);
            rest = &rest[c.len_utf8()..];
        }
    }
    // Grouping clauses: their parentheses hold label names.
    let mut text = outside.as_str();
    let mut plain = String::new();
    while !text.is_empty() {
        let clause = ["by", "without", "on", "ignoring", "group_left", "group_right"].iter().any(|k| {
            text.starts_with(*k)
                && text[k.len()..].trim_start().starts_with('(')
                && !plain.chars().last().is_some_and(ident)
        });
        if clause {
            let open = text.find('(').unwrap();
            let close = open + text[open..].find(')').unwrap();
            labels.extend(text[open + 1..close].split(',').map(|l| l.trim().to_owned()).filter(|l| !l.is_empty()));
            text = &text[close + 1..];
        } else {
            let c = text.chars().next().unwrap();
            plain.push(c);
            text = &text[c.len_utf8()..];
        }
    }
    if let Some(args) = plain.strip_prefix("label_values(") {
        let args = args.trim_end_matches(')');
        let (metric, label) = args.rsplit_once(',').unwrap_or(("", args));
        labels.insert(label.trim().to_owned());
        plain = metric.to_owned();
    }
    for word in plain.split(|c: char| !ident(c)) {
        if word.starts_with("kafclaw_") || word.starts_with("gen_ai_") {
            metrics.insert(word.to_owned());
        }
    }
    (metrics, labels)
}

/// The documented metric a series name belongs to (a histogram's `_bucket`/`_count`/`_sum`).
fn family<'a>(series: &str, documented: &'a BTreeMap<String, Metric>) -> Option<(&'a str, &'a Metric)> {
    if let Some((name, m)) = documented.get_key_value(series)
        && m.kind != "histogram"
    {
        return Some((name, m));
    }
    ["_bucket", "_count", "_sum"].iter().find_map(|suffix| {
        let base = series.strip_suffix(suffix)?;
        let (name, m) = documented.get_key_value(base)?;
        (m.kind == "histogram").then_some((name.as_str(), m))
    })
}

/// Every problem of one expression (empty: fine).
fn problems(expr: &str, documented: &BTreeMap<String, Metric>, used: &mut BTreeSet<String>) -> Vec<String> {
    let (series, labels) = names(expr);
    let mut out = Vec::new();
    if series.is_empty() {
        out.push(format!("names no kafclaw metric: {expr}"));
    }
    let mut allowed: BTreeSet<String> = EXTRA_LABELS.iter().map(|l| (*l).to_owned()).collect();
    for s in &series {
        match family(s, documented) {
            Some((name, m)) => {
                used.insert(name.to_owned());
                allowed.extend(m.labels.iter().cloned());
            }
            None => out.push(format!("`{s}` is no documented metric (or histogram series): {expr}")),
        }
    }
    for l in labels.iter().filter(|l| !l.starts_with("__") && !allowed.contains(*l)) {
        out.push(format!("label `{l}` belongs to none of {series:?}: {expr}"));
    }
    if expr.contains("histogram_quantile(") && !series.iter().all(|s| s.ends_with("_bucket")) {
        out.push(format!("histogram_quantile over something other than buckets: {expr}"));
    }
    out
}

#[test]
fn the_checker_catches_unknown_metrics_labels_and_quantiles() {
    let d = documented();
    let mut used = BTreeSet::new();
    let ok = r#"histogram_quantile(0.99, sum by (le, topology) (rate(kafclaw_process_latency_seconds_bucket{topology=~"$t"}[5m])))"#;
    assert_eq!(problems(ok, &d, &mut used), Vec::<String>::new());
    assert_eq!(used, BTreeSet::from(["kafclaw_process_latency_seconds".to_owned()]));
    assert_eq!(problems("sum(rate(kafclaw_records_consumd_total[5m]))", &d, &mut used).len(), 1);
    assert_eq!(problems("sum by (model) (rate(gen_ai_client_token_usage_sum[5m]))", &d, &mut used).len(), 1);
    assert_eq!(problems("sum(kafclaw_ready_bucket)", &d, &mut used).len(), 1);
    assert_eq!(problems("histogram_quantile(0.5, rate(kafclaw_poll_latency_seconds_sum[5m]))", &d, &mut used).len(), 1);
    assert_eq!(problems(r#"kafclaw_ready{gen_ai_tool_name="x"}"#, &d, &mut used).len(), 1);
}

/// Every panel, nested ones (rows) included.
fn panels(v: &Value, out: &mut Vec<Value>) {
    for p in v.as_array().into_iter().flatten() {
        out.push(p.clone());
        panels(&p["panels"], out);
    }
}

#[test]
fn grafana_dashboard_uses_only_the_metrics_kafclaw_serves() {
    let d = documented();
    let text = std::fs::read_to_string(repo("deploy/grafana/kafclaw.json")).unwrap();
    let dash: Value = serde_json::from_str(&text).expect("the dashboard is JSON");
    assert_eq!(dash["uid"], "kafclaw-overview");
    assert!(dash["schemaVersion"].as_u64().unwrap() >= 36);
    let mut all = Vec::new();
    panels(&dash["panels"], &mut all);
    let (mut used, mut errors, mut ids) = (BTreeSet::new(), Vec::new(), BTreeSet::new());
    let mut exprs = 0;
    for p in &all {
        assert!(ids.insert(p["id"].as_u64().expect("panel id")), "duplicate panel id {}", p["id"]);
        assert!(p["gridPos"]["w"].as_u64().is_some_and(|w| w <= 24), "{}", p["title"]);
        if p["type"] == "row" {
            continue;
        }
        assert_eq!(p["datasource"]["uid"], "${datasource}", "{}", p["title"]);
        let mut refs = BTreeSet::new();
        for t in p["targets"].as_array().expect("targets") {
            assert!(refs.insert(t["refId"].as_str().unwrap().to_owned()), "{}", p["title"]);
            exprs += 1;
            errors.extend(problems(t["expr"].as_str().unwrap(), &d, &mut used));
        }
    }
    for v in dash["templating"]["list"].as_array().unwrap().iter().filter(|v| v["type"] == "query") {
        errors.extend(problems(v["definition"].as_str().unwrap(), &d, &mut used));
    }
    assert!(errors.is_empty(), "{}", errors.join("\n"));
    let missing: Vec<&String> = d.keys().filter(|m| !used.contains(*m)).collect();
    assert!(missing.is_empty(), "documented metrics with no panel: {missing:?}");
    eprintln!("grafana: {} panels, {exprs} expressions, {} metrics", all.len(), used.len());
}
