"""Generic store: PUT/GET /v1/kv/{tier}/{key} (the brief's MemoryStore.get/put)."""

import json
import threading

import pytest

import strata_testlib as tl

TIERS = ("l1", "l2", "l3")

VALUES = [
    {"a": 1, "b": [1, 2, 3], "c": {"d": None}},
    [1, "two", 3.5, False, None, {"x": []}],
    "just a string",
    "unicode ✓ — 你好 🎉",
    42,
    -0.125,
    1e300,
    True,
    False,
    None,
    {},
    [],
    {"deep": [[[[[[[[[[{"k": "v"}]]]]]]]]]]},
    {"big": "x" * 200000},
    {"escapes": "quote \" backslash \\ newline \n tab \t ctrl \u0001"},
]
VALUE_IDS = ["object", "array", "string", "unicode", "int", "float", "bigfloat", "true",
             "false", "null", "empty-object", "empty-array", "nested", "200k", "escapes"]


@pytest.mark.parametrize("tier", TIERS)
@pytest.mark.parametrize("value", VALUES, ids=VALUE_IDS)
def test_put_get_roundtrip(client, tier, value):
    key = tl.unique_id("k")
    r = client.kv_put(tier, key, value)
    assert r.status == 200, r
    g = client.kv_get(tier, key)
    assert g.status == 200, g
    assert g.header("Content-Type", "").startswith("application/json")
    assert g.json() == value


@pytest.mark.parametrize("tier", TIERS)
def test_get_absent_404(client, tier):
    tl.assert_error(client.kv_get(tier, tl.unique_id("absent")), 404)


def test_overwrite(client):
    key = tl.unique_id("k")
    assert client.kv_put("l1", key, {"v": 1}).status == 200
    assert client.kv_put("l1", key, {"v": 2, "extra": True}).status == 200
    assert client.kv_get("l1", key).json() == {"v": 2, "extra": True}
    assert client.kv_put("l1", key, "now a string").status == 200
    assert client.kv_get("l1", key).json() == "now a string"


def test_tiers_are_separate(client):
    key = tl.unique_id("k")
    assert client.kv_put("l2", key, {"tier": 2}).status == 200
    tl.assert_error(client.kv_get("l1", key), 404)
    tl.assert_error(client.kv_get("l3", key), 404)
    assert client.kv_put("l3", key, {"tier": 3}).status == 200
    assert client.kv_get("l2", key).json() == {"tier": 2}
    assert client.kv_get("l3", key).json() == {"tier": 3}


def test_keys_are_case_sensitive(client):
    base = tl.unique_id("Key")
    assert client.kv_put("l1", base, 1).status == 200
    assert client.kv_put("l1", base.lower(), 2).status == 200
    assert client.kv_get("l1", base).json() == 1
    assert client.kv_get("l1", base.lower()).json() == 2


@pytest.mark.parametrize("key", ["a", "session:abc:state", "user:42:dirty", "x.y_z-1@t",
                                 "k" * 128, "k" * 512, "with%20space", "caf%C3%A9",
                                 "%E4%BD%A0%E5%A5%BD"],
                         ids=["a", "session-key", "dirty-key", "punct", "128", "512", "space",
                              "utf8", "cjk"])
def test_key_shapes(client, key):
    """Keys are 1..512 bytes of UTF-8 without '/' or NUL, percent-encoded in the path."""
    assert client.kv_put("l1", key, {"key": key}).status == 200
    assert client.kv_get("l1", key).json() == {"key": key}


def test_percent_encoding_names_same_key(client):
    key = tl.unique_id("pct")
    assert client.kv_put("l2", key, {"v": 1}).status == 200
    encoded = "".join("%%%02X" % ord(ch) for ch in key)
    assert client.kv_get("l2", encoded).json() == {"v": 1}


def test_whitespace_in_body_is_fine(client):
    key = tl.unique_id("k")
    r = client.request("PUT", "/v1/kv/l1/%s" % key, body=b'  \n {"a" : [ 1 , 2 ] }\n ')
    assert r.status == 200, r
    assert client.kv_get("l1", key).json() == {"a": [1, 2]}


@pytest.mark.parametrize("tier", ["l0", "l4", "L1", "x", "l1x", "memories"])
def test_bad_tier(client, tier):
    key = tl.unique_id("k")
    tl.assert_error(client.kv_put(tier, key, {"a": 1}), (400, 404))
    tl.assert_error(client.kv_get(tier, key), (400, 404))
    for good in TIERS:
        tl.assert_error(client.kv_get(good, key), 404)


@pytest.mark.parametrize("body", [
    b"", b"{", b'{"a":}', b"[1,2,", b"nul", b"{'a': 1}", b'{"a":1} trailing', b"\xff\xfe",
    b'"\xc3\x28"', b"NaN", b"Infinity", b"01",
], ids=["empty", "open-brace", "missing-value", "open-array", "bad-literal", "single-quotes",
        "trailing", "bad-utf8", "bad-utf8-string", "nan", "infinity", "leading-zero"])
def test_bad_json_rejected_and_nothing_changes(client, body):
    key = tl.unique_id("k")
    assert client.kv_put("l1", key, {"orig": True}).status == 200
    r = client.request("PUT", "/v1/kv/l1/%s" % key, body=body)
    tl.assert_error(r, 400)
    assert client.kv_get("l1", key).json() == {"orig": True}
    fresh = tl.unique_id("k")
    r = client.request("PUT", "/v1/kv/l1/%s" % fresh, body=body)
    tl.assert_error(r, 400)
    tl.assert_error(client.kv_get("l1", fresh), 404)


def test_wrong_content_type_415(client):
    key = tl.unique_id("k")
    r = client.request("PUT", "/v1/kv/l1/%s" % key, body=b'{"a":1}', content_type="text/plain")
    tl.assert_error(r, 415)
    tl.assert_error(client.kv_get("l1", key), 404)


def test_concurrent_puts_distinct_keys(server):
    errors = []
    n_threads, n_keys = 16, 25

    def worker(i):
        try:
            with server.client() as c:
                for k in range(n_keys):
                    r = c.kv_put("l2", "conc-%d-%d" % (i, k), {"i": i, "k": k})
                    if r.status != 200:
                        errors.append(r)
        except Exception as e:  # noqa: BLE001
            errors.append(repr(e))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors[:3]
    with server.client() as c:
        for i in range(n_threads):
            for k in range(n_keys):
                assert c.kv_get("l2", "conc-%d-%d" % (i, k)).json() == {"i": i, "k": k}


def test_concurrent_puts_same_key_last_writer_consistent(server):
    key = tl.unique_id("hot")
    vals = [{"writer": i, "pad": "p" * (i * 100)} for i in range(8)]

    def worker(i):
        with server.client() as c:
            for _ in range(20):
                c.kv_put("l3", key, vals[i])

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    with server.client() as c:
        got = c.kv_get("l3", key).json()
    assert got in vals, "torn value: %s" % json.dumps(got)[:200]
