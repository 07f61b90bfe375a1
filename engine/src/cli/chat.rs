//! `kafclaw chat`: an interactive terminal session with an agent group. Each line typed is a
//! task for the group (or `--skill`); while it runs, the model calls, tool calls and
//! delegations of its trace are shown as they arrive, the answer as it streams (the
//! `streaming` task statuses of an `llm` with streaming on) and then whole. `/trace` prints
//! the last task's causal chain across agents (as `kafclaw trace` does, from a timeline this
//! session keeps by following the group); `/help`, `/quit`. History with the arrow keys
//! (rustyline).
//!
//! `--local` talks to a local topology instead, with no Kafka: the standard agent built in
//! (`kafclaw agent`'s), or `--topology FILE` (an `inbox` source, a `responses` sink, and a
//! `traces` sink for the spans). Each line runs it once, as `kafclaw agent -m` does: its
//! model and tool calls are shown, then the answer; `/trace` prints the last run's spans.

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use kafclaw_operators::envelope::EnvelopeType;
use rustyline::error::ReadlineError;
use serde_json::Value;

use super::common::KafkaArgs;
use crate::exit;
use crate::gateway::{ConsoleTimeline, new_task};
use crate::kafka::ClientSettings;
use crate::kafka::group::gateway_feed::{TaskIo, is_final};

/// Arguments of `kafclaw chat`.
#[derive(Debug, clap::Args)]
#[command(mut_args(KafkaArgs::no_topology_help))]
pub struct Args {
    /// The group.
    #[arg(long, required_unless_present = "local", conflicts_with = "local")]
    pub group: Option<String>,
    /// Talk to a local topology, with no Kafka: the built-in standard agent, or --topology.
    #[arg(long)]
    pub local: bool,
    /// With --local: the agent topology (an `inbox` source, a `responses` sink, a `traces`
    /// sink for the spans) instead of the built-in one.
    #[arg(long, value_name = "FILE", requires = "local")]
    pub topology: Option<std::path::PathBuf>,
    /// Send each request to this skill (`group.<g>.skill.<s>.requests`) instead of the group.
    #[arg(long)]
    pub skill: Option<String>,
    /// The sender id (and `requester_id`) of the requests.
    #[arg(long, default_value = "chat")]
    pub sender_id: String,
    /// The zone of the requests (default: none).
    #[arg(long)]
    pub zone: Option<String>,
    /// How long to wait for an answer before giving the prompt back.
    #[arg(long, value_name = "DURATION", default_value = "120s", value_parser = humantime::parse_duration)]
    pub wait: Duration,
    /// Partitions of the answer topics created when missing.
    #[arg(long, default_value_t = 6)]
    pub partitions: i32,
    /// The bootstrap servers.
    #[command(flatten)]
    pub kafka: KafkaArgs,
}

const HELP: &str = "Type a request and press Enter; the answer follows. /trace: the last task's causal chain. \
/help: this. /quit or Ctrl-D: leave.";

/// Runs the session until `/quit`, end of input or a signal.
pub(super) fn execute(args: Args) -> i32 {
    let Some(group) = args.group.clone() else { return local(&args) };
    let settings = ClientSettings::from_env(args.kafka.brokers.clone());
    // No signal handler: Ctrl-C at the prompt is the line editor's (a new line); anywhere else,
    // and SIGTERM, end the session as they end any command (the readers' threads with it).
    let stop = Arc::new(AtomicBool::new(false));
    let g = &group;
    let (kind, topic) = match &args.skill {
        None => (EnvelopeType::Request, format!("group.{g}.requests")),
        Some(s) => (EnvelopeType::SkillRequest, format!("group.{g}.skill.{s}.requests")),
    };
    let mut follow =
        vec![format!("group.{g}.responses"), format!("group.{g}.tasks.status"), format!("group.{g}.traces")];
    follow.extend(args.skill.iter().map(|s| format!("group.{g}.skill.{s}.responses")));
    let io = match TaskIo::start(&settings, &follow, args.partitions, stop.clone()) {
        Ok(io) => io,
        Err(e) => {
            eprintln!("error: {e}");
            return exit::RUNTIME;
        }
    };
    let skills: Vec<String> = args.skill.iter().cloned().collect();
    let timeline = match ConsoleTimeline::start(&settings, g, &skills, None, stop.clone()) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: the session's timeline: {e}");
            return exit::RUNTIME;
        }
    };
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: {e}");
            return exit::RUNTIME;
        }
    };
    let mut editor = match rustyline::DefaultEditor::new() {
        Ok(e) => e,
        Err(e) => {
            eprintln!("error: the line editor: {e}");
            return exit::RUNTIME;
        }
    };
    println!(
        "kafclaw chat: group {g}{}, as {}. {HELP}",
        args.skill.as_ref().map_or(String::new(), |s| format!(", skill {s}")),
        args.sender_id
    );
    let mut last: Option<String> = None;
    // A task that asked for input: the next line continues it (same correlation id).
    let mut continuing: Option<String> = None;
    loop {
        let prompt = if continuing.is_some() { "you (answering)> " } else { "you> " };
        let line = match next_line(&mut editor, prompt) {
            Ok(Some(l)) => l,
            Ok(None) => return exit::OK,
            Err(code) => return code,
        };
        let text = line.as_str();
        match text {
            "/quit" | "/exit" => return exit::OK,
            "/help" => println!("{HELP}"),
            "/trace" => match &last {
                None => println!("No task yet."),
                Some(id) => print_chain(&timeline, id),
            },
            _ if text.starts_with('/') => println!("Unknown command {text}. {HELP}"),
            _ => {
                let mut task = new_task(kind, text, &args.sender_id, args.zone.as_deref());
                if let Some(id) = continuing.take() {
                    task.correlation_id = id.clone();
                    task.payload["task_id"] = Value::String(id);
                }
                let id = task.correlation_id.clone();
                // Subscribed before sending: no answer can slip past.
                let answers = io.events.subscribe();
                if let Err(e) = rt.block_on(io.submit(&topic, &task)) {
                    eprintln!("error: {e}");
                    continue;
                }
                println!("  task {id} sent to {topic}");
                if follow_task(&io, answers, &id, args.wait) == Turn::NeedsInput {
                    continuing = Some(id.clone());
                }
                last = Some(id);
            }
        }
    }
}

