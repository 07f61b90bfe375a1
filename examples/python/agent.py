#!/usr/bin/env python3
"""A kafclaw group member in plain Python: no SDK, only confluent-kafka and the documented
envelope (docs/schema/, KafClaw's fields: type, correlation_id, sender_id, timestamp, payload).

It joins group <g> (an `announce` on group.<g>.announce, then a `heartbeat` every few seconds,
and an `announce` leave when stopped), and serves one skill: it claims requests from
group.<g>.skill.<s>.requests through the skill's shared consumer group (one member answers each
request) and answers each on group.<g>.skill.<s>.responses as a `skill_response` correlated by
the original task id. Anything on the request topic that is not a request is skipped, never
answered.

It follows the A2A binding over Kafka (docs/a2a-kafka.md): a claimed request is acknowledged
with an `in_progress` task status (A2A: working) on group.<g>.tasks.status, the answer carries
the request's `payload.context_id` (the A2A contextId), a request with no text (an A2A message
without a text part) ends `rejected`, and a request whose envelope `id` (the A2A messageId) was
already answered is not answered again.

    pip install -r examples/python/requirements.txt
    python3 examples/python/agent.py --group acme --skill echo --agent-id echo-py
"""

import argparse
import collections
import datetime
import json
import os
import signal
import sys
import threading

from confluent_kafka import Consumer, Producer


def now():
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def envelope(kind, correlation_id, sender_id, payload):
    # KafClaw's envelope, as a KafClaw peer writes it: none of kafclaw's added fields.
    return json.dumps(
        {"type": kind, "correlation_id": correlation_id, "sender_id": sender_id, "timestamp": now(), "payload": payload}
    ).encode()


def kafka_env():
    """librdkafka properties from KAFCLAW_KAFKA_* variables, as kafclaw reads them
    (KAFCLAW_KAFKA_SASL_PASSWORD -> sasl.password)."""
    return {
        k[len("KAFCLAW_KAFKA_"):].lower().replace("_", "."): v
        for k, v in os.environ.items()
        if k.startswith("KAFCLAW_KAFKA_")
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--brokers", default="127.0.0.1:9092")
    ap.add_argument("--group", required=True)
    ap.add_argument("--skill", required=True)
    ap.add_argument("--agent-id", required=True)
    ap.add_argument("--heartbeat", type=float, default=2.0, help="seconds between heartbeats")
    args = ap.parse_args()

    g, skill, me = args.group, args.skill, args.agent_id
    announce = f"group.{g}.announce"
    requests = f"group.{g}.skill.{skill}.requests"
    responses = f"group.{g}.skill.{skill}.responses"
    statuses = f"group.{g}.tasks.status"
    identity = {
        "agent_id": me,
        "agent_name": me,
        "soul_summary": f"answers the {skill} skill (a Python agent)",
        "capabilities": [skill],
        "joined_at": now(),
        "status": "active",
        "role": "worker",
    }

    common = {"bootstrap.servers": args.brokers, **kafka_env()}
    consumer_only = ("session.timeout.ms", "heartbeat.interval.ms", "max.poll.interval.ms")
    # murmur2: the partitioner of the Java client and of kafclaw, so a task's records from every
    # writer share a partition (docs/a2a-kafka.md).
    producer = Producer(
        {**{k: v for k, v in common.items() if k not in consumer_only}, "enable.idempotence": True, "partitioner": "murmur2_random"}
    )

    def presence(kind, action):
        producer.produce(announce, key=me, value=envelope(kind, me, me, {"action": action, "identity": identity}))
        producer.flush(10)

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())

    presence("announce", "join")
    print(f"{me}: joined group {g}", file=sys.stderr, flush=True)

    def beat():
        while not stop.wait(args.heartbeat):
            presence("heartbeat", "heartbeat")

    threading.Thread(target=beat, daemon=True).start()

    consumer = Consumer(
        {
            **common,
            # One consumer group per skill: every instance of every agent serving the skill
            # shares it, so each request is claimed by exactly one of them.
            "group.id": f"skill-{g}-{skill}",
            # kafclaw's members use the cooperative protocol: the same one, to share the group.
            "partition.assignment.strategy": "cooperative-sticky",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
        }
    )
    consumer.subscribe([requests])
    answered = 0
    # Envelope ids answered lately: a request delivered twice (at-least-once) is answered once.
    seen, seen_order = set(), collections.deque()
    while not stop.is_set():
        msg = consumer.poll(0.2)
        if msg is None:
            continue
        if msg.error():
            print(f"{me}: {msg.error()}", file=sys.stderr, flush=True)
            continue
        try:
            request = json.loads(msg.value())
        except ValueError as e:
            print(f"{me}: not JSON at {msg.topic()}/{msg.partition()}@{msg.offset()}: {e}", file=sys.stderr, flush=True)
            consumer.commit(msg)
            continue
        if request.get("type") not in ("skill_request", "request"):
            consumer.commit(msg)
            continue
        payload = request.get("payload") or {}
        task_id = payload.get("task_id") or request["correlation_id"]
        key = request["correlation_id"]
        if request.get("id") in seen:
            consumer.commit(msg)
            continue
        about = {"task_id": task_id, "responder_id": me}
        if "context_id" in payload:
            about["context_id"] = payload["context_id"]
        if payload.get("description"):
            status = {**about, "status": "in_progress", "summary": f"{me} is working on it"}
            producer.produce(statuses, key=key, value=envelope("task_status", key, me, status))
            answer = {**about, "status": "completed", "content": f"{skill} from python: {payload['description']}"}
            producer.produce(responses, key=key, value=envelope("skill_response", key, me, answer))
        else:
            refused = {**about, "status": "rejected", "summary": f"{me} reads text: the request has none"}
            producer.produce(statuses, key=key, value=envelope("task_status", key, me, refused))
        producer.flush(10)
        if request.get("id"):
            seen.add(request["id"])
            seen_order.append(request["id"])
            if len(seen_order) > 100_000:
                seen.discard(seen_order.popleft())
        # At-least-once: the answer is out before the request is marked done.
        consumer.commit(msg, asynchronous=False)
        answered += 1

    consumer.close()
    presence("announce", "leave")
    print(f"{me}: answered {answered} request(s); left group {g}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
