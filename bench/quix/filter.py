"""The Quix Streams contender of kafclaw's end-to-end benchmark (bench/src/bin/e2e).

The same job as the other contenders: read JSON envelopes from the input topic, keep those
whose payload.n is even, write them to the output topic, in one consumer group, with the
processing guarantee asked for ("at-least-once" or "exactly-once": Quix Streams' transactional
producer, one transaction per checkpoint).

    python filter.py BROKERS INPUT OUTPUT GROUP FETCH_WAIT_MAX_MS [GUARANTEE]
"""

import sys

from quixstreams import Application


def main() -> None:
    brokers, source, sink, group, fetch_wait = sys.argv[1:6]
    guarantee = sys.argv[6] if len(sys.argv) > 6 else "at-least-once"
    app = Application(
        broker_address=brokers,
        consumer_group=group,
        auto_offset_reset="earliest",
        # kafclaw and the raw loop commit every 100 ms; a Quix checkpoint also flushes the
        # producer, so 1 s is the fairer setting for its throughput.
        commit_interval=1.0,
        processing_guarantee=guarantee,
        auto_create_topics=False,
        use_changelog_topics=False,
        loglevel="WARNING",
        consumer_extra_config={
            "session.timeout.ms": 6000,
            "heartbeat.interval.ms": 500,
            "fetch.wait.max.ms": int(fetch_wait),
        },
        producer_extra_config={"linger.ms": 5},
    )
    source_topic = app.topic(source, value_deserializer="json")
    sink_topic = app.topic(sink, value_serializer="json")
    sdf = app.dataframe(source_topic)
    sdf = sdf.filter(lambda envelope: envelope["payload"]["n"] % 2 == 0)
    sdf.to_topic(sink_topic)
    app.run()


if __name__ == "__main__":
    main()