/// The session with a local topology (`--local`).
fn local(args: &Args) -> i32 {
    let mut editor = match rustyline::DefaultEditor::new() {
        Ok(e) => e,
        Err(e) => {
            eprintln!("error: the line editor: {e}");
            return exit::RUNTIME;
        }
    };
    let which = args.topology.as_ref().map_or_else(|| "the built-in agent".to_owned(), |t| t.display().to_string());
    println!("kafclaw chat: {which}, locally, as {}. {HELP}", args.sender_id);
    let mut last: Vec<Value> = Vec::new();
    loop {
        let line = match next_line(&mut editor, "you> ") {
            Ok(Some(l)) => l,
            Ok(None) => return exit::OK,
            Err(code) => return code,
        };
        let text = line.as_str();
        match text {
            "/quit" | "/exit" => return exit::OK,
            "/help" => println!("{HELP}"),
            "/trace" if last.is_empty() => println!("No task yet."),
            "/trace" => {
                for span in &last {
                    println!("  {}", clean(&describe_span(span)));
                }
            }
            _ if text.starts_with('/') => println!("Unknown command {text}. {HELP}"),
            _ => match crate::agent::run_agent(text, &args.sender_id, args.topology.as_deref()) {
                Ok(a) => {
                    for span in &a.traces {
                        println!("  {}", clean(&describe_span(span)));
                    }
                    let p = &a.response["payload"];
                    let answer =
                        ["result", "content", "answer"].iter().find_map(|k| p[*k].as_str()).unwrap_or_default();
                    let who = clean(a.response["sender_id"].as_str().unwrap_or("agent"));
                    println!("{who}: {}", clean(answer));
                    if a.recorded {
                        println!("  (a recorded answer: no live model is configured; set KAFCLAW_MODEL_URL)");
                    }
                    last = a.traces;
                }
                Err(e) => println!("error: {}", clean(&e.to_string())),
            },
        }
    }
}

/// The next non-empty line typed at `prompt`, trimmed and added to the history; `None` at
/// the end of input (Ctrl-D); Ctrl-C asks again. A terminal that fails: its exit code, said.
fn next_line(editor: &mut rustyline::DefaultEditor, prompt: &str) -> Result<Option<String>, i32> {
    loop {
        match editor.readline(prompt) {
            Ok(l) if l.trim().is_empty() => {}
            Ok(l) => {
                let text = l.trim().to_owned();
                let _ = editor.add_history_entry(text.as_str());
                return Ok(Some(text));
            }
            Err(ReadlineError::Interrupted) => {}
            Err(ReadlineError::Eof) => return Ok(None),
            Err(e) => {
                eprintln!("error: reading the terminal: {e}");
                return Err(exit::RUNTIME);
            }
        }
    }
}

/// How a turn ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Turn {
    /// The task answered (or ended).
    Done,
    /// The task asks for input: the next line continues it.
    NeedsInput,
    /// No answer in time.
    Waited,
}

/// Text from an agent as the terminal may show it: control characters (escape sequences,
/// which could rewrite the screen, the title or the clipboard) left out, but new lines and
/// tabs.
fn clean(text: &str) -> String {
    text.chars().filter(|c| !c.is_control() || matches!(c, '\n' | '\t')).collect()
}

