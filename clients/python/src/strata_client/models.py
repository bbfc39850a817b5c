"""Typed results: one dataclass per shape of API.md.

Every class has ``from_json(doc)`` that tolerates missing fields (they take
their defaults) and unknown ones (kept in ``extra``), so a newer server does not
break an older client. ``to_json()`` gives the API's field names back.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Mapping

__all__ = [
    "Turn",
    "TurnAck",
    "SessionState",
    "Session",
    "Memory",
    "SearchResult",
    "Node",
    "Edge",
    "Subgraph",
    "Job",
    "HistoryEntry",
    "ProfileAttribute",
    "Clarification",
    "Profile",
    "Context",
    "DeletionReceipt",
    "ApiKey",
]

def _obj(doc: Any) -> Mapping[str, Any]:
    return doc if isinstance(doc, Mapping) else {}


def _int(v: Any, default: int = 0) -> int:
    if isinstance(v, bool):
        return int(v)
    if isinstance(v, int):
        return v
    if isinstance(v, float):
        return int(v)
    return default


def _opt_int(v: Any) -> int | None:
    return None if v is None else _int(v)


def _float(v: Any, default: float = 0.0) -> float:
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return float(v)
    return default


def _opt_float(v: Any) -> float | None:
    return None if v is None else _float(v)


def _str(v: Any, default: str = "") -> str:
    return v if isinstance(v, str) else default


def _strs(v: Any) -> list[str]:
    return [x for x in v if isinstance(x, str)] if isinstance(v, list) else []


def _extra(doc: Mapping[str, Any], known: set[str]) -> dict[str, Any]:
    return {k: v for k, v in doc.items() if k not in known}


@dataclass
class Turn:
    """One entry of a session buffer."""

    role: str
    content: str
    ts: int = 0
    seq: int | None = None
    extra: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, doc: Any) -> "Turn":
        d = _obj(doc)
        return cls(_str(d.get("role")), _str(d.get("content")), _int(d.get("ts")),
                   _opt_int(d.get("seq")), _extra(d, {"role", "content", "ts", "seq"}))

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"role": self.role, "content": self.content, "ts": self.ts}
        if self.seq is not None:
            out["seq"] = self.seq
        return out


@dataclass
class TurnAck:
    """The answer to a stored turn: its count and whether consolidation was queued."""

    session_id: str
    turn_count: int
    consolidation: str = "none"
    job_id: str | None = None

    @property
    def consolidation_queued(self) -> bool:
        return self.consolidation == "queued"

    @classmethod
    def from_json(cls, doc: Any) -> "TurnAck":
        d = _obj(doc)
        job = d.get("job_id")
        return cls(_str(d.get("session_id")), _int(d.get("turn_count")),
                   _str(d.get("consolidation"), "none"), job if isinstance(job, str) else None)


@dataclass
class SessionState:
    """``session:{id}:state``: current_stage, turn_count, last_active (Unix s)."""

    current_stage: str = ""
    turn_count: int = 0
    last_active: int = 0

    @classmethod
    def from_json(cls, doc: Any) -> "SessionState":
        d = _obj(doc)
        return cls(_str(d.get("current_stage")), _int(d.get("turn_count")),
                   _int(d.get("last_active")))

    def to_json(self) -> dict[str, Any]:
        return {"current_stage": self.current_stage, "turn_count": self.turn_count,
                "last_active": self.last_active}


@dataclass
class Session:
    """A session: its user, state and buffer (the last N turns, oldest first)."""

    session_id: str
    user_id: str
    state: SessionState
    buffer: list[Turn] = field(default_factory=list)
    ended: bool = False
    extra: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, doc: Any) -> "Session":
        d = _obj(doc)
        buf = d.get("buffer")
        return cls(
            _str(d.get("session_id")),
            _str(d.get("user_id")),
            SessionState.from_json(d.get("state")),
            [Turn.from_json(t) for t in buf] if isinstance(buf, list) else [],
            bool(d.get("ended", False)),
            _extra(d, {"session_id", "user_id", "state", "buffer", "ended"}),
        )


_MEMORY_KEYS = {"id", "user_id", "memory_type", "content", "importance", "timestamp",
                "provenance", "score"}


@dataclass
class Memory:
    """An L2 memory: type (preference, fact, experience), content, importance in [0, 1]."""

    id: str
    memory_type: str
    content: str
    importance: float = 0.0
    timestamp: int = 0
    user_id: str = ""
    provenance: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, doc: Any) -> "Memory":
        d = _obj(doc)
        return cls(_str(d.get("id")), _str(d.get("memory_type")), _str(d.get("content")),
                   _float(d.get("importance")), _int(d.get("timestamp")),
                   _str(d.get("user_id")), _strs(d.get("provenance")),
                   _extra(d, _MEMORY_KEYS))

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "user_id": self.user_id, "memory_type": self.memory_type,
                "content": self.content, "importance": self.importance,
                "timestamp": self.timestamp, "provenance": list(self.provenance)}


@dataclass
class SearchResult(Memory):
    """A memory found by a search, with its score (higher is better)."""

    score: float = 0.0

    @classmethod
    def from_json(cls, doc: Any) -> "SearchResult":
        d = _obj(doc)
        return cls(_str(d.get("id")), _str(d.get("memory_type")), _str(d.get("content")),
                   _float(d.get("importance")), _int(d.get("timestamp")),
                   _str(d.get("user_id")), _strs(d.get("provenance")),
                   _extra(d, _MEMORY_KEYS), _float(d.get("score")))

    def to_json(self) -> dict[str, Any]:
        out = super().to_json()
        out["score"] = self.score
        return out

    @property
    def memory(self) -> Memory:
        return Memory(self.id, self.memory_type, self.content, self.importance, self.timestamp,
                      self.user_id, list(self.provenance), dict(self.extra))


@dataclass
class Node:
    """An L3 node. ``created`` is set by put_node: True when the node is new."""

    id: str
    label: str
    properties: dict[str, Any] = field(default_factory=dict)
    created_at: int | None = None
    updated_at: int | None = None
    created: bool | None = field(default=None, compare=False)
    extra: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, doc: Any) -> "Node":
        d = _obj(doc)
        props = d.get("properties")
        return cls(_str(d.get("id")), _str(d.get("label")),
                   dict(props) if isinstance(props, Mapping) else {},
                   _opt_int(d.get("created_at")), _opt_int(d.get("updated_at")), None,
                   _extra(d, {"id", "label", "properties", "created_at", "updated_at"}))

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "label": self.label, "properties": dict(self.properties)}


@dataclass
class Edge:
    """An L3 edge ``from_ -[type]-> to``. Validity fields are as the server sends them
    (the embedded graph reports them in milliseconds; 0 means open-ended)."""

    from_: str
    to: str
    type: str
    properties: dict[str, Any] = field(default_factory=dict)
    valid_from: int | None = None
    valid_to: int | None = None
    created_at: int | None = None
    expired_at: int | None = None
    created: bool | None = field(default=None, compare=False)
    extra: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def weight(self) -> float | None:
        w = self.properties.get("weight")
        return float(w) if isinstance(w, (int, float)) and not isinstance(w, bool) else None

    @classmethod
    def from_json(cls, doc: Any) -> "Edge":
        d = _obj(doc)
        props = d.get("properties")
        created = d.get("created")
        return cls(_str(d.get("from")), _str(d.get("to")), _str(d.get("type")),
                   dict(props) if isinstance(props, Mapping) else {},
                   _opt_int(d.get("valid_from")), _opt_int(d.get("valid_to")),
                   _opt_int(d.get("created_at")), _opt_int(d.get("expired_at")),
                   created if isinstance(created, bool) else None,
                   _extra(d, {"from", "to", "type", "properties", "valid_from", "valid_to",
                              "created_at", "expired_at", "created"}))

    def to_json(self) -> dict[str, Any]:
        return {"from": self.from_, "to": self.to, "type": self.type,
                "properties": dict(self.properties)}


@dataclass
class Subgraph:
    """Nodes and edges around a center; ``truncated`` when the limit cut it short."""

    nodes: list[Node] = field(default_factory=list)
    edges: list[Edge] = field(default_factory=list)
    truncated: bool = False

    def node(self, node_id: str) -> Node | None:
        for n in self.nodes:
            if n.id == node_id:
                return n
        return None

    @classmethod
    def from_json(cls, doc: Any) -> "Subgraph":
        d = _obj(doc)
        nodes = d.get("nodes")
        edges = d.get("edges")
        return cls([Node.from_json(n) for n in nodes] if isinstance(nodes, list) else [],
                   [Edge.from_json(e) for e in edges] if isinstance(edges, list) else [],
                   bool(d.get("truncated", False)))


@dataclass
class Job:
    """A background job (consolidate, distill, ...)."""

    job_id: str
    kind: str = ""
    status: str = "queued"
    attempts: int = 0
    error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def finished(self) -> bool:
        """True once the job is done or failed."""
        return self.status in ("done", "failed")

    @property
    def ok(self) -> bool:
        return self.status == "done"

    @classmethod
    def from_json(cls, doc: Any) -> "Job":
        d = _obj(doc)
        err = d.get("error")
        return cls(_str(d.get("job_id")), _str(d.get("kind")), _str(d.get("status"), "queued"),
                   _int(d.get("attempts")), err if isinstance(err, str) else None,
                   _extra(d, {"job_id", "kind", "status", "attempts", "error"}))


@dataclass
class HistoryEntry:
    """A past (or current) value of a profile attribute with its validity interval."""

    value: Any
    confidence: float = 0.0
    valid_from: int | None = None
    valid_to: int | None = None

    @classmethod
    def from_json(cls, doc: Any) -> "HistoryEntry":
        d = _obj(doc)
        return cls(d.get("value"), _float(d.get("confidence")), _opt_int(d.get("valid_from")),
                   _opt_int(d.get("valid_to")))


@dataclass
class ProfileAttribute:
    """One attribute of a user's profile, with the values it had before.

    ``value`` is ``None`` when the attribute has no current value (e.g. right
    after a clarification was resolved to an empty one)."""

    name: str
    value: Any
    confidence: float = 0.0
    updated_at: int | None = None
    history: list[HistoryEntry] = field(default_factory=list)
    valid_from: int | None = None
    sources: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, doc: Any, name: str = "") -> "ProfileAttribute":
        d = _obj(doc)
        name = name or _str(d.get("name")) or _str(d.get("attribute"))
        if "state" in d and ("value" not in d):
            # The clarification route answers {"attribute": name, "state": {...} | null}.
            extra = _extra(d, {"name", "attribute", "state"})
            d = _obj(d.get("state"))
        else:
            extra = {}
        hist = d.get("history")
        extra.update(_extra(d, {"name", "attribute", "value", "confidence", "updated_at",
                                "history", "valid_from", "sources"}))
        return cls(name, d.get("value"), _float(d.get("confidence")),
                   _opt_int(d.get("updated_at")),
                   [HistoryEntry.from_json(h) for h in hist] if isinstance(hist, list) else [],
                   _opt_int(d.get("valid_from")), _strs(d.get("sources")), extra)


@dataclass
class Clarification:
    """An open conflict the delta-merge could not decide: ``old`` vs ``new``."""

    id: str
    attribute: str
    old: Any = None
    new: Any = None
    created_at: int | None = None
    extra: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, doc: Any) -> "Clarification":
        d = _obj(doc)
        return cls(_str(d.get("id")), _str(d.get("attribute")), d.get("old"), d.get("new"),
                   _opt_int(d.get("created_at")),
                   _extra(d, {"id", "attribute", "old", "new", "created_at"}))


@dataclass
class Profile:
    """A user's profile: attributes by name, and open clarifications."""

    user_id: str
    attributes: dict[str, ProfileAttribute] = field(default_factory=dict)
    clarifications: list[Clarification] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def get(self, name: str, default: Any = None) -> Any:
        """The current value of attribute ``name`` (or ``default``)."""
        a = self.attributes.get(name)
        return default if a is None else a.value

    @classmethod
    def from_json(cls, doc: Any) -> "Profile":
        d = _obj(doc)
        attrs = d.get("attributes")
        clar = d.get("clarifications")
        parsed: dict[str, ProfileAttribute] = {}
        if isinstance(attrs, Mapping):
            for name, a in attrs.items():
                parsed[str(name)] = ProfileAttribute.from_json(a, str(name))
        elif isinstance(attrs, list):
            for a in attrs:
                pa = ProfileAttribute.from_json(a)
                parsed[pa.name] = pa
        return cls(_str(d.get("user_id")), parsed,
                   [Clarification.from_json(c) for c in clar] if isinstance(clar, list) else [],
                   _extra(d, {"user_id", "attributes", "clarifications"}))


