#!/usr/bin/env python3
"""Drives `kafclaw mcp-server` with the official MCP Python SDK (`mcp` 2.3.0) and prints what
it saw as one JSON object on stdout, for engine/tests/kafka/mcp_server.rs to judge.

    mcp_client.py stdio --server CMD [ARG...]        # the SDK starts the server (mcp.client.stdio)
    mcp_client.py http --url URL --token-env VAR      # Streamable HTTP (mcp.client.streamable_http)

The scenario: list the tools until every --expect skill is there (writing --ready-file after
the first listing, so the test can start an agent then and see the list change) and every
--expect-member agent is live (then wait for the list_changed notification), call each
--call SKILL=DESCRIPTION, call --dead SKILL with a short deadline, call --concurrent N at once
on the first --call skill, call a skill without `description` and with a huge one, and read
--trace-id with the `trace` tool and the roster with `group_members`.
"""

import argparse
import asyncio
import json
import os
import sys
import time

import mcp_types as types
from mcp.client.session import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from mcp.shared.exceptions import MCPError


def text_of(result):
    return "".join(c.text for c in result.content if getattr(c, "type", None) == "text")


async def scenario(session, args, report):
    await session.initialize()
    deadline = time.monotonic() + args.wait
    first = True
    while True:
        tools = (await session.list_tools()).tools
        names = sorted(t.name for t in tools)
        if first and args.ready_file:
            with open(args.ready_file, "w") as f:
                f.write(json.dumps({t.name: t.description for t in tools}))
            first = False
        if all(s in names for s in args.expect) or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.5)
    # Members that must be live (and, when the list changed meanwhile, the notification seen).
    while args.expect_member:
        members = json.loads(text_of(await session.call_tool("group_members", {})))
        if all(m in [x["agent_id"] for x in members] for m in args.expect_member) or time.monotonic() > deadline:
            settle = time.monotonic() + 10
            while report["list_changed"] == 0 and time.monotonic() < settle:
                await asyncio.sleep(0.2)
            tools = (await session.list_tools()).tools
            names = sorted(t.name for t in tools)
            break
        await asyncio.sleep(0.5)
    report["tools"] = names
    report["read_only"] = {t.name: (t.annotations.read_only_hint if t.annotations else None) for t in tools}
    report["schemas"] = {t.name: t.input_schema for t in tools}
    report["descriptions"] = {t.name: t.description for t in tools}

    report["answers"] = {}
    for c in args.call:
        skill, _, description = c.partition("=")
        r = await session.call_tool(skill, {"description": description, "deadline_seconds": 60})
        report["answers"][skill] = {"is_error": bool(r.is_error), "text": text_of(r), "structured": r.structured_content}

    if args.dead:
        progress = []

        async def on_progress(p, total, message):
            progress.append(p)

        start = time.monotonic()
        r = await session.call_tool(args.dead, {"description": "anyone?", "deadline_seconds": 3}, progress_callback=on_progress)
        report["dead"] = {
            "is_error": bool(r.is_error),
            "text": text_of(r),
            "seconds": time.monotonic() - start,
            "progress": progress,
        }

    if args.concurrent and args.call:
        skill = args.call[0].partition("=")[0]
        asks = [f"question {i} of {args.concurrent}" for i in range(args.concurrent)]
        results = await asyncio.gather(
            *(session.call_tool(skill, {"description": a, "deadline_seconds": 60}) for a in asks)
        )
        report["concurrent"] = [
            {"asked": a, "is_error": bool(r.is_error), "text": text_of(r), "task_id": (r.structured_content or {}).get("task_id")}
            for a, r in zip(asks, results)
        ]

    if args.call:
        skill = args.call[0].partition("=")[0]
        for name, arguments in (("missing", {"deadline_seconds": 5}), ("huge", {"description": "x" * (1 << 20)})):
            try:
                r = await session.call_tool(skill, arguments)
                report[name] = {"result": {"is_error": bool(r.is_error), "text": text_of(r)}}
            except MCPError as e:
                report[name] = {"code": e.code, "message": e.message}

    if args.trace_id:
        r = await session.call_tool("trace", {"task_id": args.trace_id})
        report["trace"] = json.loads(text_of(r))
    r = await session.call_tool("group_members", {})
    report["members"] = json.loads(text_of(r))


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("transport", choices=["stdio", "http"])
    ap.add_argument("--server", nargs=argparse.REMAINDER, default=[])
    ap.add_argument("--url")
    ap.add_argument("--token-env")
    ap.add_argument("--expect", action="append", default=[])
    ap.add_argument("--expect-member", action="append", default=[])
    ap.add_argument("--call", action="append", default=[])
    ap.add_argument("--dead")
    ap.add_argument("--concurrent", type=int, default=0)
    ap.add_argument("--trace-id")
    ap.add_argument("--ready-file")
    ap.add_argument("--wait", type=float, default=90)
    args = ap.parse_args()

    report = {"list_changed": 0}

    async def on_message(message):
        if isinstance(message, types.ToolListChangedNotification):
            report["list_changed"] += 1
        elif isinstance(message, Exception):
            print(f"mcp_client: transport error: {message!r}", file=sys.stderr, flush=True)

    if args.transport == "stdio":
        params = StdioServerParameters(command=args.server[0], args=args.server[1:], env=dict(os.environ))
        async with stdio_client(params) as (read, write):
            async with ClientSession(read, write, message_handler=on_message) as session:
                await scenario(session, args, report)
    else:
        token = os.environ[args.token_env]
        client = create_mcp_http_client(headers={"Authorization": f"Bearer {token}"})
        async with client:
            async with streamable_http_client(args.url, http_client=client) as (read, write):
                async with ClientSession(read, write, message_handler=on_message) as session:
                    await scenario(session, args, report)
    print(json.dumps(report))


if __name__ == "__main__":
    asyncio.run(main())
