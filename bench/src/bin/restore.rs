//! Restore throughput: how fast an instance rebuilds a state table from its changelog.
//! Fills a 6-partition changelog with N records (16-byte keys, 100-byte values, the input
//! coordinate headers the runtime writes), then restores every partition into a fresh RocksDB
//! with the runtime's own restore code, with one changelog reader and with the runtime's
//! default (one per core), then reads the changelog without writing state (the broker's and
//! librdkafka's share) with as many readers, and writes the figures, with the process's CPU
//! seconds in each phase, into docs/benchmarks.md.
//!
//!   cargo build --release -p kafclaw-bench && target/release/restore --records 500000

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Result;
use clap::Parser;
use kafclaw_bench::procstat::{self, self_cpu_secs};
use kafclaw_engine::compiler::{SourceFile, compile_source};
use kafclaw_engine::kafka::ClientSettings;
use kafclaw_engine::kafka::instance::headers;
use kafclaw_engine::kafka::restore::{
    RestoreContext, RestoreJob, RestoreOptions, as_pairs, default_readers, reader_defaults, restore_with,
};
use kafclaw_engine::kafka::topics::{changelog_topic, ensure_topics};
use kafclaw_state::{Epoch, RocksStore, StateStore};
use rdkafka::ClientConfig;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

#[derive(Parser)]
struct Args {
    /// Bootstrap servers.
    #[arg(long, env = "KAFCLAW_TEST_BROKERS", default_value = "127.0.0.1:9092")]
    brokers: String,
    /// Changelog records to restore.
    #[arg(long, default_value_t = 500_000)]
    records: usize,
    /// Reader counts to measure, comma separated (default: 1 and the runtime's default, one
    /// per core).
    #[arg(long, value_delimiter = ',')]
    readers: Vec<usize>,
    /// The broker's process name (`comm`), to count its CPU seconds too.
    #[arg(long, default_value = "tansu")]
    broker_process: String,
    /// Markdown file whose `restore` section is replaced with the result.
    #[arg(long, default_value = "docs/benchmarks.md")]
    report: PathBuf,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let millis = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_millis();
    let stamp = format!("{}-{millis}", std::process::id());
    let name = format!("bench-restore-{stamp}");
    let input = format!("{name}-in");
    let topology = format!(
        "[topology]\nname = \"{name}\"\n[sources.in]\ntype = \"kafka\"\ntopic = \"{input}\"\n[operators.t]\ntype = \"count\"\ninputs = [\"in\"]\nby = 'correlation_id'\n[sinks.out]\ntype = \"kafka\"\ninputs = [\"t\"]\ntopic = \"{name}-out\"\n"
    );
    let compiled =
        compile_source(SourceFile::new("restore-bench.toml", topology)).map_err(|f| anyhow::anyhow!("{f}"))?;
    let mut settings = ClientSettings::new(&Default::default(), std::env::vars());
    settings.set("bootstrap.servers", args.brokers.clone());