@dataclass
class Context:
    """What ``recall`` returns: every tier's part, and ``text`` fitted to the budget."""

    text: str
    buffer: list[Turn] = field(default_factory=list)
    memories: list[SearchResult] = field(default_factory=list)
    profile: Profile | None = None
    graph: Subgraph = field(default_factory=Subgraph)
    session_id: str = ""
    user_id: str = ""
    budget_chars: int | None = None
    text_chars: int | None = None
    extra: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, doc: Any) -> "Context":
        d = _obj(doc)
        buf = d.get("buffer")
        mems = d.get("memories")
        prof = d.get("profile")
        return cls(
            _str(d.get("text")),
            [Turn.from_json(t) for t in buf] if isinstance(buf, list) else [],
            [SearchResult.from_json(m) for m in mems] if isinstance(mems, list) else [],
            Profile.from_json(prof) if isinstance(prof, Mapping) else None,
            Subgraph.from_json(d.get("graph")),
            _str(d.get("session_id")),
            _str(d.get("user_id")),
            _opt_int(d.get("budget_chars")),
            _opt_int(d.get("text_chars")),
            _extra(d, {"text", "buffer", "memories", "profile", "graph", "session_id",
                       "user_id", "budget_chars", "text_chars"}),
        )


@dataclass
class DeletionReceipt:
    """What a right-to-be-forgotten delete removed, per tier."""

    user_id: str
    deleted: dict[str, int] = field(default_factory=dict)

    @property
    def l1(self) -> int:
        return self.deleted.get("l1", 0)

    @property
    def l2(self) -> int:
        return self.deleted.get("l2", 0)

    @property
    def l3(self) -> int:
        return self.deleted.get("l3", 0)

    @property
    def log(self) -> int:
        return self.deleted.get("log", 0)

    @property
    def total(self) -> int:
        return sum(self.deleted.values())

    @classmethod
    def from_json(cls, doc: Any) -> "DeletionReceipt":
        d = _obj(doc)
        deleted = d.get("deleted")
        counts = ({str(k): _int(v) for k, v in deleted.items()}
                  if isinstance(deleted, Mapping) else {})
        return cls(_str(d.get("user_id")), counts)


@dataclass
class ApiKey:
    """An API key of a tenant. ``key`` is only known right after creation."""

    key_id: str
    key: str | None = None
    tenant_id: str | None = None
    extra: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, doc: Any, tenant_id: str | None = None) -> "ApiKey":
        if isinstance(doc, str):
            return cls(doc, None, tenant_id)
        d = _obj(doc)
        key = d.get("key")
        tenant = d.get("tenant_id")
        return cls(_str(d.get("key_id")) or _str(d.get("id")),
                   key if isinstance(key, str) else None,
                   tenant if isinstance(tenant, str) else tenant_id,
                   _extra(d, {"key_id", "id", "key", "tenant_id"}))


def field_names(cls: type) -> list[str]:
    """The dataclass field names of ``cls`` (for docs and tests)."""
    return [f.name for f in fields(cls)]
