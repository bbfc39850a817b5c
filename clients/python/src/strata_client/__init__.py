"""strata_client: the brief's Python interfaces over Strata's HTTP API, async.

    import asyncio
    from strata_client import MemoryOrchestrator

    async def main():
        async with MemoryOrchestrator(base_url="http://127.0.0.1:7700") as mem:
            await mem.record_turn("s1", "u1", "user", "I prefer concise answers")
            ctx = await mem.recall("s1", "how should I answer?")
            print(ctx.text)

    asyncio.run(main())

Standard library only. See README.md for every class.
"""

from .client import DEFAULT_BASE_URL, StrataClient, parse_metric
from .errors import (
    BadRequest,
    Conflict,
    ConnectionError,
    Forbidden,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    ProtocolError,
    RateLimited,
    ServerError,
    ServiceUnavailable,
    StrataError,
    Timeout,
    Unauthorized,
    Unprocessable,
    UnsupportedMediaType,
)
from .models import (
    ApiKey,
    Clarification,
    Context,
    DeletionReceipt,
    Edge,
    HistoryEntry,
    Job,
    Memory,
    Node,
    Profile,
    ProfileAttribute,
    SearchResult,
    Session,
    SessionState,
    Subgraph,
    Turn,
    TurnAck,
)
from .orchestrator import MemoryOrchestrator
from .stores import LongTermMemory, MediumTermMemory, MemoryStore, ShortTermMemory

__version__ = "0.1.0"

__all__ = [
    "__version__",
    "DEFAULT_BASE_URL",
    "StrataClient",
    "parse_metric",
    # the brief's interfaces
    "MemoryStore",
    "ShortTermMemory",
    "MediumTermMemory",
    "LongTermMemory",
    "MemoryOrchestrator",
    # results
    "Turn",
    "TurnAck",
    "Session",
    "SessionState",
    "Memory",
    "SearchResult",
    "Node",
    "Edge",
    "Subgraph",
    "Job",
    "Profile",
    "ProfileAttribute",
    "HistoryEntry",
    "Clarification",
    "Context",
    "DeletionReceipt",
    "ApiKey",
    # errors
    "StrataError",
    "BadRequest",
    "Unauthorized",
    "Forbidden",
    "NotFound",
    "MethodNotAllowed",
    "Conflict",
    "PayloadTooLarge",
    "UnsupportedMediaType",
    "Unprocessable",
    "RateLimited",
    "ServerError",
    "ServiceUnavailable",
    "ConnectionError",
    "ProtocolError",
    "Timeout",
]
