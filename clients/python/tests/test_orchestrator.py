"""MemoryOrchestrator against a real stratad.

Every route is exercised: the pipeline routes (context, profile,
clarifications, distill), the right-to-be-forgotten delete and admin keys.
"""

from __future__ import annotations

import pytest

from client_testlib import run, unique

import strata_client as sc
from strata_client import MemoryOrchestrator, StrataClient


def test_tiers_share_one_client(url: str) -> None:
    async def main() -> None:
        async with MemoryOrchestrator(base_url=url) as m:
            assert m.short.client is m.client and m.long.client is m.client
            mt = m.medium("u1")
            assert mt.client is m.client and mt.user_id == "u1"
            await mt.close()  # does not close the shared client
            assert not m.client.closed
            await m.client.healthz()
        assert m.client.closed
        # A given client stays open when the orchestrator closes.
        async with StrataClient(url) as c:
            async with MemoryOrchestrator(c) as m2:
                await m2.client.healthz()
            assert not c.closed
        with pytest.raises(TypeError):
            MemoryOrchestrator(c, base_url=url)
    run(main())


def test_record_end_and_jobs(url: str) -> None:
    async def main() -> None:
        async with MemoryOrchestrator(base_url=url) as m:
            sid, user = unique("sess"), unique("user")
            ack = await m.record_turn(sid, user, "user", "I work as a nurse in Porto")
            assert ack.turn_count == 1
            await m.record_turn(sid, user, "assistant", "Good to know.")
            job_id = await m.end_session(sid)
            job = await m.job(job_id)
            assert isinstance(job, sc.Job) and job.job_id == job_id
            assert job.status in ("queued", "running", "done", "failed")
            job = await m.wait_job(job_id, timeout=20)
            assert job.finished and job.ok, job
            assert (await m.short.get_session(sid)).ended
            with pytest.raises(sc.NotFound):
                await m.job("job-" + "f" * 16)
            with pytest.raises(sc.BadRequest):
                await m.job("bad id!")
    run(main())


def test_consolidation_every_k_turns_reports_its_job(url: str) -> None:
    async def main() -> None:
        async with MemoryOrchestrator(base_url=url) as m:
            sid, user = unique("sess"), unique("user")
            acks = [await m.record_turn(sid, user, "user", "message %d" % i)
                    for i in range(10)]
            queued = [a for a in acks if a.consolidation_queued]
            # The server default is every 10 turns; a server started otherwise may differ.
            for a in queued:
                assert a.job_id
                assert (await m.wait_job(a.job_id, timeout=20)).finished
    run(main())


def test_recall(url: str) -> None:
    async def main() -> None:
        async with MemoryOrchestrator(base_url=url) as m:
            sid, user = unique("sess"), unique("user")
            await m.record_turn(sid, user, "user", "I love hiking in the mountains")
            await m.record_turn(sid, user, "assistant", "Mountains are great.")
            await m.medium(user).add_memory("preference", "User likes hiking", 0.8)
            ctx = await m.recall(sid, "hiking trip ideas", budget_chars=2000)
            assert isinstance(ctx, sc.Context)
            assert [t.content for t in ctx.buffer][-2:] == [
                "I love hiking in the mountains", "Mountains are great."]
            assert isinstance(ctx.text, str) and 0 < len(ctx.text) <= 2000
            assert "hiking" in ctx.text
            assert any(mem.content == "User likes hiking" for mem in ctx.memories)
            assert isinstance(ctx.graph, sc.Subgraph)
            assert ctx.profile is None or isinstance(ctx.profile, sc.Profile)
            small = await m.recall(sid, "hiking", budget_chars=50)
            assert len(small.text) <= 50
            with pytest.raises(sc.NotFound):
                await m.recall(unique("nosuch"), "x")
            with pytest.raises(sc.Unprocessable):
                await m.recall(sid, "x", budget_chars=0)
    run(main())


def test_profile_and_clarifications(url: str) -> None:
    async def main() -> None:
        async with MemoryOrchestrator(base_url=url) as m:
            sid, user = unique("sess"), unique("user")
            for text in ("My name is Dana.", "I am a senior developer at Acme.",
                         "I live in Berlin.", "I am allergic to peanuts."):
                await m.record_turn(sid, user, "user", text)
            await m.wait_job(await m.end_session(sid), timeout=20)
            p = await m.profile(user)
            assert isinstance(p, sc.Profile) and p.user_id == user
            for name, attr in p.attributes.items():
                assert isinstance(attr, sc.ProfileAttribute) and attr.name == name
                assert 0.0 <= attr.confidence <= 1.0
                assert all(isinstance(h, sc.HistoryEntry) for h in attr.history)
                assert p.get(name) == attr.value
            assert p.get("no-such-attribute", "dflt") == "dflt"

            empty = await m.profile(unique("nobody"))
            assert empty.attributes == {} and empty.clarifications == []

            # Open clarifications (if this conversation made any) can be resolved;
            # an unknown one is NotFound.
            for clar in p.clarifications:
                assert isinstance(clar, sc.Clarification) and clar.attribute
                attr = await m.resolve_clarification(user, clar.id, choose="new")
                assert isinstance(attr, sc.ProfileAttribute)
                assert attr.name == clar.attribute
                with pytest.raises(sc.Conflict):
                    await m.resolve_clarification(user, clar.id, choose="old")
            with pytest.raises(sc.NotFound) as ei:
                await m.resolve_clarification(user, "clr-" + "0" * 15 + "9", choose="old")
            if ei.value.no_route:
                raise ei.value
            with pytest.raises(ValueError):
                await m.resolve_clarification(user, "clr-1")
            with pytest.raises(ValueError):
                await m.resolve_clarification(user, "clr-1", choose="old", value="x")
    run(main())


