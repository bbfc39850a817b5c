"""The client against a real stratad: concurrency, keep-alive, transport errors,
raw requests and the statuses only raw requests can provoke."""

from __future__ import annotations

import asyncio
import time
from typing import Callable

import pytest

from client_testlib import Stratad, run, unique

import strata_client as sc
from strata_client import MemoryOrchestrator, StrataClient

CONNS = "strata_http_connections_total"


def test_health_and_metrics(url: str) -> None:
    async def main() -> None:
        async with StrataClient(url) as c:
            h = await c.healthz()
            assert h["status"] == "ok"
            text = await c.metrics()
            assert "# TYPE " + CONNS in text
            assert (await c.metric(CONNS) or 0) >= 1
            assert await c.metric("strata_no_such_metric") is None
            assert sc.parse_metric('a{x="1"} 2\na{x="2"} 3\nb 1\n', "a") == 5.0
            assert sc.parse_metric('a{x="1",y="q\\"z"} 2\na{x="2"} 3\n', "a",
                                   {"y": 'q"z'}) == 2.0
    run(main())


def test_keepalive_one_connection_for_many_requests(url: str) -> None:
    async def main() -> None:
        async with MemoryOrchestrator(base_url=url) as m:
            before = await m.client.metric(CONNS)  # this opens the client's connection
            sid, user = unique("sess"), unique("user")
            for i in range(30):
                await m.record_turn(sid, user, "user", "turn %d" % i)
                await m.short.get_session(sid)
            await m.short.put(unique("k"), {"i": 1})
            after = await m.client.metric(CONNS)
            assert before is not None and after is not None
            assert after - before == 0, "61 requests should reuse the one open connection"
            assert m.client.transport.connections_opened == 1
    run(main())


def test_many_coroutines_share_one_client(url: str) -> None:
    async def main() -> None:
        async with StrataClient(url, max_connections=8, timeout=30) as c:
            m = MemoryOrchestrator(c)
            before = await c.metric(CONNS)
            sessions = [unique("sess") for _ in range(10)]
            user = unique("user")

            async def writer(i: int) -> sc.TurnAck:
                return await m.record_turn(sessions[i % 10], user, "user", "msg %d" % i)

            acks = await asyncio.gather(*(writer(i) for i in range(300)))
            assert len(acks) == 300
            # Each session got 30 turns, numbered 1..30 without gaps or repeats.
            for sid in sessions:
                counts = sorted(a.turn_count for a in acks if a.session_id == sid)
                assert counts == list(range(1, 31))
            states = await asyncio.gather(*(m.short.get_session(s) for s in sessions))
            assert all(s.state.turn_count == 30 for s in states)

            mt = m.medium(user)
            mems = await asyncio.gather(*(mt.add_memory("fact", "fact number %d" % i)
                                          for i in range(50)))
            assert len({x.id for x in mems}) == 50
            got = await asyncio.gather(*(mt.get_memory(x.id) for x in mems))
            assert [g.content for g in got] == ["fact number %d" % i for i in range(50)]
            after = await c.metric(CONNS)
            assert before is not None and after is not None
            assert after - before <= 7  # at most max_connections sockets in all
            assert c.transport.connections_opened <= 8
    run(main())


def test_server_down_is_connection_error(make_stratad: Callable[..., Stratad]) -> None:
    srv = make_stratad()

    async def main() -> None:
        async with StrataClient(srv.url, timeout=5) as c:
            await c.healthz()
            srv.stop()
            with pytest.raises(sc.ConnectionError) as ei:
                await c.healthz()  # the pooled socket is dead and nothing listens
            assert ei.value.status is None
            with pytest.raises(sc.ConnectionError):
                await sc.ShortTermMemory(c).add_turn("s", "u", "user", "x")
    run(main())


def test_server_restart_is_transparent_for_reads(make_stratad: Callable[..., Stratad]) -> None:
    srv = make_stratad()

    async def main() -> None:
        async with StrataClient(srv.url, timeout=5) as c:
            st = sc.ShortTermMemory(c)
            await st.put("k", 1)
            srv.restart()  # same port, same data directory
            assert await st.get("k") == 1  # the stale pooled socket was replaced
            await st.put("k", 2)
            assert await st.get("k") == 2
    run(main())


def test_timeout_against_a_stopped_server(make_stratad: Callable[..., Stratad]) -> None:
    srv = make_stratad()

    async def main() -> None:
        async with StrataClient(srv.url, timeout=0.5) as c:
            await c.healthz()
            srv.pause()  # SIGSTOP: connections are accepted by the kernel, nothing answers
            try:
                t0 = time.monotonic()
                with pytest.raises(sc.Timeout):
                    await c.healthz()
                assert time.monotonic() - t0 < 3
                with pytest.raises(sc.Timeout):
                    await sc.ShortTermMemory(c).get_session("s1")
            finally:
                srv.resume()
            # Once it runs again, the client works (on a new connection).
            assert (await c.healthz())["status"] == "ok"
    run(main())


def test_raw_requests_and_statuses(url: str) -> None:
    async def main() -> None:
        async with StrataClient(url) as c:
            # 405 with the methods the path accepts.
            with pytest.raises(sc.MethodNotAllowed) as ei:
                await c.call("DELETE", "/v1/sessions/s1")
            assert ei.value.allow == ["GET"]
            # 404 for a path no route matches.
            with pytest.raises(sc.NotFound) as ei:
                await c.call("GET", "/v1/nothing/here")
            assert ei.value.no_route
            # 415: a body that is not application/json.
            resp = await c.request("PUT", "/v1/kv/l1/raw", body=b"1", content_type="text/plain")
            assert resp.status == 415
            with pytest.raises(sc.UnsupportedMediaType):
                c._parse(resp, (200,))
            # 400: malformed JSON.
            resp = await c.request("PUT", "/v1/kv/l1/raw", body=b"{nope",
                                   content_type="application/json")
            assert resp.status == 400
            # 413: over max-body-bytes (1 MiB by default).
            with pytest.raises(sc.PayloadTooLarge):
                await sc.ShortTermMemory(c).put(unique("big"), "x" * (2 * 1024 * 1024))
            # 400: an unknown field.
            with pytest.raises(sc.BadRequest) as ei:
                await c.call("POST", "/v1/sessions/s1/turns",
                             {"user_id": "u", "role": "user", "content": "x", "extra": 1})
            assert ei.value.code == "unknown_field"
            # The connection still works after all of that.
            assert (await c.healthz())["status"] == "ok"
    run(main())


def test_bearer_key_is_accepted_when_auth_is_off(url: str) -> None:
    async def main() -> None:
        async with StrataClient(url, api_key="anything", headers={"X-Request-Id": "r1"}) as c:
            assert (await c.healthz())["status"] == "ok"
    run(main())
