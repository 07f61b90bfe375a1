//! The CLI's group commands: `group create`, `group members`, `timeline`, `trace`, and
//! `journal export`.

use std::io::Write;

use super::{compile_or_report, settings, stop_on_signals};
use crate::exit;
use crate::kafka::ClientSettings;

pub(super) fn group_create(
    group: &str,
    skill: &[String],
    partitions: i32,
    replication: i32,
    brokers: Option<String>,
) -> i32 {
    let s = ClientSettings::from_env(brokers);
    match crate::kafka::group::create_group_topics(&s, group, skill, partitions, replication) {
        Ok(created) => {
            for t in crate::kafka::group::group_topics(group, skill) {
                println!("{}{}", t.0, if created.contains(&t.0) { "  (created)" } else { "" });
            }
            exit::OK
        }
        Err(e) => {
            eprintln!("error: {e}");
            exit::RUNTIME
        }
    }
}

pub(super) fn group_members(group: &str, brokers: Option<String>, json: bool) -> i32 {
    let s = ClientSettings::from_env(brokers);
    let now = kafclaw_operators::api::record::now_ms();
    let members = match crate::kafka::group::live_members(&s, group, now) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("error: {e}");
            return exit::RUNTIME;
        }
    };
    if json {
        for m in &members {
            println!("{m}");
        }
    } else {
        println!("{:<32} {:<14} {:<24} {:<26} last seen", "agent", "role", "skills", "joined");
        for m in &members {
            let i = &m["identity"];
            let skills: Vec<&str> =
                i["capabilities"].as_array().into_iter().flatten().filter_map(serde_json::Value::as_str).collect();
            println!(
                "{:<32} {:<14} {:<24} {:<26} {}",
                m["agent_id"].as_str().unwrap_or_default(),
                i["role"].as_str().unwrap_or_default(),
                skills.join(","),
                m["joined_at"].as_str().unwrap_or_default(),
                m["last_seen"].as_str().unwrap_or_default()
            );
        }
    }
    eprintln!("kafclaw: {} live member(s) in group `{group}`", members.len());
    exit::OK
}

pub(super) fn timeline_follow(
    group: &str,
    db: &std::path::Path,
    skills: &[String],
    once: bool,
    brokers: Option<String>,
) -> i32 {
    let s = ClientSettings::from_env(brokers);
    let mut timeline = match crate::timeline::Timeline::open(db) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: {e}");
            return exit::RUNTIME;
        }
    };
    let topics: Vec<String> = crate::kafka::group::group_topics(group, skills)
        .into_iter()
        .map(|(t, _)| t)
        .filter(|t| !t.contains(".control.") && !t.ends_with(".orchestrator") && !t.ends_with(".announce"))
        .collect();
    let stop = match stop_on_signals() {
        Ok(s) => s,
        Err(code) => return code,
    };
    match crate::kafka::timeline_feed::follow(&s, &topics, &mut timeline, once, &stop) {
        Ok(f) => {
            eprintln!("kafclaw: timeline {}: {} event(s) recorded, {} skipped", db.display(), f.recorded, f.skipped);
            exit::OK
        }
        Err(e) => {
            eprintln!("error: {e}");
            exit::RUNTIME
        }
    }
}

pub(super) fn trace(correlation_id: &str, db: &std::path::Path, json: bool) -> i32 {
    if !db.exists() {
        eprintln!("error: {}: no timeline here (run `kafclaw timeline --group <g> --db …` first)", db.display());
        return exit::INVALID;
    }
    let chain = match crate::timeline::Timeline::open(db).and_then(|t| t.chain(correlation_id)) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return exit::RUNTIME;
        }
    };
    if chain.is_empty() {
        eprintln!("kafclaw: nothing in {} for `{correlation_id}`", db.display());
        return exit::RUNTIME;
    }
    for e in &chain {
        if json {
            println!("{}", serde_json::to_string(e).unwrap_or_default());
        } else {
            println!("{}", crate::timeline::describe(e));
        }
    }
    exit::OK
}

pub(super) fn journal_export(file: &std::path::Path, brokers: Option<String>, output: Option<&std::path::Path>) -> i32 {
    let c = match compile_or_report(file) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let entries = match crate::kafka::journal::export_journals(&c.plan, &settings(&c, brokers)) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("error: {e}");
            return exit::RUNTIME;
        }
    };
    let mut text = String::new();
    for e in &entries {
        text.push_str(&serde_json::to_string(e).unwrap_or_default());
        text.push('\n');
    }
    let written = match output {
        Some(path) => std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display())),
        None => std::io::stdout().write_all(text.as_bytes()).map_err(|e| e.to_string()),
    };
    match written {
        Ok(()) => {
            eprintln!(
                "kafclaw: exported {} journal entr{}",
                entries.len(),
                if entries.len() == 1 { "y" } else { "ies" }
            );
            exit::OK
        }
        Err(e) => {
            eprintln!("error: {e}");
            exit::RUNTIME
        }
    }
}
