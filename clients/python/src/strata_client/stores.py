"""The brief's interfaces (§4), implemented over Strata's HTTP API.

``MemoryStore`` is the abstract key-value interface; each tier implements its
``get``/``put`` on the generic store ``/v1/kv/{tier}/{key}`` and adds the
tier's own operations:

  ShortTermMemory   L1: sessions, turns, state, dirty sets        (``/v1/kv/l1``)
  MediumTermMemory  L2: one user's memories, vector/text search  (``/v1/kv/l2``)
  LongTermMemory    L3: graph nodes, edges, subgraph queries      (``/v1/kv/l3``)

Each takes an existing :class:`StrataClient` (to share its connection pool)
or the client's options to make its own; either way it is an async context
manager, and closing it closes only a client it made itself.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Iterable, Sequence

from .client import StrataClient, quote_id
from .models import Edge, Memory, Node, SearchResult, Session, SessionState, Subgraph, TurnAck

__all__ = ["MemoryStore", "ShortTermMemory", "MediumTermMemory", "LongTermMemory"]


class MemoryStore(ABC):
    """A tier of memory seen as a key-value store (the brief's interface)."""

    @abstractmethod
    async def get(self, key: str) -> Any:
        """The value stored under ``key``, or ``None`` when there is none."""

    @abstractmethod
    async def put(self, key: str, value: Any) -> None:
        """Store ``value`` (anything JSON can hold) under ``key``."""


class _ClientOwner:
    """Holds a StrataClient, made from options unless one is given."""

    _tier = ""

    def __init__(self, client: StrataClient | None = None, **options: Any) -> None:
        if client is not None and options:
            raise TypeError("give a client or client options, not both")
        self._owns_client = client is None
        self.client: StrataClient = client if client is not None else StrataClient(**options)

    async def __aenter__(self) -> Any:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the client if this object made it."""
        if self._owns_client:
            await self.client.close()

    # The generic store, shared by the three tiers.
    async def _kv_get(self, key: str) -> Any:
        return await self.client.kv_get(self._tier, key)

    async def _kv_put(self, key: str, value: Any) -> None:
        await self.client.kv_put(self._tier, key, value)

    async def delete(self, key: str) -> bool:
        """Remove ``key`` from this tier's store; False when it was not there."""
        return await self.client.kv_delete(self._tier, key)


class ShortTermMemory(_ClientOwner, MemoryStore):
    """L1, short-term memory: sessions (state and buffer of recent turns), dirty sets.

    ``get``/``put`` use ``/v1/kv/l1/{key}`` (working memory for the agent's own keys).
    """

    _tier = "l1"

    async def get(self, key: str) -> Any:
        return await self._kv_get(key)

    async def put(self, key: str, value: Any) -> None:
        await self._kv_put(key, value)

    async def add_turn(self, session_id: str, user_id: str, role: str, content: str) -> TurnAck:
        """Append a turn (role ``user``, ``assistant`` or ``system``); durable when it returns.

        Raises Conflict when the session belongs to another user, Unprocessable
        for a bad role or empty content, BadRequest for a bad id.
        """
        doc = await self.client.call(
            "POST", "/v1/sessions/%s/turns" % quote_id(session_id, "session_id"),
            {"user_id": user_id, "role": role, "content": content}, expect=(200, 201))
        return TurnAck.from_json(doc)

    async def get_session(self, session_id: str) -> Session:
        """The session's user, state and buffer (oldest turn first). NotFound if unknown."""
        doc = await self.client.call("GET", "/v1/sessions/%s"
                                     % quote_id(session_id, "session_id"), expect=(200,))
        return Session.from_json(doc)

    async def set_stage(self, session_id: str, current_stage: str) -> SessionState:
        """Set ``current_stage``; returns the new state."""
        doc = await self.client.call(
            "PATCH", "/v1/sessions/%s/state" % quote_id(session_id, "session_id"),
            {"current_stage": current_stage}, expect=(200,))
        return SessionState.from_json(doc)

    async def end_session(self, session_id: str) -> str:
        """End the session and queue its consolidation; returns the job id."""
        doc = await self.client.call(
            "POST", "/v1/sessions/%s/end" % quote_id(session_id, "session_id"),
            expect=(200, 202))
        return str(doc.get("job_id", "")) if isinstance(doc, dict) else ""

    async def dirty(self, user_id: str) -> list[str]:
        """Members of ``user:{user_id}:dirty``: attributes waiting to sync to L2/L3."""
        doc = await self.client.call("GET", "/v1/users/%s/dirty"
                                     % quote_id(user_id, "user_id"), expect=(200,))
        attrs = doc.get("attributes") if isinstance(doc, dict) else None
        return [a for a in attrs if isinstance(a, str)] if isinstance(attrs, list) else []


def _vector(query_vector: Any) -> list[float]:
    if hasattr(query_vector, "tolist"):  # numpy arrays and the like
        query_vector = query_vector.tolist()
    out = []
    for x in query_vector:
        if isinstance(x, bool) or not isinstance(x, (int, float)):
            raise TypeError("query_vector must hold numbers, not %s" % type(x).__name__)
        out.append(float(x))
    if not out:
        raise ValueError("query_vector must not be empty")
    return out


class MediumTermMemory(_ClientOwner, MemoryStore):
    """L2, medium-term memory: one user's memories (preference, fact, experience).

    ``get``/``put`` use ``/v1/kv/l2/{key}``; the rest works on
    ``/v1/users/{user_id}/memories``.
    """

    _tier = "l2"

    def __init__(self, user_id: str, client: StrataClient | None = None, **options: Any) -> None:
        super().__init__(client, **options)
        self.user_id = user_id
        self._base = "/v1/users/%s/memories" % quote_id(user_id, "user_id")

    async def get(self, key: str) -> Any:
        return await self._kv_get(key)

    async def put(self, key: str, value: Any) -> None:
        await self._kv_put(key, value)

    async def search(self, query_vector: Sequence[float] | str, limit: int = 5) -> list[SearchResult]:
        """The ``limit`` memories nearest to ``query_vector``, best first.

        A sequence of numbers is a vector search (its dimension must be the
        server's embedding dimension); a string is the server's default
        (hybrid) search on that text.
        """
        if isinstance(query_vector, str):
            return await self.search_text(query_vector, limit)
        body: dict[str, Any] = {"query_vector": _vector(query_vector), "mode": "vector",
                                "limit": limit}
        return await self._search(body)

    async def search_text(
        self,
        query: str,
        limit: int = 5,
        mode: str | None = None,
        memory_types: Iterable[str] | None = None,
        min_importance: float | None = None,
    ) -> list[SearchResult]:
        """Search by text: ``mode`` ``hybrid`` (server default), ``vector`` or ``keyword``;
        optionally only some ``memory_types`` and at least ``min_importance``."""
        body: dict[str, Any] = {"query": query, "limit": limit}
        if mode is not None:
            body["mode"] = mode
        if memory_types is not None:
            body["memory_types"] = [memory_types] if isinstance(memory_types, str) \
                else list(memory_types)
        if min_importance is not None:
            body["min_importance"] = min_importance
        return await self._search(body)

    async def _search(self, body: dict[str, Any]) -> list[SearchResult]:
        doc = await self.client.call("POST", self._base + "/search", body, expect=(200,))
        results = doc.get("results") if isinstance(doc, dict) else None
        return [SearchResult.from_json(r) for r in results] if isinstance(results, list) else []

    async def add_memory(
        self,
        memory_type: str,
        content: str,
        importance: float | None = None,
        provenance: Iterable[str] | None = None,
    ) -> Memory:
        """Store a memory; ``importance`` in [0, 1] (server default 0.5);
        ``provenance`` names what it came from. Unprocessable for a bad type."""
        body: dict[str, Any] = {"memory_type": memory_type, "content": content}
        if importance is not None:
            body["importance"] = importance
        if provenance is not None:
            body["provenance"] = list(provenance)
        doc = await self.client.call("POST", self._base, body, expect=(200, 201))
        return Memory.from_json(doc)

    async def get_memory(self, memory_id: str) -> Memory:
        """One memory by id. NotFound if there is none (for this user)."""
        doc = await self.client.call("GET", "%s/%s" % (self._base,
                                                       quote_id(memory_id, "memory_id")),
                                     expect=(200,))
        return Memory.from_json(doc)

    async def delete_memory(self, memory_id: str) -> None:
        """Delete one memory. NotFound if there is none."""
        await self.client.call("DELETE", "%s/%s" % (self._base, quote_id(memory_id, "memory_id")),
                               expect=(200, 204))


class LongTermMemory(_ClientOwner, MemoryStore):
    """L3, long-term memory: the knowledge graph.

    ``get``/``put`` use ``/v1/kv/l3/{key}``; nodes and edges live under ``/v1/graph``.
    Pipeline-made node ids are ``<label lower case>:<key>`` (``user:u1``,
    ``topic:hiking``), see :meth:`node_id`.
    """

    _tier = "l3"

    async def get(self, key: str) -> Any:
        return await self._kv_get(key)

    async def put(self, key: str, value: Any) -> None:
        await self._kv_put(key, value)

    @staticmethod
    def node_id(label: str, key: str) -> str:
        """The id the pipeline gives a node: ``user:<id>``, ``topic:<slug>``..."""
        if label.lower() == "user":
            return "user:" + key
        slug = "-".join(key.lower().split())
        return "%s:%s" % (label.lower(), slug)

    async def query_subgraph(
        self,
        center_node_id: str,
        depth: int = 2,
        *,
        types: Iterable[str] | None = None,
        direction: str | None = None,
        limit: int | None = None,
        as_of: int | None = None,
    ) -> Subgraph:
        """Nodes and edges within ``depth`` hops of ``center_node_id``.

        ``types`` keeps only those edge types; ``direction`` is ``out``, ``in``
        or ``both``; ``limit`` caps the nodes (``truncated`` says it cut);
        ``as_of`` (Unix seconds) reads the graph as it was then.
        """
        quote_id(center_node_id, "center_node_id")
        query: list[tuple[str, Any]] = [("center", center_node_id), ("depth", int(depth))]
        if types is not None:
            query.append(("types", types if isinstance(types, str) else ",".join(types)))
        if direction is not None:
            query.append(("direction", direction))
        if limit is not None:
            query.append(("limit", int(limit)))
        if as_of is not None:
            query.append(("as_of", int(as_of)))
        doc = await self.client.call("GET", "/v1/graph/subgraph", query=query, expect=(200,))
        return Subgraph.from_json(doc)

    async def put_node(self, node_id: str, label: str,
                       properties: dict[str, Any] | None = None) -> Node:
        """Create or update a node (properties are merged); ``.created`` tells which."""
        body: dict[str, Any] = {"label": label}
        if properties is not None:
            body["properties"] = properties
        status, doc = await self.client.call_status(
            "PUT", "/v1/graph/nodes/%s" % quote_id(node_id, "node_id"), body, expect=(200, 201))
        node = Node.from_json(doc)
        node.created = status == 201
        return node

    async def get_node(self, node_id: str, as_of: int | None = None) -> Node:
        """A node (as it was at ``as_of``, Unix seconds, when given). NotFound if none."""
        doc = await self.client.call(
            "GET", "/v1/graph/nodes/%s" % quote_id(node_id, "node_id"),
            query=[("as_of", int(as_of))] if as_of is not None else None, expect=(200,))
        return Node.from_json(doc)

    async def delete_node(self, node_id: str) -> None:
        """Delete a node and its edges. NotFound if none."""
        await self.client.call("DELETE", "/v1/graph/nodes/%s" % quote_id(node_id, "node_id"),
                               expect=(200, 204))

    async def put_edge(
        self,
        from_: str,
        to: str,
        type: str,  # noqa: A002 - the API's field name
        properties: dict[str, Any] | None = None,
        *,
        weight: float | None = None,
        valid_from: int | None = None,
    ) -> Edge:
        """Create or update the edge (from_, to, type). ``weight`` is a shortcut for
        ``properties["weight"]``. Unprocessable when either end does not exist."""
        props = dict(properties) if properties is not None else None
        if weight is not None:
            props = props or {}
            props["weight"] = weight
        body: dict[str, Any] = {"from": from_, "to": to, "type": type}
        if props is not None:
            body["properties"] = props
        if valid_from is not None:
            body["valid_from"] = int(valid_from)
        status, doc = await self.client.call_status("PUT", "/v1/graph/edges", body,
                                                    expect=(200, 201))
        edge = Edge.from_json(doc)
        if props is not None and not edge.properties:
            edge.properties = props
        if edge.created is None:
            edge.created = status == 201
        return edge

    async def expire_edge(self, from_: str, to: str, type: str) -> None:  # noqa: A002
        """End the edge's current version (kept for ``as_of`` reads). NotFound if none."""
        await self.client.call("POST", "/v1/graph/edges/expire",
                               {"from": from_, "to": to, "type": type}, expect=(200, 204))
