//! The runtime's restore against the real broker, large enough for the bulk path (sorted SST
//! files ingested, `kafclaw_state::RocksStore::load`): the state equals the changelog's latest
//! value per key (tombstones delete, records of inputs not yet committed are skipped), the
//! checkpoints reach the changelog's end, and a second restore from those checkpoints applies
//! only what came after; readers sharing a table's partitions, with many small loads and a
//! reset marker mid-partition, restore the same state as one reader.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use kafclaw_engine::compiler::{PhysicalPlan, SourceFile, compile_source};
use kafclaw_engine::kafka::ClientSettings;
use kafclaw_engine::kafka::instance::headers;
use kafclaw_engine::kafka::restore::{RestoreContext, RestoreJob, RestoreOptions, restore_with};
use kafclaw_engine::kafka::topics::{changelog_topic, ensure_topics};
use kafclaw_engine::metrics::InstanceMetrics;
use kafclaw_state::{Epoch, RocksStore, StateStore};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

use crate::support::{brokers, config, create_topic, unique};

const PARTITIONS: i32 = 3;
/// Input offsets at or above this are not committed: their changelog records are skipped.
const COMMITTED: i64 = 9_000;

/// Changelog record `i`: key `k{i % 5000}`, every 11th a tombstone, input offset
/// `(i / 3) % 12,000` (so records 27,000..36,000 are of uncommitted inputs, later ones not).
fn record(i: usize) -> (i32, String, Option<Vec<u8>>, i64) {
    let value = (!i.is_multiple_of(11)).then(|| format!("{i:0>150}").into_bytes());
    ((i % PARTITIONS as usize) as i32, format!("k{}", i % 5000), value, ((i / 3) % 12_000) as i64)
}

/// A count topology (table `t`) over a new input of `PARTITIONS` partitions, its changelog
/// created: the plan, the client settings, the input topic and the changelog topic.
fn setup(prefix: &str) -> (PhysicalPlan, ClientSettings, String, String) {
    let name = unique(prefix);
    let input = format!("{name}-in");
    let topology = format!(
        "[topology]\nname = \"{name}\"\n[sources.in]\ntype = \"kafka\"\ntopic = \"{input}\"\n[operators.t]\ntype = \"count\"\ninputs = [\"in\"]\nby = 'correlation_id'\n[sinks.out]\ntype = \"kafka\"\ninputs = [\"t\"]\ntopic = \"{name}-out\"\n"
    );
    let plan = compile_source(SourceFile::new("restore.toml", topology)).unwrap().plan;
    let mut settings = ClientSettings::new(&Default::default(), std::iter::empty());
    settings.set("bootstrap.servers", brokers());
    create_topic(&input, PARTITIONS);
    ensure_topics(&settings, &plan, PARTITIONS, 1, Duration::from_secs(30)).unwrap();
    let topic = changelog_topic(&plan, "t");
    (plan, settings, input, topic)
}

/// Sends `rec`, waiting while the producer's queue is full.
fn send(producer: &BaseProducer, mut rec: BaseRecord<'_, [u8], [u8]>) {
    while let Err((_, r)) = producer.send(rec) {
        producer.poll(Duration::from_millis(5));
        rec = r;
    }
    producer.poll(Duration::ZERO);
}

/// Sends changelog record `i` ([`record`]) with its input coordinates in the headers.
fn send_record(producer: &BaseProducer, topic: &str, input: &str, i: usize) {
    let (partition, key, value, input_offset) = record(i);
    let (ip, io) = (partition.to_string(), input_offset.to_string());
    let headers = OwnedHeaders::new()
        .insert(Header { key: headers::INPUT_TOPIC, value: Some(input.as_bytes()) })
        .insert(Header { key: headers::INPUT_PARTITION, value: Some(ip.as_bytes()) })
        .insert(Header { key: headers::INPUT_OFFSET, value: Some(io.as_bytes()) });
    let mut rec = BaseRecord::to(topic).partition(partition).key(key.as_bytes()).headers(headers);
    if let Some(v) = &value {
        rec = rec.payload(v.as_slice());
    }
    send(producer, rec);
}