/// Prints what task `id` does until its answer (or `wait`): new trace spans (model calls,
/// tool calls and delegations), streamed deltas, statuses, then the answer or the question
/// it asks.
fn follow_task(
    io: &TaskIo,
    mut answers: tokio::sync::broadcast::Receiver<Arc<Value>>,
    id: &str,
    wait: Duration,
) -> Turn {
    let deadline = Instant::now() + wait;
    let mut spans_shown = 0;
    let mut streaming = false;
    let mut out = std::io::stdout();
    loop {
        let spans: Vec<Value> = io.view.lock().unwrap_or_else(|p| p.into_inner()).trace(id).to_vec();
        for span in &spans[spans_shown.min(spans.len())..] {
            if streaming {
                println!();
                streaming = false;
            }
            println!("  {}", clean(&describe_span(span)));
        }
        spans_shown = spans.len();
        let mut done = None;
        loop {
            match answers.try_recv() {
                Ok(v) if v["correlation_id"] == id => {
                    let p = &v["payload"];
                    if v["type"] == "task_status" && p["status"] == "streaming" {
                        if !streaming {
                            print!("  ");
                            streaming = true;
                        }
                        print!("{}", clean(p["delta"].as_str().unwrap_or("")));
                        let _ = out.flush();
                    } else if is_final(&v) || p["status"] == "input_required" {
                        done = Some(v);
                        break;
                    } else if v["type"] == "task_status" {
                        println!("  status {}", clean(p["status"].as_str().unwrap_or("?")));
                    }
                }
                Ok(_) => {}
                Err(tokio::sync::broadcast::error::TryRecvError::Lagged(n)) => {
                    tracing::warn!(missed = n, "answers came faster than shown");
                }
                Err(_) => break,
            }
        }
        // Or the answer arrived before this session subscribed, as the view holds it.
        let done = done.or_else(|| {
            let view = io.view.lock().unwrap_or_else(|p| p.into_inner());
            view.answer(id).filter(|v| is_final(v)).cloned().map(Arc::new)
        });
        if let Some(v) = done {
            if streaming {
                println!();
            }
            // Spans committed with the answer arrive with it: show them first.
            std::thread::sleep(Duration::from_millis(200));
            let spans: Vec<Value> = io.view.lock().unwrap_or_else(|p| p.into_inner()).trace(id).to_vec();
            for span in &spans[spans_shown.min(spans.len())..] {
                println!("  {}", clean(&describe_span(span)));
            }
            let p = &v["payload"];
            let text = ["content", "result", "summary", "question"]
                .iter()
                .find_map(|k| p[*k].as_str().filter(|s| !s.is_empty()))
                .map(clean);
            let status = clean(p["status"].as_str().unwrap_or("completed"));
            let who = clean(v["sender_id"].as_str().unwrap_or("?"));
            if status == "input_required" {
                println!("{who} asks: {} (your next line answers)", text.unwrap_or_default());
                return Turn::NeedsInput;
            }
            match text {
                Some(t) if status == "completed" => println!("{who}: {t}"),
                Some(t) => println!("{who} ({status}): {t}"),
                None => println!("{who}: {status}"),
            }
            return Turn::Done;
        }
        if Instant::now() > deadline {
            println!(
                "  no answer in {} (the task goes on; /trace shows what happened so far)",
                humantime::format_duration(wait)
            );
            return Turn::Waited;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A trace span as one line: `tool ask-billing (1435 ms): {"description":…} -> answer…`.
fn describe_span(span: &Value) -> String {
    let p = &span["payload"];
    let title = p["title"].as_str().unwrap_or("span");
    let ms = p["duration_ms"].as_u64().map_or(String::new(), |d| format!(" ({d} ms)"));
    let mut content: String = p["content"].as_str().unwrap_or("").chars().take(200).collect();
    if p["ok"] == false {
        content = format!("failed: {content}");
    }
    let mark = if p["span_type"] == "tool" { "⚙" } else { "·" };
    format!("{mark} {title}{ms}: {content}")
}

/// Prints the causal chain of `id` (as `kafclaw trace` does).
fn print_chain(timeline: &ConsoleTimeline, id: &str) {
    // The session's timeline follows the group from its start: give it a moment to catch up.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match timeline.chain(id) {
            Ok(chain) if !chain.is_empty() && chain.iter().any(|e| e.kind_of_envelope.ends_with("response")) => {
                for e in &chain {
                    println!("  {}", clean(&crate::timeline::describe(e)));
                }
                return;
            }
            Ok(chain) if Instant::now() > deadline => {
                for e in &chain {
                    println!("  {}", clean(&crate::timeline::describe(e)));
                }
                if chain.is_empty() {
                    println!("  nothing recorded for {id} yet");
                }
                return;
            }
            Ok(_) => std::thread::sleep(Duration::from_millis(200)),
            Err(e) => {
                eprintln!("error: {e}");
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_read_as_one_line_each() {
        let tool = serde_json::json!({"payload": {"span_type": "tool", "title": "tool ask-billing", "duration_ms": 1435,
            "content": "{\"description\":\"refunds\"} -> answer", "ok": true}});
        assert_eq!(describe_span(&tool), "⚙ tool ask-billing (1435 ms): {\"description\":\"refunds\"} -> answer");
        let failed =
            serde_json::json!({"payload": {"span_type": "llm", "title": "llm m", "content": "timeout", "ok": false}});
        assert_eq!(describe_span(&failed), "· llm m: failed: timeout");
    }

    #[test]
    fn an_agents_text_cannot_drive_the_terminal() {
        let hostile = "ok\u{1b}]52;c;aGVsbG8=\u{7}\u{1b}[2J\u{9b}31m\r\nnext\tcol";
        assert_eq!(clean(hostile), "ok]52;c;aGVsbG8=[2J31m\nnext\tcol");
    }
}
