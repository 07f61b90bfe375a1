//! The transaction protocol on the real broker: records of an open transaction are invisible
//! to a read_committed reader until commit, and an aborted transaction does not move the
//! committed offsets.

use std::time::Duration;

use crate::support::*;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};

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
    let consumer: BaseConsumer = config()
        .set("group.id", &group)
        .set("enable.auto.commit", "false")
        .set("session.timeout.ms", "6000")
        .set("heartbeat.interval.ms", "500")
        .create()
        .unwrap();
    consumer.subscribe(&[&input]).unwrap();
    produce(&input, (0..3).map(|i| (format!("{i}"), envelope(i))));
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while consumer.group_metadata().is_none() || consumer.assignment().unwrap().count() == 0 {
        consumer.poll(Duration::from_millis(100));
        assert!(std::time::Instant::now() < deadline, "no assignment");
    }
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
