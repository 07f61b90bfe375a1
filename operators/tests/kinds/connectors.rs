//! Sources and sinks: their config halves build no operator (`Built::Edge`: the runtime opens
//! them); sources have the default output, sinks none. The Kafka source's `dedup` is a source
//! stage over the table `<source>.dedup`; the local files' runtime halves round-trip records.

use serde_json::json;

use kafclaw_operators::api::kind::{Built, Kind};
use kafclaw_operators::api::operator::{Cause, Ports};
use kafclaw_operators::api::resources::Resources;
use kafclaw_operators::connectors::kafka::{KafkaSinkConfig, KafkaSourceConfig, KeyField};
use kafclaw_operators::connectors::{
    FileSinkConfig, FileSourceConfig, LineSource, RecordSink, RecordSource, StdinSourceConfig, StdoutSinkConfig,
    open_file_sink,
};
use kafclaw_operators::testing::{Tables, table_names};
use kafclaw_operators::{Envelope, TableSpec};

use super::{at, config, refused};

/// What every source and sink shares: built as an edge, no tables, no source stage (the
/// Kafka source's `dedup` aside), and `ports`.
fn assert_edge(kind: &impl Kind, node: &str, ports: Ports) {
    assert!(matches!(kind.build(node, &Resources::default()), Ok(Built::Edge)));
    assert_eq!(kind.ports(), ports);
    assert!(kind.tables(node).is_empty());
    assert!(kind.source_stage(node).expect("no option errors").is_none());
    assert!(kind.check(node, &[], &Resources::default()).is_empty());
}

fn no_ports() -> Ports {
    Ports { default: false, named: Vec::new() }
}

#[test]
fn sources_are_edges_with_one_default_output() {
    let file: FileSourceConfig = config("path = \"inbox.jsonl\"\nformat = \"jsonl\"");
    assert_eq!(file.path.get_ref(), "inbox.jsonl");
    assert_edge(&file, "inbox", Ports::single());
    assert_edge(&config::<StdinSourceConfig>(""), "stdin", Ports::single());
    assert_edge(&config::<KafkaSourceConfig>("topic = \"group.acme.requests\""), "requests", Ports::single());
    assert_eq!(Ports::single().port(None).map(|p| p.0), Some(0));
    assert!(refused::<FileSourceConfig>("path = \"a\"\nformat = \"csv\"").contains("unknown variant `csv`"));
    assert!(refused::<StdinSourceConfig>("path = \"a\"").contains("unknown field `path`"));
    assert!(refused::<KafkaSourceConfig>("topic = \"t\"\ngroup = \"g\"").contains("unknown field `group`"));
}

#[test]
fn sinks_are_edges_without_outputs() {
    assert_edge(&config::<FileSinkConfig>("path = \"out/answers.jsonl\"\nappend = true"), "answers", no_ports());
    assert_edge(&config::<StdoutSinkConfig>(""), "stdout", no_ports());
    let kafka: KafkaSinkConfig = config("topic = \"group.acme.control.roster\"\nkey = \"sender_id\"\ncompact = true");
    assert_eq!((kafka.key, kafka.compact), (KeyField::SenderId, true));
    assert_edge(&kafka, "roster-out", no_ports());
    assert_eq!(no_ports().port(None), None);
    assert_eq!(config::<KafkaSinkConfig>("topic = \"t\"").key, KeyField::CorrelationId);
    assert!(refused::<KafkaSinkConfig>("topic = \"t\"\nkey = \"payload\"").contains("unknown variant `payload`"));
    assert!(refused::<StdoutSinkConfig>("path = \"x\"").contains("unknown field `path`"));
    assert!(refused::<FileSinkConfig>("").contains("missing field `path`"));
}

#[test]
fn kafka_topics_are_checked() {
    let source: KafkaSourceConfig = config("topic = \"bad topic!\"");
    let errors = source.check("requests", &[], &Resources::default());
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].message, "`bad topic!` is not a valid Kafka topic name");
    let sink: KafkaSinkConfig = config(&format!("topic = \"{}\"", "t".repeat(250)));
    assert_eq!(sink.check("out", &[], &Resources::default()).len(), 1);
    let within: KafkaSourceConfig = config("topic = \"t\"\ndedup = true\ndedup_within = \"a while\"");
    assert_eq!(within.check("requests", &[], &Resources::default()).len(), 1);
    assert!(within.source_stage("requests").is_err());
    // Without `dedup`, `dedup_within` is not read.
    let off: KafkaSourceConfig = config("topic = \"t\"\ndedup_within = \"a while\"");
    assert!(off.check("requests", &[], &Resources::default()).is_empty());
}

#[test]
fn kafka_source_dedup_drops_a_repeated_id_in_its_table() {
    let c: KafkaSourceConfig = config("topic = \"group.acme.requests\"\ndedup = true\ndedup_within = \"10m\"");
    assert!(matches!(c.build("requests", &Resources::default()), Ok(Built::Edge)));
    assert_eq!(c.ports(), Ports::single());
    assert_eq!(c.tables("requests"), [TableSpec::expiring("requests.dedup", Some(600_000))]);
    assert_eq!(KafkaSourceConfig::dedup_table("requests"), "requests.dedup");
    let mut stage = c.source_stage("requests").unwrap().expect("dedup = true has a stage");
    let mut state = Tables::default();
    let admitted: Vec<bool> = ["a", "b", "a", "", "", "b", "c"]
        .map(|id| at("09:00:00", "s", id, json!({})))
        .iter()
        .map(|r| stage.admit(r, &mut state).unwrap())
        .collect();
    assert_eq!(admitted, [true, true, false, true, true, false, true], "an envelope without an id always passes");
    assert_eq!(state.keys_of("requests.dedup"), ["a", "b", "c"]);
    assert_eq!(state.written(), table_names(&c.tables("requests")));

    let mut broken = Tables::failing_on("requests.dedup");
    match stage.admit(&at("09:00:00", "s", "d", json!({})), &mut broken) {
        Err(Cause::State(e)) => assert_eq!(e.table, "requests.dedup"),
        other => panic!("a store failure is the store's, not the record's: {other:?}"),
    }
}

#[test]
fn file_sink_and_source_round_trip_records_line_by_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("missing/folder/out.jsonl");
    let records = [at("09:00:00", "alice", "1", json!({"n": 1})), at("09:00:01", "bob", "2", json!({"n": 2}))];
    for append in [false, true] {
        let mut sink = open_file_sink(&path, append).unwrap();
        for r in &records {
            sink.write(&r.envelope.encode()).unwrap();
        }
        sink.flush().unwrap();
    }
    let mut source = LineSource::open(&path).unwrap();
    assert_eq!(source.location(), path.display().to_string());
    let mut read = Vec::new();
    while let Some(raw) = source.next_raw().unwrap() {
        let e = Envelope::decode(&raw.bytes).unwrap();
        read.push((raw.line, e.sender_id, e.payload["n"].as_i64()));
    }
    let sent = |line, who: &str, n| (Some(line), who.to_owned(), Some(n));
    assert_eq!(read, [sent(1, "alice", 1), sent(2, "bob", 2), sent(3, "alice", 1), sent(4, "bob", 2)], "appended");
    let mut sink = open_file_sink(&path, false).unwrap();
    sink.write(b"{}").unwrap();
    sink.flush().unwrap();
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "{}\n", "replaced without `append`");
}
