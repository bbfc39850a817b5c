"""MemoryOrchestrator: one object an agent talks to for all three tiers.

It records turns (L1), recalls a prompt-ready context built from every tier,
ends sessions (queuing consolidation L1 -> L2), runs distillation (L2 -> L3),
reads profiles and resolves their clarifications, forgets users, and follows
background jobs. The tier objects it uses share its one connection pool:
``orchestrator.short``, ``orchestrator.long`` and ``orchestrator.medium(user_id)``.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from . import errors
from .client import StrataClient, quote_id
from .models import Context, DeletionReceipt, Job, Profile, ProfileAttribute, TurnAck
from .stores import LongTermMemory, MediumTermMemory, ShortTermMemory

__all__ = ["MemoryOrchestrator"]


class MemoryOrchestrator:
    """Manages sync and retrieval across tiers (the brief's ``MemoryOrchestrator``).

    Give it a :class:`StrataClient` to share, or the client's options
    (``base_url``, ``api_key``, ``timeout``...) to make its own.
    """

    def __init__(self, client: StrataClient | None = None, **options: Any) -> None:
        if client is not None and options:
            raise TypeError("give a client or client options, not both")
        self._owns_client = client is None
        self.client: StrataClient = client if client is not None else StrataClient(**options)
        self.short = ShortTermMemory(self.client)
        self.long = LongTermMemory(self.client)

    def medium(self, user_id: str) -> MediumTermMemory:
        """The L2 store of one user, on this orchestrator's connection pool."""
        return MediumTermMemory(user_id, self.client)

    async def __aenter__(self) -> "MemoryOrchestrator":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the client if this orchestrator made it."""
        if self._owns_client:
            await self.client.close()

    # ---- sessions -------------------------------------------------------------
    async def record_turn(self, session_id: str, user_id: str, role: str,
                          content: str) -> TurnAck:
        """Write a turn to L1 (durable when this returns). Every K turns the
        server queues a consolidation; the ack then carries its ``job_id``."""
        return await self.short.add_turn(session_id, user_id, role, content)

    async def end_session(self, session_id: str) -> str:
        """End a session; its consolidation into L2 is queued. Returns the job id."""
        return await self.short.end_session(session_id)

    async def recall(self, session_id: str, query: str, budget_chars: int = 4000) -> Context:
        """``POST /v1/sessions/{id}/context``: the session's buffer, the memories
        relevant to ``query``, the profile and graph neighbourhood, and ``text``:
        all of it fitted to ``budget_chars``, ready for a prompt."""
        doc = await self.client.call(
            "POST", "/v1/sessions/%s/context" % quote_id(session_id, "session_id"),
            {"query": query, "budget_chars": budget_chars}, expect=(200,))
        return Context.from_json(doc)

    # ---- users ------------------------------------------------------------------
    async def profile(self, user_id: str) -> Profile:
        """``GET /v1/users/{id}/profile``: attributes with history, open clarifications."""
        doc = await self.client.call("GET", "/v1/users/%s/profile"
                                     % quote_id(user_id, "user_id"), expect=(200,))
        return Profile.from_json(doc)

    async def resolve_clarification(self, user_id: str, clarification_id: str,
                                    choose: str | None = None,
                                    value: Any = None) -> ProfileAttribute:
        """Close a clarification: ``choose="old"`` or ``"new"``, or give the ``value``
        to keep. Returns the updated attribute."""
        if (choose is None) == (value is None):
            raise ValueError("give exactly one of choose ('old' or 'new') and value")
        body: dict[str, Any] = {"choose": choose} if choose is not None else {"value": value}
        doc = await self.client.call(
            "POST", "/v1/users/%s/clarifications/%s" % (
                quote_id(user_id, "user_id"), quote_id(clarification_id, "clarification_id")),
            body, expect=(200,))
        return ProfileAttribute.from_json(doc)

    async def forget_user(self, user_id: str) -> DeletionReceipt:
        """Right to be forgotten: ``DELETE /v1/users/{id}/memory`` removes the user
        from L1, L2, L3 and the event log; returns what was removed where."""
        doc = await self.client.call("DELETE", "/v1/users/%s/memory"
                                     % quote_id(user_id, "user_id"), expect=(200, 202))
        receipt = DeletionReceipt.from_json(doc)
        if not receipt.user_id:
            receipt.user_id = user_id
        return receipt

    # ---- pipeline and jobs --------------------------------------------------------
    async def distill(self, user_id: str | None = None) -> str:
        """Queue distillation L2 -> L3 (of one user, or of everyone). Returns the job id."""
        body: dict[str, Any] = {}
        if user_id is not None:
            quote_id(user_id, "user_id")
            body["user_id"] = user_id
        doc = await self.client.call("POST", "/v1/jobs/distill", body, expect=(200, 201, 202))
        return str(doc.get("job_id", "")) if isinstance(doc, dict) else ""

    async def job(self, job_id: str) -> Job:
        """A job's status: queued, running, done or failed (with ``error``)."""
        doc = await self.client.call("GET", "/v1/jobs/%s" % quote_id(job_id, "job_id"),
                                     expect=(200,))
        return Job.from_json(doc)

    async def wait_job(self, job_id: str, timeout: float = 30.0,
                       poll_interval: float = 0.05) -> Job:
        """Poll until the job is done or failed and return it (check ``job.ok``).

        Raises :class:`~strata_client.Timeout` when it has not finished in ``timeout`` s.
        """
        deadline = time.monotonic() + timeout
        delay = poll_interval
        while True:
            job = await self.job(job_id)
            if job.finished:
                return job
            left = deadline - time.monotonic()
            if left <= 0:
                raise errors.Timeout("job %s still %s after %.3gs" % (job_id, job.status, timeout),
                                     code="job_timeout")
            await asyncio.sleep(min(delay, left))
            delay = min(delay * 2, 1.0)
