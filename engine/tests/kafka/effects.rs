//! Outside effects under kill -9 (issue 20, item 2; docs/effects.md): an exactly-once `llm`
//! (the fake model scripted with `tool-shuffle`: each attempt asks for the three tools in an
//! order of its own, as a model answering a rerun otherwise) calls three `http` tools per input on a fake
//! external service in the test process, one of each logged class and the idempotent one:
//! `amo` (`at-most-once`), `idem` (`idempotent`) and `rec` (`reconcile`, with the service's
//! status URL). The instance is SIGKILLed 20 times (a third from inside the service's POST
//! handler, after the effect and before its answer, so before the input's commit; a third
//! 0–1.5 s after it made an effect; a third blind, 0.2–4 s after its start) and restarted each
//! time with the same instance id, while input keeps arriving.
//!
//! At the end, counted by the service per `Idempotency-Key`: every `amo` key POSTed at most
//! once, every `rec` key exactly once (one per input), `idem` repeated only under its own key;
//! every key names a known input and a step, each tool one step per input (its round records
//! replayed: a rerun never moves a call to another round); every input has its output, and every raw
//! duplicate on the read_committed output (Tansu shows aborted transactions' records) is of an
//! input a kill found uncommitted.
//!
//! Figures (`cargo test -p kafclaw --test kafka effects:: -- --nocapture`): `effects kill9:
//! kills=20 (handler=H processing=P blind=B) inputs=N missing=0 dup_raw=D amo_keys=..
//! amo_posts_per_key={1: ..} idem_posts_per_key={1: .., 2: ..} rec_posts_per_key={1: ..}
//! outcome_unknown=U orders=O model_calls=M wall_s=T seed=S`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::effect_service::EffectService;
use crate::fake_openai::FakeOpenAi;
use crate::support::*;

const KILLS: usize = 20;
const PARTITIONS: i32 = 2;
const TOOLS: [&str; 3] = ["amo", "idem", "rec"];

fn topology(
    dir: &Path,
    app: &str,
    input: &str,
    output: &str,
    model: &FakeOpenAi,
    service: &EffectService,
) -> std::path::PathBuf {
    let host = format!("127.0.0.1:{}", service.port);
    write_topology(
        dir,
        app,
        &format!(
            r#"
[topology]
name = "{app}"
guarantee = "exactly-once"
partitions = {PARTITIONS}
commit_interval_ms = 100

[models.fake]
base_url = "{model}"
model = "fake-1"
max_concurrency = 32

[tools.amo]
type = "http"
method = "POST"
effect = "at-most-once"
allow_hosts = ["{host}"]
allow_addresses = ["127.0.0.1"]

[tools.idem]
type = "http"
method = "POST"
allow_hosts = ["{host}"]
allow_addresses = ["127.0.0.1"]

[tools.rec]
type = "http"
method = "POST"
effect = "reconcile"
reconcile_url = "http://{host}/status/rec/{{idempotency_key}}"
allow_hosts = ["{host}"]
allow_addresses = ["127.0.0.1"]

[sources.requests]
type = "kafka"
topic = "{input}"

[operators.answer]
type = "llm"
inputs = ["requests"]
model = "fake"
prompt = "{{{{ payload.description }}}}"
tools = ["amo", "idem", "rec"]

[sinks.answers]
type = "kafka"
inputs = ["answer"]
topic = "{output}"
"#,
            model = model.base_url()
        ),
    )
}

/// Input `i`: its prompt lists the three calls, asked one per round in an order each attempt
/// picks at random.
fn request(i: usize, service: &EffectService) -> String {
    let calls: Vec<_> =
        TOOLS.iter().map(|t| json!([t, {"url": service.url(t), "body": format!("input {i}")}])).collect();
    json!({"type": "request", "correlation_id": format!("c-{i}"), "sender_id": "load", "timestamp": "2026-12-01T10:00:00Z",
           "id": format!("in-{i}"), "payload": {"task_id": format!("t-{i}"), "description": format!("tool-shuffle {}", json!(calls))}})
    .to_string()
}

fn histogram<'a>(counts: impl Iterator<Item = &'a usize>) -> BTreeMap<usize, usize> {
    let mut h = BTreeMap::new();
    for n in counts {
        *h.entry(*n).or_default() += 1;
    }
    h
}

