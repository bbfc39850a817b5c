"""LongTermMemory (L3) against a real stratad."""

from __future__ import annotations

import time

import pytest

from client_testlib import run, unique

import strata_client as sc
from strata_client import LongTermMemory, MemoryStore, StrataClient


def test_is_a_memory_store() -> None:
    assert issubclass(LongTermMemory, MemoryStore)
    assert LongTermMemory.node_id("User", "u1") == "user:u1"
    assert LongTermMemory.node_id("Topic", "Rock  Climbing") == "topic:rock-climbing"


def test_kv(url: str) -> None:
    async def main() -> None:
        async with LongTermMemory(base_url=url) as lt:
            key = unique("k")
            await lt.put(key, {"graph": "note"})
            assert await lt.get(key) == {"graph": "note"}
            assert await lt.get(unique("k")) is None
    run(main())


def test_nodes_edges_subgraph(url: str) -> None:
    async def main() -> None:
        async with StrataClient(url) as c:
            lt = LongTermMemory(c)
            tag = unique("g")
            user = "user:" + tag
            topic = "topic:hiking-" + tag
            product = "product:boots-" + tag
            n = await lt.put_node(user, "User", {"name": "Ana"})
            assert isinstance(n, sc.Node)
            assert (n.id, n.label, n.properties, n.created) == (user, "User", {"name": "Ana"},
                                                               True)
            n = await lt.put_node(user, "User", {"tier": "gold"})
            assert n.created is False
            assert n.properties == {"name": "Ana", "tier": "gold"}  # merged
            await lt.put_node(topic, "Topic")
            await lt.put_node(product, "Product", {"price": 120})
            got = await lt.get_node(product)
            assert got.label == "Product" and got.properties == {"price": 120}

            e = await lt.put_edge(user, topic, "INTERESTED_IN", weight=0.9)
            assert isinstance(e, sc.Edge)
            assert (e.from_, e.to, e.type, e.created) == (user, topic, "INTERESTED_IN", True)
            assert e.weight == 0.9
            e = await lt.put_edge(user, topic, "INTERESTED_IN", {"weight": 0.7})
            assert e.created is False
            await lt.put_edge(topic, product, "RELATED_TO")

            g = await lt.query_subgraph(user)
            assert isinstance(g, sc.Subgraph) and not g.truncated
            assert {x.id for x in g.nodes} == {user, topic, product}
            edges = {(x.from_, x.type, x.to): x for x in g.edges}
            assert set(edges) == {(user, "INTERESTED_IN", topic),
                                  (topic, "RELATED_TO", product)}
            assert edges[(user, "INTERESTED_IN", topic)].weight == 0.7
            assert g.node(user) is not None and g.node(user).label == "User"  # type: ignore

            g = await lt.query_subgraph(user, depth=1)
            assert {x.id for x in g.nodes} == {user, topic}
            g = await lt.query_subgraph(user, 2, types=["RELATED_TO"])
            assert g.edges == [] or all(x.type == "RELATED_TO" for x in g.edges)
            g = await lt.query_subgraph(product, 2, direction="out")
            assert [x.id for x in g.nodes] == [product]
            g = await lt.query_subgraph(product, 2, direction="in")
            assert {x.id for x in g.nodes} == {user, topic, product}
            g = await lt.query_subgraph(user, 2, limit=1)
            assert len(g.nodes) == 1 and g.truncated

            before = int(time.time())
            time.sleep(1.1)
            await lt.expire_edge(user, topic, "INTERESTED_IN")
            g = await lt.query_subgraph(user)
            assert [x.id for x in g.nodes] == [user] and g.edges == []
            # The graph as it was before the expiry still has the edge.
            g = await lt.query_subgraph(user, as_of=before)
            assert (user, "INTERESTED_IN", topic) in {(x.from_, x.type, x.to) for x in g.edges}
            with pytest.raises(sc.NotFound):
                await lt.expire_edge(user, topic, "INTERESTED_IN")

            await lt.delete_node(product)
            with pytest.raises(sc.NotFound):
                await lt.get_node(product)
    run(main())


def test_errors(url: str) -> None:
    async def main() -> None:
        async with StrataClient(url) as c:
            lt = LongTermMemory(c)
            a = "topic:" + unique("a")
            await lt.put_node(a, "Topic")
            with pytest.raises(sc.Unprocessable) as ei:
                await lt.put_edge(a, "topic:" + unique("missing"), "RELATED_TO")
            assert ei.value.code == "missing_node"
            with pytest.raises(sc.BadRequest):
                await lt.put_node("bad id!", "Topic")
            with pytest.raises(sc.BadRequest):
                await lt.put_node(a, "Topic", ["not", "an", "object"])  # type: ignore[arg-type]
            with pytest.raises(sc.NotFound):
                await lt.get_node("topic:" + unique("nope"))
            with pytest.raises(sc.BadRequest):
                await lt.query_subgraph(a, depth=99)
            with pytest.raises(sc.BadRequest):
                await lt.query_subgraph(a, direction="sideways")
            with pytest.raises(sc.BadRequest):
                await lt.query_subgraph("bad id!")
            with pytest.raises(sc.NotFound):
                await lt.query_subgraph("topic:" + unique("nope"))
    run(main())
