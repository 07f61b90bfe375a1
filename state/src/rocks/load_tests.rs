//! Tests of RocksDB's bulk load: it agrees with the plain write path, and a process killed
//! mid-load never leaves a checkpoint ahead of its data.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use super::BULK_MIN_BYTES;
use crate::{Batch, MemoryStore, Restored, RocksStore, StateStore, Write};

/// Records per partition and load in the crash test, keys they cycle through, value padding:
/// 3 partitions × 20,000 × ~110 bytes is above [`BULK_MIN_BYTES`], so every load is a bulk one.
const PER_LOAD: i64 = 20_000;
const KEYS: i64 = 7_919;
const PAD: usize = 100;

fn value_of(offset: i64) -> Vec<u8> {
    let mut v = offset.to_be_bytes().to_vec();
    v.resize(8 + PAD, b'x');
    v
}

/// Load `n` of the crash test: offsets `n * PER_LOAD ..` of partitions 0..3, checkpoint at
/// their end.
fn crash_load(n: i64) -> Vec<Restored> {
    (0..3)
        .map(|p| {
            let mut r = Restored::new("t", p);
            for offset in n * PER_LOAD..(n + 1) * PER_LOAD {
                r.push(format!("k{}", offset % KEYS).as_bytes(), Some(&value_of(offset)));
            }
            r.checkpoint = Some((n + 1) * PER_LOAD);
            r
        })
        .collect()
}

const CHILD: &str = "KAFCLAW_STATE_LOAD_CRASH_DIR";

#[test]
fn a_kill_mid_load_never_leaves_a_checkpoint_ahead_of_its_data() {
    if let Ok(dir) = std::env::var(CHILD) {
        // The child: loads until killed (bounded, should the parent be gone).
        let mut store = RocksStore::open(std::path::Path::new(&dir)).unwrap();
        let start = store.checkpoint("t", 0).unwrap().unwrap_or(0) / PER_LOAD;
        for n in start..start + 200 {
            let loads = crash_load(n);
            assert!(loads.iter().map(Restored::bytes).sum::<usize>() >= BULK_MIN_BYTES);
            println!("loading {n}");
            store.load(&loads).unwrap();
        }
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut checked = 0;
    // Kill at a different moment of a load each time (the delay only picks the moment; the
    // assertions are on what is on disk), resuming from the checkpoint.
    for (run, delay_ms) in [0u64, 5, 15, 30, 60, 100, 160, 250, 400, 600].into_iter().enumerate() {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "rocks::load::tests::a_kill_mid_load_never_leaves_a_checkpoint_ahead_of_its_data"])
            .args(["--nocapture", "--test-threads=1"])
            .env(CHILD, dir.path())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        // The second load on odd runs, so some runs kill with a checkpoint already durable.
        let mut seen = 0;
        while seen < 1 + run % 2 {
            let line = lines.next().expect("the child exited before loading").unwrap();
            if line.starts_with("loading ") {
                seen += 1;
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(delay_ms));
        child.kill().unwrap();
        child.wait().unwrap();

        let store = RocksStore::open(dir.path()).unwrap();
        assert!(!dir.path().join(super::LOAD_DIR).exists(), "files of the interrupted load are removed on open");
        for p in 0..3 {
            let Some(checkpoint) = store.checkpoint("t", p).unwrap() else { continue };
            assert_eq!(checkpoint % PER_LOAD, 0, "checkpoints are only those of whole loads");
            // Every key's value is at least as new as its last record below the checkpoint.
            for k in 0..KEYS.min(checkpoint) {
                let last_below = (checkpoint - 1 - k) / KEYS * KEYS + k;
                let stored = store.get("t", p, format!("k{k}").as_bytes()).unwrap();
                let stored =
                    stored.unwrap_or_else(|| panic!("partition {p}: key k{k} missing under checkpoint {checkpoint}"));
                let offset = i64::from_be_bytes(stored[..8].try_into().unwrap());
                assert!(
                    offset >= last_below,
                    "partition {p}: k{k} holds offset {offset}, checkpoint {checkpoint} covers {last_below}"
                );
            }
            checked += 1;
        }
    }
    assert!(checked > 0, "no checkpoint was ever durable: the test checked nothing");
}

/// Records with repeated keys and deletes, over existing state.
fn mixed(partition: u32, n: usize) -> Restored {
    let mut r = Restored::new("t", partition);
    for i in 0..n {
        let key = format!("k{}", i % 997);
        if i % 13 == 0 {
            r.push(key.as_bytes(), None);
        } else {
            r.push(key.as_bytes(), Some(format!("{i:0>120}").as_bytes()));
        }
    }
    r.checkpoint = Some(n as i64);
    r
}

#[test]
fn bulk_and_small_loads_agree_with_plain_writes() {
    let dir = tempfile::tempdir().unwrap();
    let mut rocks = RocksStore::open(dir.path()).unwrap();
    let mut memory = MemoryStore::new();
    // Existing state the loads overwrite or delete.
    let before = Batch {
        writes: (0..2000)
            .map(|i| Write {
                table: "t".into(),
                partition: i % 2,
                key: format!("k{i}").into_bytes(),
                value: Some(b"old".to_vec()),
            })
            .collect(),
        checkpoints: vec![],
    };
    rocks.apply(&before).unwrap();
    memory.apply(&before).unwrap();
    for n in [100, 40_000] {
        let loads = vec![mixed(0, n), mixed(1, n / 2)];
        assert_eq!(loads.iter().map(Restored::bytes).sum::<usize>() >= BULK_MIN_BYTES, n == 40_000);
        rocks.load(&loads).unwrap();
        memory.load(&loads).unwrap();
        for p in 0..2 {
            assert_eq!(
                rocks.scan_partition("t", p).unwrap(),
                memory.scan_partition("t", p).unwrap(),
                "{n} records, partition {p}"
            );
            assert_eq!(rocks.checkpoint("t", p).unwrap(), memory.checkpoint("t", p).unwrap());
        }
    }
    drop(rocks);
    let rocks = RocksStore::open(dir.path()).unwrap();
    assert_eq!(rocks.scan_partition("t", 0).unwrap(), memory.scan_partition("t", 0).unwrap(), "after reopening");
    assert_eq!(rocks.checkpoint("t", 1).unwrap(), Some(20_000));
}
