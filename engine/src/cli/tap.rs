//! `kafclaw tap <topic> --where '<CEL>'`: follow a topic's envelopes, printing those the CEL
//! condition keeps — the `filter` operator's own compiler and variables (`type`, `payload`,
//! `correlation_id`, …, `meta.partition`, `meta.offset`; `meta.source` is `tap`).

use std::io::Write;
use std::ops::ControlFlow;
use std::sync::Arc;

use kafclaw_operators::api::record::{Origin, Record};
use kafclaw_operators::envelope::{Envelope, derive_trace_id};
use kafclaw_operators::lang::expr::Expr;

use super::common::{KafkaArgs, stop_on_signals};
use crate::exit;
use crate::kafka::ClientSettings;
use crate::kafka::inspect::follow::{FollowOptions, Seen, Start, follow};

/// Where `tap` starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum StartAt {
    /// Each partition's first record.
    Beginning,
    /// What arrives from now on.
    End,
}

/// Arguments of `kafclaw tap`.
#[derive(Debug, clap::Args)]
#[command(mut_args(KafkaArgs::no_topology_help))]
pub struct Args {
    /// The topic.
    pub topic: String,
    /// CEL condition over the envelope, as a `filter` operator's `where` (default: every
    /// envelope).
    #[arg(long = "where", value_name = "CEL")]
    pub condition: Option<String>,
    /// Where to start.
    #[arg(long, value_enum, default_value = "end")]
    pub from: StartAt,
    /// Stop once every partition is read to its end (default: follow until SIGINT/SIGTERM).
    #[arg(long)]
    pub exit_at_end: bool,
    /// Stop after this many matching envelopes.
    #[arg(long, value_name = "N")]
    pub max: Option<u64>,
    /// Also show records of open and aborted transactions (isolation.level = read_uncommitted).
    #[arg(long)]
    pub uncommitted: bool,
    /// Print `{"partition", "offset", "key", "envelope"}` per match instead of the envelope alone.
    #[arg(long)]
    pub meta: bool,
    /// The bootstrap servers.
    #[command(flatten)]
    pub kafka: KafkaArgs,
}

/// What a tap saw.
#[derive(Debug, Default)]
struct Counts {
    read: u64,
    matched: u64,
    not_envelopes: u64,
    eval_errors: u64,
    first_error: Option<String>,
}

/// Follows the topic, printing the matching envelopes (one JSON line each) on stdout and a
/// summary on stderr.
pub(super) fn execute(args: Args) -> i32 {
    let condition = match args.condition.as_deref().map(Expr::compile).transpose() {
        Ok(c) => c,
        Err(errors) => {
            let source = args.condition.as_deref().unwrap_or_default();
            for e in errors {
                eprintln!("error: --where: {}", e.message);
                eprintln!("    {source}");
                eprintln!("    {}^", " ".repeat(e.char_offset));
                if let Some(h) = e.hint {
                    eprintln!("    = hint: {h}");
                }
            }
            return exit::INVALID;
        }
    };
    let settings = ClientSettings::from_env(args.kafka.brokers.clone());
    let stop = match stop_on_signals() {
        Ok(s) => s,
        Err(code) => return code,
    };
    let opts = FollowOptions {
        start: match args.from {
            StartAt::Beginning => Start::Beginning,
            StartAt::End => Start::End,
        },
        uncommitted: args.uncommitted,
        exit_at_end: args.exit_at_end,
        stop: &stop,
    };
    let location: Arc<str> = Arc::from(args.topic.as_str());
    let source: Arc<str> = Arc::from("tap");
    let mut counts = Counts::default();
    let mut out = std::io::stdout().lock();
    let result = follow(&settings, &args.topic, opts, |seen| {
        counts.read += 1;
        let Some(bytes) = seen.value else {
            counts.not_envelopes += 1;
            return ControlFlow::Continue(());
        };
        let envelope = match Envelope::decode(bytes) {
            Ok(e) => e,
            Err(e) => {
                counts.not_envelopes += 1;
                tracing::debug!(partition = seen.partition, offset = seen.offset, error = %e, "tap: not an envelope");
                return ControlFlow::Continue(());
            }
        };
        if let Some(c) = &condition {
            let record = record_of(envelope, &source, &location, &seen);
            match c.eval_bool(&record) {
                Ok(true) => {}
                Ok(false) => return ControlFlow::Continue(()),
                Err(e) => {
                    counts.eval_errors += 1;
                    counts.first_error.get_or_insert(e);
                    return ControlFlow::Continue(());
                }
            }
        }
        counts.matched += 1;
        if print(&mut out, &seen, bytes, args.meta).is_err() {
            return ControlFlow::Break(()); // stdout closed (`| head`)
        }
        match args.max {
            Some(max) if counts.matched >= max => ControlFlow::Break(()),
            _ => ControlFlow::Continue(()),
        }
    });
    let errors = match &counts.first_error {
        Some(e) => format!(", {} could not be evaluated (first: {e})", counts.eval_errors),
        None => String::new(),
    };
    eprintln!(
        "kafclaw: tap {}: {} matched of {} read, {} not envelopes{errors}",
        args.topic, counts.matched, counts.read, counts.not_envelopes
    );
    match result {
        Ok(()) => exit::OK,
        Err(e) => {
            eprintln!("error: {e}");
            exit::RUNTIME
        }
    }
}

/// The record the condition sees: as a `kafka` source's task builds it.
fn record_of(envelope: Envelope, source: &Arc<str>, location: &Arc<str>, seen: &Seen<'_>) -> Record {
    let trace_id = envelope.trace_id.clone().unwrap_or_else(|| derive_trace_id(location, seen.partition, seen.offset));
    let origin = Origin {
        source: source.clone(),
        location: location.clone(),
        partition: seen.partition,
        offset: seen.offset,
        line: None,
        input_id: envelope.id.clone(),
        input_span_id: envelope.span_id.clone(),
        trace_id,
    };
    Record { envelope, origin: Arc::new(origin) }
}

/// Prints one match: the envelope as read (one line), or wrapped with its coordinates.
fn print(out: &mut impl Write, seen: &Seen<'_>, bytes: &[u8], meta: bool) -> std::io::Result<()> {
    let text = String::from_utf8_lossy(bytes);
    let text = text.trim_end();
    if meta {
        let key = seen.key.map(|k| serde_json::Value::String(String::from_utf8_lossy(k).into_owned()));
        writeln!(
            out,
            r#"{{"partition":{},"offset":{},"key":{},"envelope":{text}}}"#,
            seen.partition,
            seen.offset,
            key.unwrap_or(serde_json::Value::Null)
        )?;
    } else {
        writeln!(out, "{text}")?;
    }
    out.flush()
}