    // The source topic first (changelogs are co-partitioned with it), then the rest.
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &args.brokers);
    let admin: rdkafka::admin::AdminClient<rdkafka::client::DefaultClientContext> = c.create()?;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let new = rdkafka::admin::NewTopic::new(&input, 6, rdkafka::admin::TopicReplication::Fixed(1));
    rt.block_on(admin.create_topics([&new], &rdkafka::admin::AdminOptions::new()))?;
    ensure_topics(&settings, &compiled.plan, 6, 1, Duration::from_secs(30))?;

    let topic = changelog_topic(&compiled.plan, "t");
    let p: BaseProducer = c.clone().set("linger.ms", "20").create()?;
    let value = [b'7'; 100];
    let mut bytes = 0u64;
    for i in 0..args.records {
        let key = format!("key-{i:012}");
        let partition = (i % 6) as i32;
        let offset = (i / 6).to_string();
        let part = partition.to_string();
        let headers = OwnedHeaders::new()
            .insert(Header { key: headers::INPUT_TOPIC, value: Some(input.as_bytes()) })
            .insert(Header { key: headers::INPUT_PARTITION, value: Some(part.as_bytes()) })
            .insert(Header { key: headers::INPUT_OFFSET, value: Some(offset.as_bytes()) });
        bytes += (key.len() + value.len()) as u64;
        let rec = BaseRecord::to(&topic).partition(partition).key(key.as_bytes()).payload(&value[..]).headers(headers);
        kafclaw_bench::send_blocking(&p, rec);
    }
    p.flush(Duration::from_secs(120))?;

    // Every input counts as committed.
    let committed: HashMap<(String, i32), i64> = (0..6).map(|p| ((input.clone(), p), i64::MAX)).collect();
    let jobs: Vec<RestoreJob> =
        (0..6).map(|partition| RestoreJob { sub: 0, table: "t".into(), partition, journal: false }).collect();
    let broker = procstat::find(&args.broker_process);
    let broker_cpu = || broker.and_then(|pid| procstat::usage(pid).ok()).map_or(f64::NAN, |u| u.cpu_secs);
    // As the restore: at least one reader, at most one per partition.
    let counts: Vec<usize> = if args.readers.is_empty() { vec![1, default_readers()] } else { args.readers.clone() };
    let mut counts: Vec<usize> = counts.into_iter().map(|n| n.clamp(1, 6)).collect();
    counts.dedup();
    let mut runs = Vec::new();
    for readers in counts {
        let dir = std::env::temp_dir().join(format!("kafclaw-restore-bench-{stamp}-{readers}"));
        let mut store = Epoch::new(Box::new(RocksStore::open(&dir)?) as Box<dyn StateStore>);
        let (started, cpu, broker_before) = (Instant::now(), self_cpu_secs(), broker_cpu());
        let metrics = Default::default();
        let context =
            RestoreContext { plan: &compiled.plan, settings: &settings, committed: &committed, metrics: &metrics };
        let options = RestoreOptions { readers, ..RestoreOptions::default() };
        restore_with(&context, &mut store, &jobs, options).map_err(|e| anyhow::anyhow!(e))?;
        let (secs, cpu, broker) =
            (started.elapsed().as_secs_f64(), self_cpu_secs() - cpu, broker_cpu() - broker_before);
        let restored: usize = (0..6).map(|p| store.store().scan_partition("t", p).map(|e| e.len()).unwrap_or(0)).sum();
        anyhow::ensure!(restored == args.records, "restored {restored} of {} records", args.records);
        drop(store);
        let _ = std::fs::remove_dir_all(&dir);
        let raw_broker_before = broker_cpu();
        let (raw, raw_cpu) = raw_read(&settings, &topic, args.records, readers)?;
        let raw_broker = broker_cpu() - raw_broker_before;
        runs.push((readers, secs, cpu, broker, raw, raw_cpu, raw_broker));
    }

    let mb = bytes as f64 / (1024.0 * 1024.0);
    let rows: String = runs
        .iter()
        .map(|&(readers, secs, cpu, broker, raw, raw_cpu, raw_broker)| {
            format!(
                "| {readers} | {secs:.2} s | **{:.1} MB/s** | {:.0} | {cpu:.2} s | {broker:.2} s | {raw:.2} s | {:.1} MB/s | {raw_cpu:.2} s | {raw_broker:.2} s |\n",
                mb / secs,
                args.records as f64 / secs,
                mb / raw
            )
        })
        .collect();
    let table = format!(
        "{} changelog records (16-byte keys, 100-byte values, 55.3 MB of keys and values; MB/s counts those bytes) on 6 partitions, restored into an empty RocksDB by the runtime's restore (times include the readers' start and the end-of-partition wait), then read again without state writes; CPU = CPU seconds in the phase, all threads, of this process and of the broker (`{}`); {} cores.\n\n\
         | readers | restore | restore MB/s | records/s | restore CPU | broker CPU | read alone | read alone MB/s | read alone CPU | broker CPU |\n|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n{rows}\n\
         Method: each reader (a thread with its own read_committed consumer: large fetches, a deep prefetch queue, explicit start offsets from the watermarks, as from `OFFSET_BEGINNING` librdkafka queried the start offset only after a 500 ms retry) reads its share of the partitions and buffers records per partition in one byte buffer each (no allocation per record, metrics counted per load, the input-coordinate headers found in one pass); every 32 MB (shared among the readers) a reader hands its buffers to the state writer and goes on reading; the writer sorts each partition (latest record of a key wins) into an SST file, the partitions' files built in parallel, and ingests them (no memtable, no WAL: the changelog is the truth); a partition's checkpoint is written only after its files are ingested (durable), so a kill mid-restore leaves the old checkpoint or a new one whose data is on disk (`state/src/rocks/load_tests.rs` kills a loading process at ten moments and checks). Below 4 MB a load is one write batch with the WAL.\n\n\
         Before (one reader, batches of 10,000 records written through the WAL with an allocation per record and field, metrics per record): 4.54 s, 12.2 MB/s, 110115 records/s.\n",
        args.records,
        args.broker_process,
        std::thread::available_parallelism().map_or(1, |n| n.get()),
    );
    println!("{table}");
    kafclaw_bench::write_report_section(&args.report, "restore", "State restore (`bench/src/bin/restore.rs`)", &table)?;
    Ok(())
}

