"""MediumTermMemory (L2) against a real stratad."""

from __future__ import annotations

import math

import pytest

from client_testlib import run, unique

import strata_client as sc
from strata_client import MediumTermMemory, MemoryStore, StrataClient


def test_is_a_memory_store() -> None:
    assert issubclass(MediumTermMemory, MemoryStore)


def test_kv(url: str) -> None:
    async def main() -> None:
        async with MediumTermMemory(unique("user"), base_url=url) as mt:
            key = unique("k")
            assert await mt.get(key) is None
            await mt.put(key, {"v": [0.1, 0.2]})
            assert await mt.get(key) == {"v": [0.1, 0.2]}
            assert await mt.delete(key)
    run(main())


def test_add_get_search_delete(url: str) -> None:
    async def main() -> None:
        async with StrataClient(url) as c:
            user = unique("user")
            mt = MediumTermMemory(user, c)
            assert mt.user_id == user
            assert await mt.search("anything") == []  # no memories: empty list
            a = await mt.add_memory("preference", "User prefers concise answers", 0.9,
                                    provenance=["turn-1", "my-id"])
            assert isinstance(a, sc.Memory)
            assert a.id and a.memory_type == "preference" and a.user_id == user
            assert math.isclose(a.importance, 0.9, abs_tol=1e-6)
            assert a.provenance == ["turn-1", "my-id"] and a.timestamp > 0
            b = await mt.add_memory("fact", "User lives in Lisbon near the river")
            assert math.isclose(b.importance, 0.5, abs_tol=1e-6)  # the server's default
            e = await mt.add_memory("experience", "User hiked the Alps last summer", 0.3)

            got = await mt.get_memory(a.id)
            assert got == a

            hits = await mt.search("Lisbon river")
            assert hits and isinstance(hits[0], sc.SearchResult)
            assert hits[0].id == b.id and hits[0].content == b.content
            assert hits[0].score >= hits[-1].score
            assert hits[0].memory.id == b.id and not hasattr(hits[0].memory, "score")

            hits = await mt.search_text("Alps hiking", limit=1, mode="keyword")
            assert [h.id for h in hits] == [e.id]
            hits = await mt.search_text("answers", limit=5, mode="hybrid",
                                        memory_types=["fact", "experience"])
            assert {h.memory_type for h in hits} <= {"fact", "experience"}
            hits = await mt.search_text("user", limit=5, min_importance=0.8)
            assert [h.id for h in hits] == [a.id]
            hits = await mt.search_text("user", limit=2, memory_types="preference")
            assert [h.id for h in hits] == [a.id]

            # Vector search: the server's embedding dimension (384 for the built-in one).
            vec = [0.0] * 384
            vec[7] = 1.0
            hits = await mt.search(vec, limit=2)
            assert len(hits) <= 2 and all(isinstance(h, sc.SearchResult) for h in hits)
            hits = await mt.search(tuple(vec), 3)
            assert len(hits) == 3

            # Another user sees none of it.
            other = MediumTermMemory(unique("user"), c)
            assert await other.search("Lisbon") == []
            with pytest.raises(sc.NotFound):
                await other.get_memory(a.id)

            await mt.delete_memory(b.id)
            with pytest.raises(sc.NotFound):
                await mt.get_memory(b.id)
            with pytest.raises(sc.NotFound):
                await mt.delete_memory(b.id)
            assert b.id not in [h.id for h in await mt.search("Lisbon river")]
    run(main())


def test_errors(url: str) -> None:
    async def main() -> None:
        async with StrataClient(url) as c:
            mt = MediumTermMemory(unique("user"), c)
            with pytest.raises(sc.Unprocessable) as ei:
                await mt.add_memory("opinion", "x")
            assert ei.value.code == "invalid_value"
            with pytest.raises(sc.Unprocessable):
                await mt.add_memory("fact", "")
            with pytest.raises(sc.Unprocessable):
                await mt.add_memory("fact", "x", importance=1.5)
            with pytest.raises(sc.BadRequest):
                await mt.add_memory("fact", "x", provenance=[""])
            with pytest.raises(sc.Unprocessable):
                await mt.search([0.1, 0.2])  # wrong dimension
            with pytest.raises(sc.Unprocessable):
                await mt.search_text("x", mode="psychic")
            with pytest.raises(sc.Unprocessable):
                await mt.search_text("x", memory_types=["opinion"])
            with pytest.raises(sc.Unprocessable):
                await mt.search_text("x", limit=0)
            with pytest.raises(sc.BadRequest):
                await MediumTermMemory("bad user!", c).search("x")
            with pytest.raises(sc.BadRequest):
                MediumTermMemory("", c)
            with pytest.raises(sc.NotFound):
                await mt.get_memory("mem-doesnotexist")
            with pytest.raises(TypeError):
                await mt.search(["a", "b"])  # type: ignore[list-item]
            with pytest.raises(ValueError):
                await mt.search([])
            assert await mt.search("x") == []  # nothing was stored by the above
    run(main())