def test_resolve_clarification_value_body(url: str) -> None:
    async def main() -> None:
        async with MemoryOrchestrator(base_url=url) as m:
            user = unique("user")
            with pytest.raises((sc.NotFound, sc.Unprocessable)) as ei:
                await m.resolve_clarification(user, "clr-" + "0" * 15 + "1", value="Lead")
            if isinstance(ei.value, sc.NotFound) and ei.value.no_route:
                raise ei.value
            with pytest.raises(sc.BadRequest):
                await m.resolve_clarification("bad id!", "clr-1", choose="new")
    run(main())


def test_distill(url: str) -> None:
    async def main() -> None:
        async with MemoryOrchestrator(base_url=url) as m:
            user = unique("user")
            await m.medium(user).add_memory("preference", "User likes hiking", 0.9)
            job_id = await m.distill(user)
            assert job_id
            job = await m.wait_job(job_id, timeout=30)
            assert job.finished and job.ok, job
            all_job = await m.distill()
            assert (await m.wait_job(all_job, timeout=30)).finished
            with pytest.raises(sc.BadRequest):
                await m.distill("bad id!")
    run(main())


def test_forget_user(url: str) -> None:
    async def main() -> None:
        async with MemoryOrchestrator(base_url=url) as m:
            sid, user = unique("sess"), unique("user")
            await m.record_turn(sid, user, "user", "My secret is 42")
            mem = await m.medium(user).add_memory("fact", "User's secret is 42", 0.9)
            node = "user:" + user
            await m.long.put_node(node, "User", {"name": "Zed"})
            receipt = await m.forget_user(user)
            assert isinstance(receipt, sc.DeletionReceipt)
            assert receipt.user_id == user
            assert receipt.l1 >= 1 and receipt.l2 >= 1
            assert set(receipt.deleted) >= {"l1", "l2", "l3", "log"}
            assert receipt.total == sum(receipt.deleted.values())
            with pytest.raises(sc.NotFound):
                await m.short.get_session(sid)
            with pytest.raises(sc.NotFound):
                await m.medium(user).get_memory(mem.id)
            assert await m.medium(user).search("secret") == []
            with pytest.raises(sc.NotFound):
                await m.long.get_node(node)
            again = await m.forget_user(user)  # nothing left: zero counts, not an error
            assert again.l1 == 0 and again.l2 == 0
    run(main())


def test_admin_keys(url: str) -> None:
    async def main() -> None:
        async with StrataClient(url) as c:
            tenant = unique("tenant")
            try:
                key = await c.create_key(tenant)
            except (sc.Unauthorized, sc.Forbidden) as e:
                pytest.skip("admin routes need the server's admin key: %s" % e)
            assert isinstance(key, sc.ApiKey) and key.key_id and key.key
            ids = [k.key_id for k in await c.list_keys(tenant)]
            assert key.key_id in ids
            # The new key works for its tenant.
            async with StrataClient(url, api_key=key.key) as tc:
                await tc.healthz()
            await c.delete_key(key.key_id)
            assert key.key_id not in [k.key_id for k in await c.list_keys(tenant)]
    run(main())


def test_clarification_roundtrip(url: str) -> None:
    """Two close contradicting statements make the delta-merge ask for clarification
    (brief §2.3, "if ambiguous: flag"); resolve one by choice, one by value."""

    async def main() -> None:
        async with MemoryOrchestrator(base_url=url) as m:
            user = unique("user")
            for text in ("I live in Berlin.", "I live in Munich.",
                         "I work at Acme.", "I work at Globex."):
                sid = unique("sess")
                await m.record_turn(sid, user, "user", text)
                await m.wait_job(await m.end_session(sid), timeout=20)
            p = await m.profile(user)
            by_attr = {c.attribute: c for c in p.clarifications}
            if not by_attr:
                pytest.skip("the server's pipeline flagged no clarification for %r"
                            % sorted(p.attributes))
            for attribute, clar in by_attr.items():
                assert clar.id and clar.old and clar.new and clar.old != clar.new
                if attribute == "location":
                    attr = await m.resolve_clarification(user, clar.id, choose="new")
                    assert (attr.name, attr.value) == ("location", clar.new)
                    assert clar.old in [h.value for h in attr.history]
                else:
                    attr = await m.resolve_clarification(user, clar.id, value="Initech")
                    assert (attr.name, attr.value) == (attribute, "Initech")
                with pytest.raises(sc.Conflict):
                    await m.resolve_clarification(user, clar.id, choose="old")
            after = await m.profile(user)
            assert after.clarifications == []
            if "location" in by_attr:
                assert after.get("location") == by_attr["location"].new
    run(main())
