#!/usr/bin/env python3
"""Validates A2A v1.0 JSON with the official a2a-sdk (engine/tests/interop/requirements.txt).

Reads JSON lines on standard input, each an A2A `StreamResponse` (`{"task": ...}`,
`{"statusUpdate": ...}`, `{"artifactUpdate": ...}` or `{"message": ...}`), as
examples/python/a2a_kafka.py prints them. Each line is parsed by protobuf's JSON parser into the
SDK's `a2a.types.StreamResponse` (unknown fields and wrong types are errors), and checked by the
SDK's own `validate_proto_required_fields` (the `REQUIRED` field behaviours of a2a.proto): a
Task without id or status, a Message without messageId, role or parts fails. Prints each line as
the SDK re-serializes it
(`MessageToDict`, camelCase: the canonical ProtoJSON form) on one line; exits 1 naming the
line and the error at the first invalid one, 2 when there is no line at all.
"""

import json
import sys

from a2a.types import StreamResponse
from a2a.utils.proto_utils import validate_proto_required_fields
from google.protobuf import json_format


def main():
    count = 0
    for number, line in enumerate(sys.stdin, start=1):
        if not line.strip():
            continue
        try:
            parsed = json_format.Parse(line, StreamResponse())
            validate_proto_required_fields(parsed)
            kind = parsed.WhichOneof("payload")
            if kind is None:
                raise ValueError("no task, message, statusUpdate or artifactUpdate")
        except Exception as e:  # every parse or validation error fails the line
            print(f"line {number}: not valid A2A v1.0: {type(e).__name__}: {e}\n  {line.strip()}", file=sys.stderr)
            sys.exit(1)
        print(json.dumps(json_format.MessageToDict(parsed), sort_keys=True))
        count += 1
    if count == 0:
        print("no A2A JSON on standard input", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