/// Reads the whole changelog with the restore readers' settings and no state writes, with
/// `readers` consumers (threads) sharing the partitions: the broker's and librdkafka's share
/// of the restore. Returns the wall and this process's CPU seconds.
fn raw_read(settings: &ClientSettings, topic: &str, records: usize, readers: usize) -> Result<(f64, f64)> {
    let (started, cpu) = (Instant::now(), self_cpu_secs());
    let seen: usize = std::thread::scope(|scope| -> Result<usize> {
        let threads: Vec<_> = (0..readers)
            .map(|id| {
                let partitions: Vec<i32> = (0..6).skip(id).step_by(readers).collect();
                scope.spawn(move || read_partitions(settings, topic, &partitions, readers, started))
            })
            .collect();
        threads.into_iter().map(|t| t.join().map_err(|_| anyhow::anyhow!("a reader panicked"))?).sum()
    })?;
    anyhow::ensure!(seen == records, "the raw read saw {seen} of {records} records");
    Ok((started.elapsed().as_secs_f64(), self_cpu_secs() - cpu))
}

/// One raw reader of `readers`: reads `partitions` of `topic` to their ends; returns the
/// records seen.
fn read_partitions(
    settings: &ClientSettings,
    topic: &str,
    partitions: &[i32],
    readers: usize,
    started: Instant,
) -> Result<usize> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::message::{Headers, Message};
    let reader: BaseConsumer = settings
        .client_config_with(
            &as_pairs(&reader_defaults(readers)),
            &[
                ("group.id", "bench-restore-raw"),
                ("enable.auto.commit", "false"),
                ("enable.partition.eof", "true"),
                ("isolation.level", "read_committed"),
            ],
        )
        .create()?;
    // As the restore: the watermarks first, then explicit start offsets.
    let mut tpl = rdkafka::TopicPartitionList::new();
    for &p in partitions {
        let (low, _) = reader.fetch_watermarks(topic, p, Duration::from_secs(10))?;
        tpl.add_partition_offset(topic, p, rdkafka::Offset::Offset(low))?;
    }
    reader.assign(&tpl)?;
    let (mut seen, mut eofs, mut bytes, mut headers) = (0usize, 0, 0usize, 0usize);
    let mut first = None;
    while eofs < partitions.len() {
        match reader.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                first.get_or_insert_with(|| started.elapsed());
                seen += 1;
                bytes += m.key().map_or(0, <[u8]>::len) + m.payload().map_or(0, <[u8]>::len);
                // Parse the headers, as the restore does.
                headers += m.headers().map_or(0, |h| h.iter().count());
            }
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(_))) => eofs += 1,
            Some(Err(e)) => anyhow::bail!(e),
            None => {}
        }
    }
    eprintln!(
        "raw read of {partitions:?}: first record after {first:?}, {bytes} key and value bytes, {headers} headers"
    );
    Ok(seen)
}
