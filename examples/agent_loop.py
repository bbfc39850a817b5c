#!/usr/bin/env python3
"""An agent loop on Strata's memory, with a fake "LLM" that only echoes.

Each turn the agent:
  1. records the user's message in short-term memory (L1),
  2. recalls a context for it from every tier, fitted to a character budget,
  3. builds a prompt from that context and asks the "LLM" (here: an echo),
  4. records the answer.
At the end it ends the session, which queues the consolidation of the
conversation into medium-term memory (L2), waits for that job, and shows what
Strata now remembers about the user.

Run a server, then the example:

    ./build/stratad --data-dir /tmp/strata-demo &
    python3 examples/agent_loop.py                      # a scripted conversation
    python3 examples/agent_loop.py --interactive        # type your own (empty line ends)
    python3 examples/agent_loop.py --url http://127.0.0.1:7700 --user ana --session s42

Needs only the standard library and strata_client (``pip install ./clients/python``,
or run from the repository: the example finds clients/python/src itself). No
network beyond the Strata server: the "LLM" is local.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import uuid

try:
    import strata_client  # noqa: F401
except ImportError:  # running from a checkout without installing the package
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..",
                                    "clients", "python", "src"))

from strata_client import Context, MemoryOrchestrator, NotFound, StrataError  # noqa: E402

SCRIPT = [
    "Hi! My name is Ana and I work as a nurse in Lisbon.",
    "I love hiking, especially in the mountains.",
    "I am allergic to peanuts, so please keep that in mind for recipes.",
    "Can you suggest a snack for my next hike?",
]


class EchoLLM:
    """Stands in for a chat model: answers by echoing, and says how much context it got."""

    async def complete(self, system: str, user: str) -> str:
        await asyncio.sleep(0)  # a real model would be awaited here
        lines = [line for line in system.splitlines() if line.strip()]
        return "You said: %r. (I was given %d characters of memory in %d lines.)" % (
            user, len(system), len(lines))


def build_prompt(ctx: Context) -> str:
    """The system prompt: Strata's ready-made text, fitted to the budget already."""
    return "You are a helpful assistant. What you remember:\n" + ctx.text


async def recall(mem: MemoryOrchestrator, session_id: str, user_id: str, query: str,
                 budget: int) -> Context:
    """Ask the server for the context; a server without the context route yet gets
    a simpler one assembled here from the session buffer and a memory search."""
    try:
        return await mem.recall(session_id, query, budget_chars=budget)
    except NotFound as e:
        if not e.no_route:
            raise
    session = await mem.short.get_session(session_id)
    hits = await mem.medium(user_id).search(query, limit=5)
    lines = ["%s: %s" % (t.role, t.content) for t in session.buffer]
    lines += ["memory: %s" % h.content for h in hits]
    text = "\n".join(lines)[-budget:]
    return Context(text=text, buffer=session.buffer, memories=hits)


async def agent(args: argparse.Namespace) -> int:
    llm = EchoLLM()
    async with MemoryOrchestrator(base_url=args.url, api_key=args.api_key,
                                  timeout=args.timeout) as mem:
        health = await mem.client.healthz()
        print("connected to %s (stratad %s)" % (args.url, health.get("version", "?")))
        session_id, user_id = args.session, args.user

        async def turns():
            if not args.interactive:
                for line in SCRIPT:
                    print("\nuser> %s" % line)
                    yield line
                return
            loop = asyncio.get_running_loop()
            while True:
                line = await loop.run_in_executor(None, lambda: input("\nuser> "))
                if not line.strip():
                    return
                yield line

        async for message in turns():
            ack = await mem.record_turn(session_id, user_id, "user", message)
            ctx = await recall(mem, session_id, user_id, message, args.budget)
            answer = await llm.complete(build_prompt(ctx), message)
            await mem.record_turn(session_id, user_id, "assistant", answer)
            print("agent> %s" % answer)
            print("       [turn %d, %d buffered turns, %d memories recalled%s]" % (
                ack.turn_count, len(ctx.buffer), len(ctx.memories),
                ", consolidation queued" if ack.consolidation_queued else ""))

        job_id = await mem.end_session(session_id)
        job = await mem.wait_job(job_id, timeout=30)
        print("\nsession %s ended; consolidation job %s: %s%s" % (
            session_id, job_id, job.status, " (%s)" % job.error if job.error else ""))

        found = await mem.medium(user_id).search("what does the user like", limit=5)
        print("memories of %s now in L2: %d" % (user_id, len(found)))
        for hit in found:
            print("  - [%s %.2f] %s" % (hit.memory_type, hit.importance, hit.content))
        try:
            profile = await mem.profile(user_id)
        except NotFound as e:
            if not e.no_route:
                raise
        else:
            for name, attr in sorted(profile.attributes.items()):
                print("  profile %s = %s (confidence %.2f)" % (name, attr.value,
                                                              attr.confidence))
            for c in profile.clarifications:
                print("  to clarify: %s was %r, now %r?" % (c.attribute, c.old, c.new))
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--url", default=os.environ.get("STRATA_URL", "http://127.0.0.1:7700"))
    p.add_argument("--api-key", default=os.environ.get("STRATA_API_KEY"))
    p.add_argument("--user", default="demo-user")
    p.add_argument("--session", default="demo-" + uuid.uuid4().hex[:8])
    p.add_argument("--budget", type=int, default=1500, help="context budget in characters")
    p.add_argument("--timeout", type=float, default=10.0)
    p.add_argument("--interactive", action="store_true", help="read messages from stdin")
    args = p.parse_args(argv)
    try:
        return asyncio.run(agent(args))
    except StrataError as e:
        print("error: %s" % e, file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
