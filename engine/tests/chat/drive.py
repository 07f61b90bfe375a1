"""Drives `kafclaw chat` through a pseudo-terminal (pexpect), for engine/tests/kafka/chat.rs.

argv: the kafclaw binary, then its arguments. Environment: KAFCLAW_CHAT_TASK (the request to
type), KAFCLAW_CHAT_SENT (what the session prints once it sent it; default `task task-`, empty:
nothing expected), KAFCLAW_CHAT_TOOL (a tool call the session must show), KAFCLAW_CHAT_ANSWER (the answer
line it must print), KAFCLAW_CHAT_CHAIN (comma-separated texts /trace must show, in order).
Prints the whole session on stdout; exits 1 at the first expectation not met.
"""

import os
import sys

import pexpect

TIMEOUT = 120


def main() -> int:
    child = pexpect.spawn(sys.argv[1], sys.argv[2:], encoding="utf-8", timeout=TIMEOUT, dimensions=(40, 200))
    child.logfile_read = sys.stdout
    try:
        child.expect_exact("you> ")
        child.sendline(os.environ["KAFCLAW_CHAT_TASK"])
        sent = os.environ.get("KAFCLAW_CHAT_SENT", "task task-")
        if sent:
            child.expect_exact(sent)
        # The tool call, shown before the answer.
        child.expect_exact(os.environ["KAFCLAW_CHAT_TOOL"])
        child.expect_exact(os.environ["KAFCLAW_CHAT_ANSWER"])
        child.expect_exact("you> ")
        # History: the up arrow brings the request back; Ctrl-U clears the line again.
        child.send("\x1b[A")
        child.expect_exact(os.environ["KAFCLAW_CHAT_TASK"])
        child.send("\x15")
        child.sendline("/trace")
        for text in os.environ["KAFCLAW_CHAT_CHAIN"].split(","):
            child.expect_exact(text)
        child.expect_exact("you> ")
        child.sendline("/nonsense")
        child.expect_exact("Unknown command /nonsense")
        child.expect_exact("you> ")
        child.sendeof()
        child.expect(pexpect.EOF)
    except (pexpect.TIMEOUT, pexpect.EOF) as e:
        print(f"\ndrive.py: expectation not met: {type(e).__name__}", file=sys.stderr)
        print(f"before: {child.before!r}", file=sys.stderr)
        return 1
    child.close()
    if child.exitstatus != 0:
        print(f"\ndrive.py: kafclaw chat exited {child.exitstatus} (signal {child.signalstatus})", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
