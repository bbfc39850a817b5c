"""ShortTermMemory (L1) against a real stratad."""

from __future__ import annotations

import pytest

from client_testlib import run, unique

import strata_client as sc
from strata_client import MemoryStore, ShortTermMemory, StrataClient


def test_is_a_memory_store(url: str) -> None:
    assert issubclass(ShortTermMemory, MemoryStore)
    st = ShortTermMemory(base_url=url)
    assert isinstance(st, MemoryStore)
    run(st.close())
    with pytest.raises(TypeError):
        MemoryStore()  # type: ignore[abstract]


def test_kv_get_put_delete(url: str) -> None:
    async def main() -> None:
        async with ShortTermMemory(base_url=url) as st:
            key = unique("k")
            assert await st.get(key) is None
            value = {"plan": ["a", "b"], "n": 3, "ok": True, "x": None, "s": "ünï"}
            await st.put(key, value)
            assert await st.get(key) == value
            await st.put(key, [1, 2.5, "three"])  # overwrite, any JSON
            assert await st.get(key) == [1, 2.5, "three"]
            await st.put(key + ".scalar", "just a string")
            assert await st.get(key + ".scalar") == "just a string"
            # Tiers are separate namespaces.
            assert await sc.LongTermMemory(st.client).get(key) is None
            # Keys with '/', spaces and non-ASCII are percent-encoded in the path.
            odd = unique("k") + " é?#"
            await st.put(odd, 1)
            assert await st.get(odd) == 1
            assert await st.delete(key) is True
            assert await st.delete(key) is False
            assert await st.get(key) is None
            with pytest.raises(sc.BadRequest):
                await st.put("a/b", 1)  # '/' is not allowed in a key
            with pytest.raises(sc.BadRequest):
                await st.get("")
    run(main())


def test_session_lifecycle(url: str) -> None:
    async def main() -> None:
        async with ShortTermMemory(base_url=url) as st:
            sid, user = unique("sess"), unique("user")
            ack = await st.add_turn(sid, user, "user", "I prefer concise answers")
            assert isinstance(ack, sc.TurnAck)
            assert (ack.session_id, ack.turn_count) == (sid, 1)
            assert ack.consolidation in ("none", "queued")
            ack = await st.add_turn(sid, user, "assistant", "Noted.")
            assert ack.turn_count == 2
            await st.add_turn(sid, user, "system", "stage: intro")

            s = await st.get_session(sid)
            assert isinstance(s, sc.Session)
            assert (s.session_id, s.user_id, s.ended) == (sid, user, False)
            assert s.state.turn_count == 3
            assert s.state.last_active > 0
            assert [(t.role, t.content) for t in s.buffer] == [
                ("user", "I prefer concise answers"), ("assistant", "Noted."),
                ("system", "stage: intro")]
            assert [t.seq for t in s.buffer] == [1, 2, 3]

            state = await st.set_stage(sid, "checkout")
            assert isinstance(state, sc.SessionState)
            assert (state.current_stage, state.turn_count) == ("checkout", 3)
            assert (await st.get_session(sid)).state.current_stage == "checkout"

            dirty = await st.dirty(user)  # filled by the pipeline, if anything
            assert isinstance(dirty, list) and all(isinstance(x, str) for x in dirty)
            assert await st.dirty(unique("nobody")) == []

            job_id = await st.end_session(sid)
            assert job_id
            job = await sc.MemoryOrchestrator(st.client).wait_job(job_id, timeout=20)
            assert job.job_id == job_id and job.finished and job.kind
    run(main())


def test_buffer_keeps_the_last_turns(url: str) -> None:
    async def main() -> None:
        async with ShortTermMemory(base_url=url) as st:
            sid, user = unique("sess"), unique("user")
            for i in range(25):
                await st.add_turn(sid, user, "user", "turn %d" % i)
            s = await st.get_session(sid)
            assert s.state.turn_count == 25
            assert s.buffer[-1].content == "turn 24"
            assert len(s.buffer) <= 25
            contents = [t.content for t in s.buffer]
            assert contents == ["turn %d" % i for i in range(25 - len(contents), 25)]
    run(main())


def test_errors(url: str) -> None:
    async def main() -> None:
        async with StrataClient(url) as c:
            st = ShortTermMemory(c)
            sid, user = unique("sess"), unique("user")
            # Unknown session.
            with pytest.raises(sc.NotFound) as ei:
                await st.get_session(unique("nosuch"))
            assert not ei.value.no_route and ei.value.status == 404
            with pytest.raises(sc.NotFound):
                await st.set_stage(unique("nosuch"), "x")
            with pytest.raises(sc.NotFound):
                await st.end_session(unique("nosuch"))
            # Bad ids, checked by the server.
            with pytest.raises(sc.BadRequest) as ei:
                await st.add_turn("bad id!", user, "user", "x")
            assert ei.value.code == "invalid_id"
            with pytest.raises(sc.BadRequest):
                await st.add_turn(sid, "bad user!", "user", "x")
            with pytest.raises(sc.BadRequest):
                await st.get_session("x" * 129)
            with pytest.raises(sc.BadRequest):
                await st.dirty("no/slash")
            # ... and the empty id, refused before sending.
            with pytest.raises(sc.BadRequest):
                await st.get_session("")
            # Bad role / empty content.
            with pytest.raises(sc.Unprocessable) as ei:
                await st.add_turn(sid, user, "robot", "x")
            assert ei.value.code == "invalid_value"
            with pytest.raises(sc.Unprocessable):
                await st.add_turn(sid, user, "user", "")
            # The session belongs to its first user.
            await st.add_turn(sid, user, "user", "hello")
            with pytest.raises(sc.Conflict) as ei:
                await st.add_turn(sid, unique("other"), "user", "hijack")
            assert ei.value.status == 409
            # A rejected request changed nothing.
            s = await st.get_session(sid)
            assert s.state.turn_count == 1 and s.user_id == user
            # Too large a turn.
            with pytest.raises((sc.PayloadTooLarge, sc.Unprocessable)):
                await st.add_turn(sid, user, "user", "x" * (2 * 1024 * 1024))
            assert (await st.get_session(sid)).state.turn_count == 1
    run(main())
