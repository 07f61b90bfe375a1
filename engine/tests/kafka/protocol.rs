//! The transaction protocol on the real broker: records of an open transaction are invisible
//! to a read_committed reader until commit, and an aborted transaction does not move the
//! committed offsets; a killed producer's open transaction, once fenced, does not block another's offsets.

use std::time::Duration;

use crate::support::*;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};

/// A consumer of `input` in `group`, once it has joined and holds a partition (its group
/// metadata is what transactional offset commits carry).
fn member_of(group: &str, input: &str) -> BaseConsumer {
    let consumer: BaseConsumer = config()
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("session.timeout.ms", "6000")
        .set("heartbeat.interval.ms", "500")
        .create()
        .unwrap();
    consumer.subscribe(&[input]).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while consumer.group_metadata().is_none() || consumer.assignment().unwrap().count() == 0 {
        consumer.poll(Duration::from_millis(100));
        assert!(std::time::Instant::now() < deadline, "no assignment");
    }
    consumer
}

#[test]
fn open_transactions_are_invisible_and_aborts_do_not_commit_offsets() {
    let topic = unique("proto-out");
    let input = unique("proto-in");
    let group = unique("proto-group");
    create_topic(&topic, 1);
    create_topic(&input, 1);

    let producer: BaseProducer = config().set("transactional.id", unique("proto-txn")).create().unwrap();
    producer.init_transactions(Duration::from_secs(30)).unwrap();
    producer.begin_transaction().unwrap();
    for i in 0..5 {
        producer.send(BaseRecord::to(&topic).key("k").payload(&format!("open-{i}"))).unwrap();
    }
    producer.flush(Duration::from_secs(10)).unwrap();
    // Open: a read_committed reader sees nothing.
    assert_eq!(consume_all(&topic, 0, Duration::from_secs(4)).len(), 0, "open transaction leaked");
    producer.commit_transaction(Duration::from_secs(30)).unwrap();
    let seen = consume_all(&topic, 5, Duration::from_secs(20));
    assert_eq!(seen.len(), 5, "committed records are visible");

    // Offsets sent in an aborted transaction are not committed; in a committed one they are.
    produce(&input, (0..3).map(|i| (format!("{i}"), envelope(i))));
    let consumer = member_of(&group, &input);
    let cgm = consumer.group_metadata().unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(&input, 0, Offset::Offset(2)).unwrap();
    producer.begin_transaction().unwrap();
    producer.send_offsets_to_transaction(&tpl, &cgm, Duration::from_secs(30)).unwrap();
    producer.abort_transaction(Duration::from_secs(30)).unwrap();
    assert_eq!(committed(&group, &input, 1), vec![-1], "an aborted transaction moved the offsets");

    // Tansu stops applying a transactional producer's offset commits once it aborted one
    // (Apache Kafka does not); the runtime therefore starts a new producer incarnation after an
    // abort, and so does this test.
    drop(producer);
    let producer: BaseProducer = config().set("transactional.id", unique("proto-txn2")).create().unwrap();
    producer.init_transactions(Duration::from_secs(30)).unwrap();
    producer.begin_transaction().unwrap();
    producer.send_offsets_to_transaction(&tpl, &cgm, Duration::from_secs(30)).unwrap();
    producer.commit_transaction(Duration::from_secs(30)).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut got = committed(&group, &input, 1);
    while got != vec![2] && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
        got = committed(&group, &input, 1);
    }
    assert_eq!(got, vec![2], "a committed transaction commits its offsets");
}

/// What stream threads rely on when a killed instance's partitions move to another thread's
/// producer (KIP-447: any producer may commit a group's offsets): after a transaction left
/// open by a killed producer (never ended) was fenced by its transactional id's next
/// `init_transactions`, another producer's transactional offset commit for the same partition
/// applies and its output becomes visible, and the new incarnation's own commits apply. Prints
/// the keys a read_committed reader sees (Apache Kafka: `b` only; Tansu shows the fenced `a`
/// too, docs/kafka-brokers.md).
#[test]
fn a_killed_producers_open_transaction_does_not_block_another_producers_offsets() {
    let (input, output, group) = (unique("fenced-in"), unique("fenced-out"), unique("fenced-group"));
    create_topic(&input, 1);
    create_topic(&output, 1);
    produce(&input, (0..5).map(|i| (format!("{i}"), envelope(i))));
    let consumer = member_of(&group, &input);
    let cgm = consumer.group_metadata().unwrap();
    let offsets = |o: i64| {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&input, 0, Offset::Offset(o)).unwrap();
        tpl
    };
    let txn = |id: &str| {
        let p: BaseProducer = config().set("transactional.id", id).create().unwrap();
        p.init_transactions(Duration::from_secs(30)).unwrap();
        p
    };
    // The group's committed offset once it is `want` (or what it is after 10 s).
    let settled = |want: i64| {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let got = committed(&group, &input, 1);
            if got == vec![want] || std::time::Instant::now() > deadline {
                return got;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    let (a, b) = (unique("fenced-a"), unique("fenced-b"));
    // A: offsets 1 and an output, then "killed" (never ended, never destroyed).
    let killed = txn(&a);
    killed.begin_transaction().unwrap();
    killed.send(BaseRecord::to(&output).key("a").payload("from-a")).unwrap();
    killed.flush(Duration::from_secs(10)).unwrap();
    killed.send_offsets_to_transaction(&offsets(1), &cgm, Duration::from_secs(30)).unwrap();
    // Abandoned, as a killed process leaves it: its client threads stay, nothing ends it.
    std::mem::forget(killed);
    // A's next incarnation fences it.
    let a2 = txn(&a);
    // B commits offset 3 and an output.
    let other = txn(&b);
    other.begin_transaction().unwrap();
    other.send(BaseRecord::to(&output).key("b").payload("from-b")).unwrap();
    other.send_offsets_to_transaction(&offsets(3), &cgm, Duration::from_secs(30)).unwrap();
    other.commit_transaction(Duration::from_secs(30)).unwrap();
    let after_b = settled(3);
    let visible = consume_all(&output, 1, Duration::from_secs(5));
    let keys: Vec<Option<String>> = visible.iter().map(|g| g.key.clone()).collect();
    // A's new incarnation commits offset 4.
    a2.begin_transaction().unwrap();
    a2.send_offsets_to_transaction(&offsets(4), &cgm, Duration::from_secs(30)).unwrap();
    a2.commit_transaction(Duration::from_secs(30)).unwrap();
    let after_a2 = settled(4);
    eprintln!("fenced open transaction: keys a read_committed reader sees after the other commit: {keys:?}");
    assert_eq!(after_b, vec![3], "another producer's commit after the killed one was fenced");
    assert!(keys.contains(&Some("b".to_owned())), "the other producer's committed output is visible: {keys:?}");
    assert_eq!(after_a2, vec![4], "the fenced id's new incarnation commits");
}
