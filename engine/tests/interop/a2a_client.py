"""The official A2A Python SDK (a2a-sdk 1.3.0) against `kafclaw gateway`'s A2A endpoints.

Run by engine/tests/kafka/a2a.rs with the interop venv (KAFCLAW_INTEROP_PYTHON):

    a2a_client.py --base http://127.0.0.1:PORT --token TOKEN --skill echo --idle-skill idle

It uses only the SDK's public client: the card resolver (the group's card and the skill's),
the client factory (JSON-RPC transport chosen from the card's supportedInterfaces) with the
bearer token on its httpx client, `send_message` (blocking, then streaming), `get_task`,
`cancel_task`. Every check that fails raises (exit code 1, the traceback on stderr); what it
observed is printed as one JSON object on stdout for the Rust test to compare with the
topics.
"""

import argparse
import asyncio
import json
import sys
import uuid

import httpx
from google.protobuf.json_format import MessageToDict

from a2a.client import A2ACardResolver, ClientConfig, ClientFactory
from a2a.client.errors import A2AClientError
from a2a.types.a2a_pb2 import (
    CancelTaskRequest,
    GetTaskRequest,
    Message,
    Part,
    Role,
    SendMessageRequest,
    TaskState,
)
from a2a.utils.errors import TaskNotCancelableError, TaskNotFoundError

KAFKA_BINDING = "urn:kafclaw:a2a:kafka:v1"


def check(cond, what):
    if not cond:
        raise AssertionError(what)


def message(text):
    return Message(role=Role.ROLE_USER, message_id=str(uuid.uuid4()), parts=[Part(text=text)])


def http(token):
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    return httpx.AsyncClient(headers=headers, timeout=120)


async def client_for(card, token, streaming):
    config = ClientConfig(streaming=streaming, httpx_client=http(token))
    return ClientFactory(config).create(card)


