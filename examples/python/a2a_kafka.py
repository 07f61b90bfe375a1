#!/usr/bin/env python3
"""An A2A client over Kafka, with nothing but confluent-kafka: the binding of docs/a2a-kafka.md
(`urn:kafclaw:a2a:kafka:v1`), A2A v1.0 JSON out.

It builds an A2A Message (messageId, contextId, role ROLE_USER, a text part per argument),
publishes it as a `skill_request` envelope keyed by the task id on group.<g>.skill.<s>.requests
(or a `request` on group.<g>.requests without --skill), follows the answer topic and
group.<g>.tasks.status for that task until its final state or the deadline, and prints JSON
lines, each an A2A v1.0 StreamResponse: with --stream the Task as submitted, then every
TaskStatusUpdateEvent / TaskArtifactUpdateEvent as it comes; always, last, `{"task": <the
Task>}`. Exit status: 0 completed, 1 any other final state (failed, rejected, canceled,
input-required), 3 no final state before the deadline (the Task as last known is printed).
With --no-send it only follows an existing --task-id (A2A GetTask / SubscribeToTask).

    python3 examples/python/a2a_kafka.py --group acme --skill billing "Refund invoice 42?"
"""

import argparse
import datetime
import json
import os
import sys
import time
import uuid

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition

# Envelope payload.status -> A2A v1.0 TaskState (docs/a2a-kafka.md, "Task states").
STATES = {
    "accepted": "TASK_STATE_SUBMITTED",
    "in_progress": "TASK_STATE_WORKING",
    "streaming": "TASK_STATE_WORKING",
    "input_required": "TASK_STATE_INPUT_REQUIRED",
    "completed": "TASK_STATE_COMPLETED",
    "failed": "TASK_STATE_FAILED",
    "no_answer": "TASK_STATE_FAILED",
    "rejected": "TASK_STATE_REJECTED",
    "budget_exceeded": "TASK_STATE_REJECTED",
    "canceled": "TASK_STATE_CANCELED",
}
# The envelope types that tell a task's state.
ANSWERS = ("response", "skill_response", "task_status")
# States after which the task's stream ends (terminal, or interrupted: input-required).
FINAL = {"TASK_STATE_COMPLETED", "TASK_STATE_FAILED", "TASK_STATE_REJECTED", "TASK_STATE_CANCELED",
         "TASK_STATE_INPUT_REQUIRED"}