fn input_of(g: &Got) -> (i32, i64) {
    let p = g.headers.get("kafclaw.input.partition").and_then(|p| p.parse().ok()).expect("kafclaw.input.partition");
    let o = g.headers.get("kafclaw.input.offset").and_then(|o| o.parse().ok()).expect("kafclaw.input.offset");
    (p, o)
}

#[test]
fn outside_effects_under_twenty_kills_follow_their_class() {
    let t0 = Instant::now();
    let seed =
        std::env::var("KAFCLAW_CHAOS_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| fastrand::u64(..));
    eprintln!("effects kill9: seed={seed}");
    let mut rng = fastrand::Rng::with_seed(seed);
    let b = brokers();
    let dir = TestDir::new();
    let (model, service) = (FakeOpenAi::start(), EffectService::start());
    let (app, input, output) = (unique("fx-app"), unique("fx-in"), unique("fx-out"));
    create_topic_at(&b, &input, PARTITIONS);
    let topo = topology(dir.path(), &app, &input, &output, &model, &service);

    // The kill from inside a POST: armed for one tool, it kills the instance after the effect
    // was counted and before it is answered.
    let (pid, armed) = (Arc::new(AtomicI32::new(0)), Arc::new(std::sync::Mutex::new(None::<String>)));
    let (p, a) = (pid.clone(), armed.clone());
    service.set_hook(Arc::new(move |path, _key| {
        let mut armed = a.lock().unwrap();
        if armed.as_deref() == Some(path) {
            *armed = None;
            signal_pid(p.load(Ordering::SeqCst), 9);
        }
    }));

    // Input keeps arriving until the last kill: 1 every 400 ms.
    let stop = Arc::new(AtomicBool::new(false));
    let load = {
        let (b, input, stop, service) = (b.clone(), input.clone(), stop.clone(), service.clone());
        std::thread::spawn(move || {
            let mut n = 0;
            while !stop.load(Ordering::SeqCst) {
                produce_at(&b, &input, [(format!("{n}"), request(n, &service))]);
                n += 1;
                std::thread::sleep(Duration::from_millis(400));
            }
            n
        })
    };

    let env = [("KAFCLAW_KAFKA_SESSION_TIMEOUT_MS", "3000"), ("KAFCLAW_KAFKA_HEARTBEAT_INTERVAL_MS", "300")];
    let mut committed_after_kill: Vec<Vec<i64>> = Vec::new();
    let mut modes = [0usize; 3];
    for round in 0..KILLS {
        let log = dir.path().join(format!("kill-{round:02}.log"));
        let mut child = spawn_instance_at(&b, &topo, "solo", &log, &[], &env);
        pid.store(child.id() as i32, Ordering::SeqCst);
        let before: usize = service.posts().values().sum();
        let mode = round % 3;
        modes[mode] += 1;
        match mode {
            0 => {
                // From inside the service: the effect happened, its answer and commit did not.
                *armed.lock().unwrap() = Some(TOOLS[rng.usize(0..3)].to_owned());
                let deadline = Instant::now() + Duration::from_secs(90);
                while matches!(child.try_wait(), Ok(None)) {
                    assert!(Instant::now() < deadline, "round {round}: no armed POST in 90 s:\n{}", log_tail(&log));
                    std::thread::sleep(Duration::from_millis(20));
                }
                let fired = armed.lock().unwrap().take().is_none();
                assert!(
                    fired,
                    "round {round}: the instance exited on its own, not killed by the service:\n{}",
                    log_tail(&log)
                );
            }
            1 => {
                // Processing: after its first effect, 0–1.5 s on.
                let deadline = Instant::now() + Duration::from_secs(90);
                while service.posts().values().sum::<usize>() == before {
                    assert!(Instant::now() < deadline, "round {round}: no effect in 90 s:\n{}", log_tail(&log));
                    if let Ok(Some(s)) = child.try_wait() {
                        panic!("round {round}: the instance exited on its own ({s}):\n{}", log_tail(&log));
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                std::thread::sleep(Duration::from_millis(rng.u64(0..1_500)));
            }
            _ => std::thread::sleep(Duration::from_millis(rng.u64(200..4_000))),
        }
        if let Ok(Some(s)) = child.try_wait()
            && mode != 0
        {
            panic!("round {round}: the instance exited on its own ({s}):\n{}", log_tail(&log));
        }
        let _ = child.kill(); // SIGKILL: no commit, no abort, no leave
        child.wait().unwrap();
        committed_after_kill.push(committed_at(&b, &app, &input, PARTITIONS));
    }
    stop.store(true, Ordering::SeqCst);
    let n = load.join().unwrap();

    // The last incarnation runs until every input is committed.
    let log = dir.path().join("final.log");
    let mut child = spawn_instance_at(&b, &topo, "solo", &log, &[], &env);
    let deadline = Instant::now() + Duration::from_secs(150);
    let committed = loop {
        let c = committed_at(&b, &app, &input, PARTITIONS);
        if c.iter().map(|o| (*o).max(0)).sum::<i64>() == n as i64 || Instant::now() >= deadline {
            break c;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    let got = consume_all_at(&b, &output, n, Duration::from_secs(60));
    sigterm(&mut child);
    let code = wait_exit(&mut child, Duration::from_secs(60));

    // Outputs: every input's, duplicates only of inputs a kill found uncommitted.
    let inputs: HashSet<(i32, i64)> =
        consume_all_at(&b, &input, n, Duration::from_secs(60)).iter().map(|g| (g.partition, g.offset)).collect();
    let mut by_input: HashMap<(i32, i64), Vec<&Got>> = HashMap::new();
    for g in &got {
        by_input.entry(input_of(g)).or_default().push(g);
    }
    let mut missing: Vec<_> = inputs.iter().filter(|c| !by_input.contains_key(c)).copied().collect();
    missing.sort();
    let dup_raw: usize = by_input.values().map(|v| v.len() - 1).sum();
    let unknown_inputs: HashSet<(i32, i64)> = by_input
        .iter()
        .filter(|(_, v)| {
            v.iter().any(|g| g.value["payload"]["answer"].as_str().unwrap_or("").contains("outcome unknown"))
        })
        .map(|(c, _)| *c)
        .collect();
    let unknown = unknown_inputs.len();

    // Effects, by path and key; the round each input called each tool at (its key's).
    let posts = service.posts();
    let prefix = format!("{app}/answer/{input}/");
    let step_of = |key: &str| -> Option<((i32, i64), usize)> {
        let parts: Vec<&str> = key.strip_prefix(&prefix)?.split('/').collect();
        match parts[..] {
            [p, o, r, "0"] => Some(((p.parse().ok()?, o.parse().ok()?), r.parse().ok()?)),
            _ => None,
        }
    };
    let mut rounds_of: BTreeMap<((i32, i64), &str), std::collections::BTreeSet<usize>> = BTreeMap::new();
    for (path, key) in posts.keys() {
        assert!(TOOLS.contains(&path.as_str()), "a POST on `/{path}`");
        let step = step_of(key).filter(|(c, r)| inputs.contains(c) && *r < TOOLS.len());
        let (c, r) = step.unwrap_or_else(|| panic!("`/{path}` got key `{key}`, not one of a known input's step"));
        rounds_of.entry((c, path.as_str())).or_default().insert(r);
    }
    let key_of = |(p, o): (i32, i64), tool: &str| {
        let round = rounds_of.get(&((p, o), tool)).and_then(|r| r.first()).copied().unwrap_or(usize::MAX);
        format!("{prefix}{p}/{o}/{round}/0")
    };
    let orders: std::collections::BTreeSet<Vec<usize>> = inputs
        .iter()
        .filter_map(|c| TOOLS.iter().map(|t| rounds_of.get(&(*c, *t)).and_then(|r| r.first()).copied()).collect())
        .collect();
    let per_key = |tool: &str| {
        posts.iter().filter(|((p, _), _)| p == tool).map(|((_, k), n)| (k.clone(), *n)).collect::<BTreeMap<_, _>>()
    };
    let (amo, idem, rec) = (per_key("amo"), per_key("idem"), per_key("rec"));
    figure(&format!(
        "effects kill9: kills={KILLS} (handler={} processing={} blind={}) inputs={n} missing={} dup_raw={dup_raw} amo_keys={} amo_posts_per_key={:?} idem_posts_per_key={:?} rec_posts_per_key={:?} outcome_unknown={unknown} reconcile_gets={} orders={} model_calls={} wall_s={} seed={seed}",
        modes[0],
        modes[1],
        modes[2],
        missing.len(),
        amo.len(),
        histogram(amo.values()),
        histogram(idem.values()),
        histogram(rec.values()),
        service.gets().len(),
        orders.len(),
        model.counters.calls(),
        t0.elapsed().as_secs(),
    ));
    assert_eq!(code, Some(0), "the last incarnation stops cleanly:\n{}", log_tail(&log));
    assert_eq!(inputs.len(), n, "the input topic holds each input once");
    assert!(
        missing.is_empty(),
        "{} inputs have no output, first {:?}; committed {committed:?}\n{}",
        missing.len(),
        &missing[..missing.len().min(10)],
        log_tail(&log)
    );
    for (&(p, o), copies) in by_input.iter().filter(|(_, v)| v.len() > 1) {
        let open_at_kills = committed_after_kill.iter().filter(|c| c[p as usize] <= o).count();
        assert!(
            copies.len() - 1 <= open_at_kills,
            "input {p}@{o} has {} outputs, but only {open_at_kills} kills found it uncommitted",
            copies.len()
        );
    }
    // Each tool at one round per input, whatever order each attempt's model picked: the
    // recorded rounds were replayed; and no two tools of an input at the same round.
    let moved: Vec<_> = rounds_of.iter().filter(|(_, r)| r.len() > 1).collect();
    assert!(moved.is_empty(), "a tool called at two rounds of one input (an answer not replayed): {moved:?}");
    for c in &inputs {
        let rounds: std::collections::BTreeSet<_> = TOOLS.iter().filter_map(|t| rounds_of.get(&(*c, *t))).collect();
        let called = TOOLS.iter().filter(|t| rounds_of.contains_key(&(*c, **t))).count();
        assert_eq!(rounds.len(), called, "input {c:?}: two tools at one round: {rounds:?}");
    }
    assert!(
        amo.values().all(|n| *n == 1),
        "at-most-once: a key POSTed twice: {:?}",
        amo.iter().filter(|(_, n)| **n > 1).collect::<Vec<_>>()
    );
    for c in &inputs {
        assert_eq!(rec.get(&key_of(*c, "rec")), Some(&1), "reconcile: input {c:?}'s effect exactly once");
        assert!(idem.get(&key_of(*c, "idem")).is_some_and(|n| *n >= 1), "idempotent: input {c:?}'s effect made");
    }
    for c in &inputs {
        assert!(
            amo.contains_key(&key_of(*c, "amo")) || unknown_inputs.contains(c),
            "input {c:?}: its at-most-once call was neither made nor reported unknown"
        );
    }
}

fn signal_pid(pid: i32, sig: i32) {
    if pid > 0 {
        let _ = std::process::Command::new("kill").arg(format!("-{sig}")).arg(pid.to_string()).status();
    }
}

/// The effect log is bounded by `effects_retention` (docs/effects.md, "Retention"): the topic
/// is created `compact,delete` with the retention, and a record whose Kafka timestamp is past
/// it is not remembered, while a fresh one is.
#[test]
fn the_effect_log_is_bounded_by_its_retention() {
    use kafclaw_agent::tools::effect::{EffectLog, EffectRecord};
    use kafclaw_engine::kafka::effects::{KafkaEffectLog, effects_topic};
    use kafclaw_engine::kafka::inspect::cluster::topic_configs;
    use kafclaw_engine::kafka::settings::ClientSettings;
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

    let settings = ClientSettings::from_env(Some(brokers()));
    let app = unique("effretention");
    let topic = effects_topic(&app);
    let hour = Duration::from_secs(3600);
    let log = KafkaEffectLog::start(&settings, &app, "i1", -1, hour).unwrap();
    let got = topic_configs(&settings, &topic, &["cleanup.policy", "retention.ms", "segment.ms"]).unwrap();
    eprintln!("{topic} as described: {got:?}");
    assert_eq!(got[0].as_deref(), Some("compact,delete"), "cleanup.policy");
    assert_eq!(got[1].as_deref(), Some("3600000"), "retention.ms");
    assert_eq!(got[2].as_deref(), Some("360000"), "segment.ms");

    // Two results written by another writer: one two hours old (by its Kafka timestamp), one now.
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    let p: BaseProducer = config().set("enable.idempotence", "true").create().unwrap();
    for (key, at) in [("old", now - 2 * 3_600_000), ("fresh", now)] {
        let r = EffectRecord {
            key: key.into(),
            tool: "pay".into(),
            arguments: json!({}),
            input: format!("{app}/answer/in/0/1"),
            at_ms: at,
            outcome: None,
        };
        let value = serde_json::to_vec(&r).unwrap();
        p.send(BaseRecord::to(&topic).key(key).payload(&value).timestamp(at)).unwrap();
    }
    p.flush(Duration::from_secs(10)).unwrap();

    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let fresh = rt.block_on(log.lookup("fresh")).unwrap();
    assert_eq!(fresh.map(|r| r.key).as_deref(), Some("fresh"));
    // Read before the barrier `fresh` waited for, and forgotten: past the retention.
    assert_eq!(rt.block_on(log.lookup("old")).unwrap(), None);
}

/// What round records cost on the Kafka log (docs/effects.md, "Round records"): an append (a
/// round record or an intent: a transaction of its own), a lookup that catches up (a barrier
/// transaction, then the reader up to it) and one that reads what the reader has read
/// (`lookup_synced`, every later lookup of an `llm` attempt). Records another instance made
/// durable before the barrier are all seen by the synced lookups after it.
#[test]
fn after_one_barrier_a_synced_lookup_sees_what_was_durable_before_it() {
    use kafclaw_agent::tools::effect::{EffectLog, EffectRecord, Outcome};
    use kafclaw_engine::kafka::effects::KafkaEffectLog;
    use kafclaw_engine::kafka::settings::ClientSettings;

    const N: usize = 12;
    let settings = ClientSettings::from_env(Some(brokers()));
    let app = unique("effsynced");
    let hour = Duration::from_secs(3600);
    let (earlier, now) = (
        KafkaEffectLog::start(&settings, &app, "earlier", -1, hour).unwrap(),
        KafkaEffectLog::start(&settings, &app, "now", -1, hour).unwrap(),
    );
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let key = |i: usize| format!("{app}/answer/in/0/7/{i}");
    let mut appends = Vec::new();
    for i in 0..N {
        let at_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
        let round = EffectRecord {
            key: key(i),
            tool: "llm".into(),
            arguments: json!({"model": "m", "content": "", "tool_calls": []}),
            input: format!("{app}/answer/in/0/7"),
            at_ms,
            outcome: Some(Outcome { ok: true, text: format!("round {i}"), at_ms }),
        };
        let t = Instant::now();
        rt.block_on(earlier.append(round)).unwrap();
        appends.push(t.elapsed());
    }
    let mut barriers = Vec::new();
    let mut synced = Vec::new();
    for i in 0..N {
        let t = Instant::now();
        let found = if i == 0 { rt.block_on(now.lookup(&key(N - 1))) } else { rt.block_on(now.lookup_synced(&key(i))) };
        let took = t.elapsed();
        assert!(found.unwrap().is_some(), "lookup {i}: the other instance's record is seen");
        if i == 0 { barriers.push(took) } else { synced.push(took) }
    }
    for i in 1..N {
        let t = Instant::now();
        assert!(rt.block_on(now.lookup(&key(i))).unwrap().is_some());
        barriers.push(t.elapsed());
    }
    let ms = |mut v: Vec<Duration>| {
        v.sort();
        let at = |q: usize| v[(v.len() - 1) * q / 100].as_secs_f64() * 1000.0;
        format!("p50={:.2} p90={:.2}", at(50), at(90))
    };
    figure(&format!(
        "effects lookups: append_ms {} barrier_lookup_ms {} synced_lookup_ms {} (n={N})",
        ms(appends),
        ms(barriers),
        ms(synced)
    ));
}