#[test]
fn a_large_restore_bulk_loads_the_latest_committed_values_and_resumes_from_its_checkpoints() {
    let (plan, settings, input, topic) = setup("restore-bulk");
    let producer: BaseProducer = config().set("linger.ms", "20").create().unwrap();
    let send = |range: std::ops::Range<usize>| {
        for i in range {
            send_record(&producer, &topic, &input, i);
        }
        producer.flush(Duration::from_secs(60)).unwrap();
    };
    // What the store must hold: the latest committed record of every key, per partition.
    let expected = |upto: usize| {
        let mut state: BTreeMap<(i32, String), Option<Vec<u8>>> = BTreeMap::new();
        for i in 0..upto {
            let (partition, key, value, input_offset) = record(i);
            if input_offset < COMMITTED {
                state.insert((partition, key), value);
            }
        }
        state.into_iter().filter_map(|(k, v)| v.map(|v| (k, v))).collect::<BTreeMap<_, _>>()
    };
    let committed: HashMap<(String, i32), i64> = (0..PARTITIONS).map(|p| ((input.clone(), p), COMMITTED)).collect();
    let jobs: Vec<RestoreJob> =
        (0..PARTITIONS).map(|partition| RestoreJob { sub: 0, table: "t".into(), partition, journal: false }).collect();
    let dir = tempfile::tempdir().unwrap();
    let mut store = Epoch::new(Box::new(RocksStore::open(dir.path()).unwrap()) as Box<dyn StateStore>);

    let metrics = InstanceMetrics::default();
    let context = RestoreContext { plan: &plan, settings: &settings, committed: &committed, metrics: &metrics };
    // 45,000 records, ~7 MB, read by one reader: one load above the bulk-load threshold (with
    // more readers each hands over its share; the readers test covers those).
    let one_reader = RestoreOptions { readers: 1, ..RestoreOptions::default() };
    let first = 45_000;
    send(0..first);
    restore_with(&context, &mut store, &jobs, one_reader).unwrap();
    let want = expected(first);
    assert!(want.len() > 1000, "the test checks little: {} keys", want.len());
    assert_eq!(stored(&store), want, "state after the bulk restore");
    for p in 0..PARTITIONS {
        let end = (first as i64 + PARTITIONS as i64 - 1 - p as i64) / PARTITIONS as i64;
        assert_eq!(store.store().checkpoint("t", p as u32).unwrap(), Some(end), "partition {p}'s checkpoint");
    }
    // Everything written is on disk: a reopened store holds the same.
    drop(store);
    let mut store = Epoch::new(Box::new(RocksStore::open(dir.path()).unwrap()) as Box<dyn StateStore>);
    assert_eq!(stored(&store), want, "state after reopening");

    // More records; the second restore starts at the checkpoints (a small load).
    send(first..first + 3_000);
    restore_with(&context, &mut store, &jobs, one_reader).unwrap();
    assert_eq!(stored(&store), expected(first + 3_000), "state after the incremental restore");
}

/// The state in `store` of table `t`, by (partition, key).
fn stored(store: &Epoch<Box<dyn StateStore>>) -> BTreeMap<(i32, String), Vec<u8>> {
    let mut got = BTreeMap::new();
    for p in 0..PARTITIONS {
        for (k, v) in store.store().scan_partition("t", p as u32).unwrap() {
            got.insert((p, String::from_utf8(k).unwrap()), v);
        }
    }
    got
}

#[test]
fn readers_sharing_the_partitions_restore_what_one_reader_does_through_a_reset_marker() {
    let (plan, settings, input, topic) = setup("restore-readers");
    let producer: BaseProducer = config().set("linger.ms", "20").create().unwrap();
    // 30,000 records (the last 3,000 of uncommitted inputs), and on partition 1 a reset marker
    // after the first 20,000: what came before it on that partition is forgotten.
    const MARKER_AFTER: usize = 20_000;
    const MARKED: i32 = 1;
    for i in 0..30_000 {
        if i == MARKER_AFTER {
            producer.flush(Duration::from_secs(60)).unwrap();
            let marker = BaseRecord::to(&topic)
                .partition(MARKED)
                .key(headers::RESET_KEY)
                .headers(headers::reset_marker("earliest"));
            send(&producer, marker);
            producer.flush(Duration::from_secs(60)).unwrap();
        }
        send_record(&producer, &topic, &input, i);
    }
    producer.flush(Duration::from_secs(60)).unwrap();
    let mut want: BTreeMap<(i32, String), Option<Vec<u8>>> = BTreeMap::new();
    for i in 0..30_000 {
        let (partition, key, value, input_offset) = record(i);
        if input_offset < COMMITTED && !(partition == MARKED && i < MARKER_AFTER) {
            want.insert((partition, key), value);
        }
    }
    let want: BTreeMap<_, _> = want.into_iter().filter_map(|(k, v)| v.map(|v| (k, v))).collect();
    assert!(want.len() > 1000, "the test checks little: {} keys", want.len());

    let committed: HashMap<(String, i32), i64> = (0..PARTITIONS).map(|p| ((input.clone(), p), COMMITTED)).collect();
    let jobs: Vec<RestoreJob> =
        (0..PARTITIONS).map(|partition| RestoreJob { sub: 0, table: "t".into(), partition, journal: false }).collect();
    // One reader per partition at most: 4 asked for is 3.
    for readers in 1..=PARTITIONS as usize + 1 {
        let metrics = InstanceMetrics::default();
        let context = RestoreContext { plan: &plan, settings: &settings, committed: &committed, metrics: &metrics };
        let dir = tempfile::tempdir().unwrap();
        let mut store = Epoch::new(Box::new(RocksStore::open(dir.path()).unwrap()) as Box<dyn StateStore>);
        // 256 KB buffered in all, each reader handing over at its share: many hand-overs
        // while the others read.
        let options = RestoreOptions { readers, load_bytes: 256 << 10 };
        restore_with(&context, &mut store, &jobs, options).unwrap();
        assert_eq!(stored(&store), want, "state restored by {readers} reader(s)");
        // Every changelog record read once: no partition read by two readers, none skipped.
        assert_eq!(metrics.restored_records("t"), 30_001, "records read by {readers} reader(s)");
        for p in 0..PARTITIONS {
            let records = 30_000 / PARTITIONS as i64 + i64::from(p == MARKED);
            assert_eq!(
                store.store().checkpoint("t", p as u32).unwrap(),
                Some(records),
                "partition {p}'s checkpoint after {readers} reader(s)"
            );
        }
    }
}