def iso(t=None):
    """An ISO 8601 UTC timestamp with milliseconds (A2A v1.0 section 5.6.1)."""
    t = t or datetime.datetime.now(datetime.timezone.utc)
    return t.astimezone(datetime.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def a2a_time(rfc3339):
    """An envelope's RFC 3339 timestamp as A2A wants it; now when it cannot be read."""
    try:
        return iso(datetime.datetime.fromisoformat(rfc3339.replace("Z", "+00:00")))
    except (AttributeError, ValueError):
        return iso()


def kafka_env():
    """librdkafka properties from KAFCLAW_KAFKA_* variables (KAFCLAW_KAFKA_SASL_PASSWORD ->
    sasl.password), as kafclaw and examples/python/agent.py read them."""
    return {k[len("KAFCLAW_KAFKA_"):].lower().replace("_", "."): v
            for k, v in os.environ.items() if k.startswith("KAFCLAW_KAFKA_")}


def text_of(payload):
    """An answer's text: `content`, else `result` (JSON unless a string), else `summary`."""
    for field in ("content", "result", "summary"):
        value = payload.get(field)
        if value is not None:
            return value if isinstance(value, str) else json.dumps(value)
    return ""


def emit(obj):
    print(json.dumps(obj, ensure_ascii=False), flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("text", nargs="*", help="the message's text parts, one per argument")
    ap.add_argument("--data", help="a JSON value sent as a data part")
    ap.add_argument("--brokers", default="127.0.0.1:9092")
    ap.add_argument("--group", required=True)
    ap.add_argument("--skill", help="the skill's agent; without it, the group's orchestrator")
    ap.add_argument("--client-id", default="a2a-kafka-py", help="sender_id / requester_id")
    ap.add_argument("--task-id", help="default: a new task-<32 hex>")
    ap.add_argument("--context-id", help="default: a new ctx-<32 hex>")
    ap.add_argument("--message-id", help="default: a new UUID")
    ap.add_argument("--deadline", type=float, default=60.0, help="seconds to wait for the final state")
    ap.add_argument("--stream", action="store_true", help="print every status and artifact update")
    ap.add_argument("--no-send", action="store_true", help="only follow --task-id (GetTask)")
    ap.add_argument("--since", type=float, default=3600.0, help="with --no-send: seconds to look back")
    args = ap.parse_args()
    if args.no_send and not args.task_id:
        ap.error("--no-send needs --task-id")

    g = args.group
    task_id = args.task_id or f"task-{uuid.uuid4().hex}"
    context_id = args.context_id or f"ctx-{uuid.uuid4().hex}"
    prefix = f"group.{g}.skill.{args.skill}" if args.skill else f"group.{g}"
    requests, answers, status_topic = f"{prefix}.requests", f"{prefix}.responses", f"group.{g}.tasks.status"
    parts = [{"text": t} for t in args.text] + ([{"data": json.loads(args.data)}] if args.data else [])
    message = {"messageId": args.message_id or str(uuid.uuid4()), "contextId": context_id,
               "role": "ROLE_USER", "parts": parts}

    common = {"bootstrap.servers": args.brokers, **kafka_env()}
    consumer_only = ("session.timeout.ms", "heartbeat.interval.ms", "max.poll.interval.ms")
    consumer = Consumer({**common, "group.id": f"a2a-client-{uuid.uuid4().hex}", "enable.auto.commit": False,
                         "isolation.level": "read_committed"})
    # Follow both topics from just before the request (no consumer group: every partition).
    since_ms = int((time.time() - (args.since if args.no_send else 5.0)) * 1000)
    wanted = []
    for topic in (answers, status_topic) + ((requests,) if args.no_send else ()):
        meta = consumer.list_topics(topic, timeout=10).topics[topic]
        if meta.error is not None:
            sys.exit(f"{topic}: {meta.error.str()} (kafclaw group create makes a group's topics)")
        wanted += [TopicPartition(topic, p, since_ms) for p in meta.partitions]
    consumer.assign(consumer.offsets_for_times(wanted, timeout=10))  # none since then: -1, the end

    task = {"id": task_id, "contextId": context_id, "status": {"state": "TASK_STATE_SUBMITTED", "timestamp": iso()},
            "history": [] if args.no_send else [message]}
    if not args.no_send:
        producer = Producer({**{k: v for k, v in common.items() if k not in consumer_only},
                             "enable.idempotence": True, "partitioner": "murmur2_random"})  # Java's
        envelope = {
            "type": "skill_request" if args.skill else "request", "correlation_id": task_id,
            "sender_id": args.client_id, "timestamp": iso(), "id": message["messageId"],
            "payload": {"task_id": task_id, "description": "\n".join(args.text), "requester_id": args.client_id,
                        "context_id": context_id, "deadline_at": iso(datetime.datetime.now(
                            datetime.timezone.utc) + datetime.timedelta(seconds=args.deadline)),
                        "a2a": {"message": message}},
        }
        headers = [("traceparent", f"00-{uuid.uuid4().hex}-{uuid.uuid4().hex[:16]}-01"),
                   ("a2a-version", "1.0"), ("content-type", "application/json")]
        producer.produce(requests, key=task_id, value=json.dumps(envelope).encode(), headers=headers)
        if producer.flush(10) != 0:
            sys.exit(f"{requests}: the request was not delivered")
        if args.stream:
            emit({"task": task})

    def agent_message(text, env, msg):
        # Its id: the envelope's, else the record's coordinates (the same at every reading).
        mid = env.get("id") or f"{msg.topic()}/{msg.partition()}/{msg.offset()}"
        return {"messageId": mid, "contextId": task["contextId"], "taskId": task_id, "role": "ROLE_AGENT",
                "parts": [{"text": text}]}

    seen, final_at = set(), None
    end = time.monotonic() + args.deadline
    # After the final answer, a streaming client reads on briefly: statuses and deltas written
    # with the answer (same transaction, another topic) are reported before the final state
    # (and GetTask finds the request, on a third topic, for the history).
    while time.monotonic() < (end if final_at is None else min(end, final_at + 0.5)):
        msg = consumer.poll(0.2)
        if msg is None or msg.error():
            if msg is not None and msg.error().code() != KafkaError._PARTITION_EOF:
                print(f"a2a_kafka: {msg.error()}", file=sys.stderr)
            continue
        try:
            env = json.loads(msg.value())
            payload = env.get("payload") or {}
        except (TypeError, ValueError, AttributeError):
            continue  # not an envelope: not ours
        kind, status = env.get("type"), payload.get("status")
        if task_id not in (env.get("correlation_id"), payload.get("task_id")):
            continue
        if kind in ("request", "skill_request") and args.no_send:  # GetTask: the caller's message
            sent = (payload.get("a2a") or {}).get("message") or {
                "messageId": env.get("id") or f"{msg.topic()}/{msg.partition()}/{msg.offset()}",
                "role": "ROLE_USER", "parts": [{"text": payload.get("description", "")}]}
            task["history"].insert(sum(m["role"] == "ROLE_USER" for m in task["history"]), sent)
            task["contextId"] = payload.get("context_id", task["contextId"])
            continue
        if kind not in ANSWERS:
            continue
        if env.get("id") in seen:
            continue  # a duplicate delivery (at-least-once): the first one counted
        seen.add(env.get("id") or object())
        answer = kind in ("response", "skill_response")
        state = STATES.get(status or "completed") if answer else STATES.get(status)
        if state is None or final_at is not None and state in FINAL:
            continue  # an unknown status, or a second final answer: the first one stands
        if status == "streaming":
            if args.stream:
                emit({"artifactUpdate": {"taskId": task_id, "contextId": task["contextId"], "append": payload.get(
                    "index", 0) > 0, "artifact": {"artifactId": "answer", "name": "answer",
                                                  "parts": [{"text": payload.get("delta", "")}]}}})
            continue
        if final_at is not None:  # a status read after the final answer reports, never changes it
            if args.stream:
                emit({"statusUpdate": {"taskId": task_id, "contextId": task["contextId"], "status": {
                    "state": state, "timestamp": a2a_time(env.get("timestamp"))}}})
            continue
        if isinstance(payload.get("context_id"), str):
            task["contextId"] = payload["context_id"]
        text = text_of(payload)
        task["status"] = {"state": state, "timestamp": a2a_time(env.get("timestamp"))}
        reply = agent_message(text, env, msg) if text else None
        if reply:
            task["status"]["message"] = reply
        if answer and reply:
            task["artifacts"] = [{"artifactId": "answer", "name": "answer", "parts": [{"text": text}]}]
            task["history"] = task["history"] + [reply]
        if state in FINAL:
            final_at = time.monotonic()
            if not (args.stream or args.no_send):
                break
        elif args.stream:
            emit({"statusUpdate": {"taskId": task_id, "contextId": task["contextId"], "status": task["status"]}})
    consumer.close()
    if args.stream and final_at is not None:
        emit({"statusUpdate": {"taskId": task_id, "contextId": task["contextId"], "status": task["status"]}})
    emit({"task": {k: v for k, v in task.items() if v != []}})
    if final_at is None:
        print(f"a2a_kafka: no final state for {task_id} within {args.deadline:g} s", file=sys.stderr)
        sys.exit(3)
    sys.exit(0 if task["status"]["state"] == "TASK_STATE_COMPLETED" else 1)


if __name__ == "__main__":
    main()