def answer_of(task):
    check(len(task.artifacts) == 1, f"one artifact: {task}")
    art = task.artifacts[0]
    check(art.artifact_id == "answer", f"the answer artifact: {art}")
    return "".join(p.text for p in art.parts)


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--base", required=True)
    ap.add_argument("--token", required=True)
    ap.add_argument("--skill", required=True)
    ap.add_argument("--idle-skill", required=True)
    ap.add_argument("--prompt", default="stream 3")
    a = ap.parse_args()
    out = {}

    # The cards are public: fetched without a token, parsed by the SDK.
    async with httpx.AsyncClient(timeout=30) as anon:
        resolver = A2ACardResolver(anon, a.base)
        group = await resolver.get_agent_card()
        card = await resolver.get_agent_card(f"/a2a/{a.skill}/.well-known/agent-card.json")
        idle = await resolver.get_agent_card(f"/a2a/{a.idle_skill}/.well-known/agent-card.json")
    check(group.capabilities.streaming, "the group card says streaming")
    skills = [s.id for s in group.skills]
    check(a.skill in skills and a.idle_skill in skills, f"the group card lists the skills: {skills}")
    bindings = [(i.protocol_binding, i.url) for i in card.supported_interfaces]
    check(bindings[0] == ("JSONRPC", f"{a.base}/a2a/{a.skill}"), f"JSON-RPC first: {bindings}")
    check(any(b == KAFKA_BINDING and u.startswith("kafka://") and u.endswith(f".skill.{a.skill}.requests")
              for b, u in bindings), f"the Kafka binding: {bindings}")
    check(card.security_schemes["bearer"].http_auth_security_scheme.scheme.lower() == "bearer",
          f"bearer scheme: {card.security_schemes}")
    check([s.id for s in card.skills] == [a.skill], f"the skill card's skill: {card.skills}")
    out["group_card"] = MessageToDict(group)
    out["skill_card"] = MessageToDict(card)

    # 1. A blocking message: the completed task with the answer artifact.
    client = await client_for(card, a.token, streaming=False)
    events = [e async for e in client.send_message(SendMessageRequest(message=message(a.prompt)))]
    check(len(events) == 1 and events[0].HasField("task"), f"one task: {events}")
    task = events[0].task
    check(task.status.state == TaskState.TASK_STATE_COMPLETED, f"completed: {task.status}")
    out["sent"] = {"id": task.id, "context_id": task.context_id, "answer": answer_of(task),
                   "status_text": "".join(p.text for p in task.status.message.parts)}
    roles = [m.role for m in task.history]
    check(roles == [Role.ROLE_USER, Role.ROLE_AGENT], f"history user then agent: {roles}")

    # GetTask returns it; historyLength is honoured.
    got = await client.get_task(GetTaskRequest(id=task.id, history_length=1))
    check(got.status.state == TaskState.TASK_STATE_COMPLETED and answer_of(got) == out["sent"]["answer"], f"{got}")
    check(len(got.history) == 1 and got.history[0].role == Role.ROLE_AGENT, f"historyLength 1: {got.history}")

    # A finished task is not cancelable.
    try:
        await client.cancel_task(CancelTaskRequest(id=task.id))
        raise AssertionError("canceling a completed task succeeded")
    except TaskNotCancelableError as e:
        out["cancel_completed"] = str(e)
    try:
        await client.get_task(GetTaskRequest(id="task-does-not-exist"))
        raise AssertionError("an unknown task was found")
    except TaskNotFoundError as e:
        out["get_unknown"] = str(e)

    # 2. A streamed message: the task, status updates, artifact chunks, the final status.
    streaming = await client_for(card, a.token, streaming=True)
    kinds, states, chunks = [], [], []
    streamed = ""
    stream_id = None
    async for e in streaming.send_message(SendMessageRequest(message=message(a.prompt))):
        kind = e.WhichOneof("payload")
        kinds.append(kind)
        if kind == "task":
            stream_id = e.task.id
            states.append(TaskState.Name(e.task.status.state))
        elif kind == "status_update":
            check(e.status_update.task_id == stream_id, "events of the task")
            states.append(TaskState.Name(e.status_update.status.state))
        elif kind == "artifact_update":
            u = e.artifact_update
            text = "".join(p.text for p in u.artifact.parts)
            chunks.append({"text": text, "append": u.append, "last_chunk": u.last_chunk})
            streamed = streamed + text if u.append else text
    check(kinds[0] == "task" and states[0] == "TASK_STATE_SUBMITTED", f"the task first: {kinds} {states}")
    check(kinds[-1] == "status_update" and states[-1] == "TASK_STATE_COMPLETED", f"completed last: {kinds} {states}")
    check("artifact_update" in kinds, f"artifact chunks: {kinds}")
    check(chunks[-1]["last_chunk"], f"the last chunk says so: {chunks}")
    final = await streaming.get_task(GetTaskRequest(id=stream_id))
    check(streamed == answer_of(final), f"the chunks make the answer: {streamed!r} vs {answer_of(final)!r}")
    out["streamed"] = {"id": stream_id, "kinds": kinds, "states": states, "chunks": chunks, "answer": streamed}

    # 3. A skill with no member: the task stays submitted (returnImmediately), then is canceled.
    idle_client = await client_for(idle, a.token, streaming=False)
    req = SendMessageRequest(message=message("nobody serves this"))
    req.configuration.return_immediately = True
    [pending] = [e async for e in idle_client.send_message(req)]
    check(pending.task.status.state == TaskState.TASK_STATE_SUBMITTED, f"submitted: {pending}")
    canceled = await idle_client.cancel_task(CancelTaskRequest(id=pending.task.id))
    check(canceled.status.state == TaskState.TASK_STATE_CANCELED, f"canceled: {canceled.status}")
    again = await idle_client.get_task(GetTaskRequest(id=pending.task.id))
    check(again.status.state == TaskState.TASK_STATE_CANCELED, f"still canceled: {again.status}")
    out["canceled"] = {"id": pending.task.id}

    # 4. Wrong and missing tokens: 401, through the SDK and raw.
    for label, token in [("wrong", a.token + "x"), ("missing", None)]:
        bad = await client_for(card, token, streaming=False)
        try:
            [_ async for _ in bad.send_message(SendMessageRequest(message=message("x")))]
            raise AssertionError(f"{label} token accepted")
        except A2AClientError as e:
            check("401" in str(e), f"{label} token: 401, got {e}")
        try:
            await bad.get_task(GetTaskRequest(id=task.id))
            raise AssertionError(f"{label} token read a task")
        except A2AClientError as e:
            check("401" in str(e), f"{label} token: 401, got {e}")
        async with http(token) as raw:
            body = {"jsonrpc": "2.0", "id": 1, "method": "GetTask", "params": {"id": task.id}}
            r = await raw.post(f"{a.base}/a2a/{a.skill}", json=body)
            check(r.status_code == 401, f"raw {label}: {r.status_code} {r.text}")
            check(r.headers.get("www-authenticate") == "Bearer", f"{r.headers}")
    out["unauthorized"] = True

    print(json.dumps(out))


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except Exception:
        import traceback

        traceback.print_exc()
        sys.exit(1)
