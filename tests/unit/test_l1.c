/*
 * test_l1.c - unit tests of the embedded L1 backend (src/l1/l1_mem.c)
 * through its vtable: turn buffers, ownership, stages, tenancy, dirty sets,
 * idle listing, snapshot images (round trip, truncation, hostile images),
 * allocation-failure injection, and concurrent readers and writers (also
 * meant to be run under -fsanitize=thread).
 */
#include <pthread.h>
#include <stdatomic.h>

#include "l1/l1.h"
#include "test.h"

#define SNAP_MAX (64u << 20)

/* ---- helpers ------------------------------------------------------------ */

static l1_store *open_store(uint32_t buffer_max)
{
    l1_mem_options o = {.buffer_max = buffer_max};
    l1_store *s = NULL;
    if (l1_mem_open(&o, &s) != STRATA_OK) {
        return NULL;
    }
    return s;
}

static int append_n(l1_store *s, const char *tenant, const char *sid, const char *user,
                    strata_role role, const char *content, size_t len, int64_t ts,
                    uint32_t *count_out)
{
    l1_turn_in in = {tenant, sid, user, role, content, len, ts};
    l1_turn_out out = {0};
    int rc = s->ops->turn_append(s, &in, &out);
    if (count_out != NULL) {
        *count_out = out.turn_count;
    }
    return rc;
}

static int append(l1_store *s, const char *tenant, const char *sid, const char *user,
                  const char *content, int64_t ts)
{
    return append_n(s, tenant, sid, user, STRATA_ROLE_USER, content, strlen(content), ts, NULL);
}

/* Snapshot of s into b (freshly initialised). */
static int snap(l1_store *s, sbuf *b)
{
    sbuf_init(b, SNAP_MAX);
    return s->ops->snapshot_write(s, b);
}

static bool stats_zero(l1_store *s)
{
    l1_stats st;
    s->ops->stats(s, &st);
    return st.sessions == 0 && st.turns_buffered == 0 && st.dirty_users == 0;
}

/* Structural checks through the API only: every session is listed once,
 * oldest first; buffered turns have consecutive seq ending at turn_count;
 * the stats agree with what the sessions hold. */
static bool check_consistent(l1_store *s, uint32_t buffer_max)
{
    l1_stats st;
    l1_session_ref *refs = NULL;
    size_t n = 0;
    bool ok = true;
    s->ops->stats(s, &st);
    if (s->ops->session_list_idle(s, INT64_MAX, SIZE_MAX, &refs, &n) != STRATA_OK) {
        return false;
    }
    if (n != st.sessions) {
        ok = false;
    }
    uint64_t turns = 0;
    int64_t prev_active = INT64_MIN;
    for (size_t i = 0; i < n && ok; i++) {
        strata_session *ss = NULL;
        if (s->ops->session_get(s, refs[i].tenant, refs[i].session_id, &ss) != STRATA_OK) {
            ok = false;
            break;
        }
        turns += ss->n_turns;
        ok = ss->last_active >= prev_active && ss->n_turns <= buffer_max &&
             ss->n_turns <= ss->turn_count && ss->turn_count >= 1;
        prev_active = ss->last_active;
        for (size_t j = 0; j < ss->n_turns && ok; j++) {
            ok = ss->turns[j].seq == ss->turn_count - ss->n_turns + 1 + j &&
                 strlen(ss->turns[j].content) <= ss->turns[j].content_len;
        }
        strata_session_free(ss);
    }
    l1_session_refs_free(refs, n);
    return ok && turns == st.turns_buffered;
}

/* ---- basic operations ---------------------------------------------------- */

TEST(append_and_read_back)
{
    l1_store *s = open_store(20);
    ASSERT_TRUE(s != NULL);
    ASSERT_STREQ(s->ops->name, "embedded");
    uint32_t count = 0;
    ASSERT_OK(append_n(s, "t", "s1", "u1", STRATA_ROLE_USER, "hello", 5, 100, &count));
    ASSERT_EQ(count, 1);
    ASSERT_OK(append_n(s, "t", "s1", "u1", STRATA_ROLE_ASSISTANT, "hi there", 8, 101, &count));
    ASSERT_EQ(count, 2);
    /* Content is bytes with a length: an embedded NUL survives. */
    ASSERT_OK(append_n(s, "t", "s1", "u1", STRATA_ROLE_SYSTEM, "a\0b", 3, 102, &count));
    ASSERT_EQ(count, 3);
    ASSERT_OK(append_n(s, "t", "s1", "u1", STRATA_ROLE_USER, NULL, 0, 103, &count));
    ASSERT_EQ(count, 4);

    strata_session *ss = NULL;
    ASSERT_OK(s->ops->session_get(s, "t", "s1", &ss));
    ASSERT_STREQ(ss->session_id, "s1");
    ASSERT_STREQ(ss->user_id, "u1");
    ASSERT_STREQ(ss->current_stage, "");
    ASSERT_EQ(ss->turn_count, 4);
    ASSERT_EQ(ss->last_active, 103);
    ASSERT_EQ(ss->ended, 0);
    ASSERT_EQ(ss->n_turns, 4);
    ASSERT_EQ(ss->turns[0].role, STRATA_ROLE_USER);
    ASSERT_STREQ(ss->turns[0].content, "hello");
    ASSERT_EQ(ss->turns[0].content_len, 5);
    ASSERT_EQ(ss->turns[0].ts, 100);
    ASSERT_EQ(ss->turns[0].seq, 1);
    ASSERT_EQ(ss->turns[1].role, STRATA_ROLE_ASSISTANT);
    ASSERT_STREQ(ss->turns[1].content, "hi there");
    ASSERT_EQ(ss->turns[1].seq, 2);
    ASSERT_EQ(ss->turns[2].role, STRATA_ROLE_SYSTEM);
    ASSERT_EQ(ss->turns[2].content_len, 3);
    ASSERT_TRUE(memcmp(ss->turns[2].content, "a\0b", 4) == 0);
    ASSERT_STREQ(ss->turns[3].content, "");
    ASSERT_EQ(ss->turns[3].seq, 4);
    strata_session_free(ss);

    ss = (strata_session *)&count; /* must be reset to NULL on failure */
    ASSERT_EQ(s->ops->session_get(s, "t", "nope", &ss), STRATA_ENOTFOUND);
    ASSERT_TRUE(ss == NULL);

    l1_stats st;
    s->ops->stats(s, &st);
    ASSERT_EQ(st.sessions, 1);
    ASSERT_EQ(st.turns_buffered, 4);
    ASSERT_EQ(st.dirty_users, 0);
    strata_session_free(NULL);
    strata_strlist_free(NULL);
    l1_session_refs_free(NULL, 0);
    s->ops->close(s);
}

/* Compare the buffer with the sliding window of the last min(i, N) turns. */
static bool window_ok(l1_store *s, const char *sid, uint32_t total, uint32_t n)
{
    strata_session *ss = NULL;
    if (s->ops->session_get(s, "t", sid, &ss) != STRATA_OK) {
        return false;
    }
    uint32_t keep = total < n ? total : n;
    bool ok = ss->turn_count == total && ss->n_turns == keep;
    for (uint32_t j = 0; j < keep && ok; j++) {
        uint32_t seq = total - keep + 1 + j;
        char want[32];
        snprintf(want, sizeof(want), "m%u", seq);
        ok = ss->turns[j].seq == seq && strcmp(ss->turns[j].content, want) == 0 &&
             ss->turns[j].ts == (int64_t)seq;
    }
    strata_session_free(ss);
    return ok;
}

TEST(buffer_trimmed_to_n)
{
    /* N = 3 (below the first ring size), 10 (grows 4 -> 8 -> 10), 1 and 0. */
    static const uint32_t sizes[] = {3, 10, 1, 0};
    for (size_t k = 0; k < STRATA_ARRAY_LEN(sizes); k++) {
        uint32_t n = sizes[k];
        l1_store *s = open_store(n);
        ASSERT_TRUE(s != NULL);
        for (uint32_t i = 1; i <= 3 * n + 7; i++) {
            char msg[32];
            snprintf(msg, sizeof(msg), "m%u", i);
            uint32_t count = 0;
            ASSERT_OK(append_n(s, "t", "s", "u", STRATA_ROLE_USER, msg, strlen(msg), i, &count));
            ASSERT_EQ(count, i);
            ASSERT_TRUE(window_ok(s, "s", i, n));
            l1_stats st;
            s->ops->stats(s, &st);
            ASSERT_EQ(st.turns_buffered, i < n ? i : n);
        }
        ASSERT_TRUE(check_consistent(s, n));
        s->ops->close(s);
    }
}

TEST(owner_conflict)
{
    l1_store *s = open_store(5);
    ASSERT_TRUE(s != NULL);
    ASSERT_OK(s->ops->turn_check(s, "t", "s1", "u1", NULL)); /* unknown session: fine */
    ASSERT_OK(append(s, "t", "s1", "u1", "first", 10));
    ASSERT_OK(s->ops->turn_check(s, "t", "s1", "u1", NULL));
    ASSERT_EQ(s->ops->turn_check(s, "t", "s1", "u2", NULL), STRATA_ECONFLICT);
    {
        uint32_t count = 99;
        ASSERT_OK(s->ops->turn_check(s, "t", "s1", "u1", &count));
        ASSERT_TRUE(count >= 1);
        ASSERT_OK(s->ops->turn_check(s, "t", "never", "u1", &count));
        ASSERT_EQ(count, 0);
    }
    uint32_t count = 99;
    ASSERT_EQ(append_n(s, "t", "s1", "u2", STRATA_ROLE_USER, "x", 1, 20, &count),
              STRATA_ECONFLICT);
    ASSERT_EQ(count, 0);
    strata_session *ss = NULL;
    ASSERT_OK(s->ops->session_get(s, "t", "s1", &ss));
    ASSERT_EQ(ss->turn_count, 1);
    ASSERT_EQ(ss->n_turns, 1);
    ASSERT_EQ(ss->last_active, 10); /* no change at all */
    ASSERT_STREQ(ss->user_id, "u1");
    strata_session_free(ss);
    /* The same user in another session, and another user in a new one, are fine. */
    ASSERT_OK(append(s, "t", "s2", "u2", "mine", 30));
    ASSERT_OK(append(s, "t", "s1", "u1", "second", 40));
    ASSERT_TRUE(check_consistent(s, 5));
    s->ops->close(s);
}

TEST(stage_end_delete)
{
    l1_store *s = open_store(5);
    ASSERT_TRUE(s != NULL);
    ASSERT_EQ(s->ops->session_set_stage(s, "t", "s1", "x", 1), STRATA_ENOTFOUND);
    ASSERT_EQ(s->ops->session_end(s, "t", "s1", 1), STRATA_ENOTFOUND);
    ASSERT_EQ(s->ops->session_delete(s, "t", "s1"), STRATA_ENOTFOUND);
    ASSERT_OK(append(s, "t", "s1", "u1", "hello", 100));
    ASSERT_OK(s->ops->session_set_stage(s, "t", "s1", "checkout", 110));
    strata_session *ss = NULL;
    ASSERT_OK(s->ops->session_get(s, "t", "s1", &ss));
    ASSERT_STREQ(ss->current_stage, "checkout");
    ASSERT_EQ(ss->last_active, 110);
    ASSERT_EQ(ss->turn_count, 1);
    strata_session_free(ss);
    ASSERT_OK(s->ops->session_set_stage(s, "t", "s1", "", 111));

    ASSERT_OK(s->ops->session_end(s, "t", "s1", 120));
    ASSERT_OK(s->ops->session_get(s, "t", "s1", &ss));
    ASSERT_EQ(ss->ended, 1);
    ASSERT_EQ(ss->last_active, 120);
    ASSERT_STREQ(ss->current_stage, "");
    strata_session_free(ss);

    /* A new turn resumes the session. */
    ASSERT_OK(append(s, "t", "s1", "u1", "again", 130));
    ASSERT_OK(s->ops->session_get(s, "t", "s1", &ss));
    ASSERT_EQ(ss->ended, 0);
    ASSERT_EQ(ss->turn_count, 2);
    strata_session_free(ss);

    ASSERT_OK(append(s, "t", "s2", "u1", "other", 140));
    ASSERT_OK(s->ops->session_delete(s, "t", "s1"));
    ASSERT_EQ(s->ops->session_get(s, "t", "s1", &ss), STRATA_ENOTFOUND);
    ASSERT_EQ(s->ops->session_delete(s, "t", "s1"), STRATA_ENOTFOUND);
    l1_stats st;
    s->ops->stats(s, &st);
    ASSERT_EQ(st.sessions, 1);
    ASSERT_EQ(st.turns_buffered, 1);
    /* A deleted session starts over, and may change owner. */
    uint32_t count = 0;
    ASSERT_OK(append_n(s, "t", "s1", "u9", STRATA_ROLE_USER, "new", 3, 150, &count));
    ASSERT_EQ(count, 1);
    ASSERT_TRUE(check_consistent(s, 5));
    s->ops->close(s);
}

TEST(tenant_isolation)
{
    l1_store *s = open_store(5);
    ASSERT_TRUE(s != NULL);
    ASSERT_OK(append(s, "acme", "s1", "alice", "acme turn", 100));
    ASSERT_OK(append(s, "globex", "s1", "bob", "globex turn", 101));
    ASSERT_OK(append(s, "globex", "s1", "bob", "globex again", 102));
    /* The tenant/id boundary is not just concatenation. */
    ASSERT_OK(append(s, "acmes", "1", "carol", "x", 103));
    strata_session *ss = NULL;
    ASSERT_OK(s->ops->session_get(s, "acme", "s1", &ss));
    ASSERT_STREQ(ss->user_id, "alice");
    ASSERT_EQ(ss->turn_count, 1);
    ASSERT_STREQ(ss->turns[0].content, "acme turn");
    strata_session_free(ss);
    ASSERT_OK(s->ops->session_get(s, "globex", "s1", &ss));
    ASSERT_STREQ(ss->user_id, "bob");
    ASSERT_EQ(ss->turn_count, 2);
    strata_session_free(ss);
    ASSERT_EQ(s->ops->session_get(s, "initech", "s1", &ss), STRATA_ENOTFOUND);

    ASSERT_OK(s->ops->session_set_stage(s, "acme", "s1", "browsing", 110));
    ASSERT_OK(s->ops->session_get(s, "globex", "s1", &ss));
    ASSERT_STREQ(ss->current_stage, "");
    strata_session_free(ss);
    ASSERT_OK(s->ops->session_delete(s, "acme", "s1"));
    ASSERT_OK(s->ops->session_get(s, "globex", "s1", &ss));
    strata_session_free(ss);

    ASSERT_OK(s->ops->dirty_add(s, "acme", "u1", "diet"));
    ASSERT_OK(s->ops->dirty_add(s, "globex", "u1", "budget"));
    strata_strlist *l = NULL;
    ASSERT_OK(s->ops->dirty_get(s, "acme", "u1", &l));
    ASSERT_EQ(l->n, 1);
    ASSERT_STREQ(l->items[0], "diet");
    strata_strlist_free(l);
    ASSERT_OK(s->ops->dirty_clear(s, "globex", "u1"));
    ASSERT_OK(s->ops->dirty_get(s, "acme", "u1", &l));
    ASSERT_EQ(l->n, 1);
    strata_strlist_free(l);
    s->ops->close(s);
}

TEST(dirty_sets)
{
    l1_store *s = open_store(5);
    ASSERT_TRUE(s != NULL);
    strata_strlist *l = NULL;
    ASSERT_OK(s->ops->dirty_get(s, "t", "nobody", &l));
    ASSERT_EQ(l->n, 0);
    strata_strlist_free(l);
    ASSERT_OK(s->ops->dirty_add(s, "t", "u1", "c"));
    ASSERT_OK(s->ops->dirty_add(s, "t", "u1", "a"));
    ASSERT_OK(s->ops->dirty_add(s, "t", "u1", "b"));
    ASSERT_OK(s->ops->dirty_add(s, "t", "u1", "a"));
    ASSERT_OK(s->ops->dirty_add(s, "t", "u1", "c"));
    ASSERT_OK(s->ops->dirty_get(s, "t", "u1", &l));
    ASSERT_EQ(l->n, 3);
    ASSERT_STREQ(l->items[0], "a");
    ASSERT_STREQ(l->items[1], "b");
    ASSERT_STREQ(l->items[2], "c");
    strata_strlist_free(l);
    l1_stats st;
    s->ops->stats(s, &st);
    ASSERT_EQ(st.dirty_users, 1);

    /* Many members in scrambled order (37 is coprime with 200): sorted, unique. */
    for (int round = 0; round < 2; round++) {
        for (int i = 0; i < 200; i++) {
            char attr[16];
            snprintf(attr, sizeof(attr), "k%03d", (i * 37) % 200);
            ASSERT_OK(s->ops->dirty_add(s, "t", "u2", attr));
        }
    }
    ASSERT_OK(s->ops->dirty_get(s, "t", "u2", &l));
    ASSERT_EQ(l->n, 200);
    for (size_t i = 1; i < l->n; i++) {
        ASSERT_TRUE(strcmp(l->items[i - 1], l->items[i]) < 0);
    }
    strata_strlist_free(l);
    s->ops->stats(s, &st);
    ASSERT_EQ(st.dirty_users, 2);

    ASSERT_OK(s->ops->dirty_clear(s, "t", "u1"));
    ASSERT_OK(s->ops->dirty_clear(s, "t", "u1"));
    ASSERT_OK(s->ops->dirty_clear(s, "t", "never"));
    ASSERT_OK(s->ops->dirty_get(s, "t", "u1", &l));
    ASSERT_EQ(l->n, 0);
    strata_strlist_free(l);
    s->ops->stats(s, &st);
    ASSERT_EQ(st.dirty_users, 1);
    ASSERT_OK(s->ops->dirty_add(s, "t", "u1", "z"));
    s->ops->stats(s, &st);
    ASSERT_EQ(st.dirty_users, 2);
    s->ops->close(s);
}

/* The idle listing as one "a,b,c" string, for compact assertions. */
static int idle_str(l1_store *s, int64_t before, size_t max, char *out, size_t cap)
{
    l1_session_ref *refs = NULL;
    size_t n = 0;
    int rc = s->ops->session_list_idle(s, before, max, &refs, &n);
    out[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        size_t len = strlen(out);
        snprintf(out + len, cap - len, "%s%s/%s", i ? "," : "", refs[i].tenant,
                 refs[i].session_id);
    }
    l1_session_refs_free(refs, n);
    return rc;
}

TEST(idle_listing)
{
    l1_store *s = open_store(5);
    ASSERT_TRUE(s != NULL);
    char got[512];
    ASSERT_OK(idle_str(s, INT64_MAX, 10, got, sizeof(got)));
    ASSERT_STREQ(got, "");
    ASSERT_OK(append(s, "t", "a", "u", "x", 100));
    ASSERT_OK(append(s, "t", "b", "u", "x", 200));
    ASSERT_OK(append(s, "t2", "c", "u", "x", 300));
    ASSERT_OK(idle_str(s, 250, 10, got, sizeof(got)));
    ASSERT_STREQ(got, "t/a,t/b");
    ASSERT_OK(idle_str(s, 200, 10, got, sizeof(got))); /* strictly before */
    ASSERT_STREQ(got, "t/a");
    ASSERT_OK(idle_str(s, INT64_MAX, 2, got, sizeof(got)));
    ASSERT_STREQ(got, "t/a,t/b");
    ASSERT_OK(idle_str(s, INT64_MAX, 0, got, sizeof(got)));
    ASSERT_STREQ(got, "");
    ASSERT_OK(idle_str(s, 50, 10, got, sizeof(got)));
    ASSERT_STREQ(got, "");

    /* Touching moves a session: a turn, a stage change, an end. */
    ASSERT_OK(append(s, "t", "a", "u", "x", 400));
    ASSERT_OK(idle_str(s, INT64_MAX, 10, got, sizeof(got)));
    ASSERT_STREQ(got, "t/b,t2/c,t/a");
    ASSERT_OK(s->ops->session_set_stage(s, "t", "b", "s", 500));
    ASSERT_OK(s->ops->session_end(s, "t2", "c", 600));
    ASSERT_OK(idle_str(s, INT64_MAX, 10, got, sizeof(got)));
    ASSERT_STREQ(got, "t/a,t/b,t2/c");

    /* A timestamp that goes backwards still lands in order. */
    ASSERT_OK(append(s, "t", "d", "u", "x", 450));
    ASSERT_OK(append(s, "t", "b", "u", "x", 50));
    ASSERT_OK(idle_str(s, INT64_MAX, 10, got, sizeof(got)));
    ASSERT_STREQ(got, "t/b,t/a,t/d,t2/c");
    ASSERT_OK(idle_str(s, 451, 10, got, sizeof(got)));
    ASSERT_STREQ(got, "t/b,t/a,t/d");

    ASSERT_OK(s->ops->session_delete(s, "t", "a"));
    ASSERT_OK(idle_str(s, INT64_MAX, 10, got, sizeof(got)));
    ASSERT_STREQ(got, "t/b,t/d,t2/c");
    ASSERT_TRUE(check_consistent(s, 5));
    s->ops->close(s);
}

/* ---- snapshots ------------------------------------------------------------ */

/* A store with a bit of everything: trimmed and short buffers, stages, an
 * ended session, equal timestamps, several tenants, dirty sets, odd content. */
static l1_store *populated_store(uint32_t buffer_max)
{
    l1_store *s = open_store(buffer_max);
    if (s == NULL) {
        return NULL;
    }
    int rc = 0;
    for (int i = 0; i < 9; i++) {
        char msg[32];
        snprintf(msg, sizeof(msg), "turn %d \xc3\xa9", i);
        rc |= append_n(s, "acme", "long", "alice", (strata_role)(i % 3), msg, strlen(msg),
                       1000 + i, NULL);
    }
    rc |= append(s, "acme", "short", "bob", "only one", 1005);
    rc |= append_n(s, "acme", "nul", "bob", STRATA_ROLE_SYSTEM, "x\0y", 3, 1005, NULL);
    rc |= append(s, "globex", "long", "carol", "", 900);
    rc |= s->ops->session_set_stage(s, "acme", "short", "checkout", 1010);
    rc |= s->ops->session_end(s, "globex", "long", 1020);
    rc |= s->ops->dirty_add(s, "acme", "alice", "diet");
    rc |= s->ops->dirty_add(s, "acme", "alice", "budget");
    rc |= s->ops->dirty_add(s, "acme", "bob", "city");
    rc |= s->ops->dirty_add(s, "globex", "alice", "\xe2\x82\xac");
    rc |= s->ops->dirty_add(s, "acme", "al", "z");
    if (rc != 0) {
        s->ops->close(s);
        return NULL;
    }
    return s;
}

TEST(snapshot_round_trip)
{
    l1_store *a = populated_store(4);
    ASSERT_TRUE(a != NULL);
    sbuf w1;
    sbuf w2;
    ASSERT_OK(snap(a, &w1));
    l1_store *b = open_store(4);
    ASSERT_TRUE(b != NULL);
    ASSERT_OK(b->ops->snapshot_load(b, w1.data, w1.len));
    ASSERT_OK(snap(b, &w2));
    ASSERT_EQ(w1.len, w2.len);
    ASSERT_TRUE(memcmp(w1.data, w2.data, w1.len) == 0);

    l1_stats sa;
    l1_stats sb;
    a->ops->stats(a, &sa);
    b->ops->stats(b, &sb);
    ASSERT_EQ(sa.sessions, sb.sessions);
    ASSERT_EQ(sa.turns_buffered, sb.turns_buffered);
    ASSERT_EQ(sa.dirty_users, sb.dirty_users);
    ASSERT_EQ(sb.sessions, 4);
    ASSERT_EQ(sb.turns_buffered, 4 + 1 + 1 + 1);
    ASSERT_EQ(sb.dirty_users, 4);

    strata_session *ss = NULL;
    ASSERT_OK(b->ops->session_get(b, "acme", "long", &ss));
    ASSERT_EQ(ss->turn_count, 9);
    ASSERT_EQ(ss->n_turns, 4);
    ASSERT_EQ(ss->turns[0].seq, 6);
    ASSERT_STREQ(ss->turns[0].content, "turn 5 \xc3\xa9");
    ASSERT_EQ(ss->turns[0].role, STRATA_ROLE_SYSTEM);
    ASSERT_EQ(ss->turns[3].ts, 1008);
    strata_session_free(ss);
    ASSERT_OK(b->ops->session_get(b, "acme", "nul", &ss));
    ASSERT_EQ(ss->turns[0].content_len, 3);
    ASSERT_TRUE(memcmp(ss->turns[0].content, "x\0y", 4) == 0);
    strata_session_free(ss);
    ASSERT_OK(b->ops->session_get(b, "globex", "long", &ss));
    ASSERT_EQ(ss->ended, 1);
    strata_session_free(ss);
    strata_strlist *l = NULL;
    ASSERT_OK(b->ops->dirty_get(b, "acme", "alice", &l));
    ASSERT_EQ(l->n, 2);
    ASSERT_STREQ(l->items[0], "budget");
    ASSERT_STREQ(l->items[1], "diet");
    strata_strlist_free(l);
    ASSERT_TRUE(check_consistent(b, 4));

    /* The loaded store keeps working: append after load continues the numbering. */
    uint32_t count = 0;
    ASSERT_OK(append_n(b, "acme", "long", "alice", STRATA_ROLE_USER, "more", 4, 2000, &count));
    ASSERT_EQ(count, 10);
    ASSERT_EQ(append_n(b, "acme", "long", "bob", STRATA_ROLE_USER, "x", 1, 2001, NULL),
              STRATA_ECONFLICT);

    /* Loading replaces: the old contents go. */
    sbuf empty;
    l1_store *e = open_store(4);
    ASSERT_TRUE(e != NULL);
    ASSERT_OK(snap(e, &empty));
    ASSERT_EQ(empty.len, 4 + 8 + 8);
    ASSERT_OK(b->ops->snapshot_load(b, empty.data, empty.len));
    ASSERT_TRUE(stats_zero(b));

    /* A store with a smaller N keeps each session's newest turns. */
    l1_store *c = open_store(2);
    ASSERT_TRUE(c != NULL);
    ASSERT_OK(c->ops->snapshot_load(c, w1.data, w1.len));
    ASSERT_OK(c->ops->session_get(c, "acme", "long", &ss));
    ASSERT_EQ(ss->turn_count, 9);
    ASSERT_EQ(ss->n_turns, 2);
    ASSERT_EQ(ss->turns[0].seq, 8);
    ASSERT_STREQ(ss->turns[1].content, "turn 8 \xc3\xa9");
    strata_session_free(ss);
    ASSERT_TRUE(check_consistent(c, 2));
    ASSERT_OK(append(c, "acme", "long", "alice", "after", 3000));

    sbuf_free(&empty);
    sbuf_free(&w1);
    sbuf_free(&w2);
    a->ops->close(a);
    b->ops->close(b);
    c->ops->close(c);
    e->ops->close(e);
}

TEST(snapshot_truncated_and_flipped)
{
    l1_store *a = populated_store(4);
    ASSERT_TRUE(a != NULL);
    sbuf w;
    ASSERT_OK(snap(a, &w));
    l1_store *b = populated_store(4); /* non-empty: a failed load must empty it */
    ASSERT_TRUE(b != NULL);
    for (size_t len = 0; len < w.len; len++) {
        /* A copy of exactly len bytes, so ASan catches any read past it. */
        char *cut = malloc(len ? len : 1);
        ASSERT_TRUE(cut != NULL);
        memcpy(cut, w.data, len);
        int rc = b->ops->snapshot_load(b, cut, len);
        free(cut);
        ASSERT_EQ(rc, STRATA_ECORRUPT);
        ASSERT_TRUE(stats_zero(b));
    }
    ASSERT_OK(b->ops->snapshot_load(b, w.data, w.len));
    /* One trailing byte is corrupt too. */
    ASSERT_OK(sbuf_putc(&w, 0));
    ASSERT_EQ(b->ops->snapshot_load(b, w.data, w.len), STRATA_ECORRUPT);
    ASSERT_TRUE(stats_zero(b));
    w.len--;

    /* Every byte changed: either rejected or a valid image that round-trips. */
    static const uint8_t masks[] = {0x01, 0x80, 0xff};
    for (size_t i = 0; i < w.len; i++) {
        for (size_t k = 0; k < STRATA_ARRAY_LEN(masks); k++) {
            w.data[i] = (char)(w.data[i] ^ masks[k]);
            int rc = b->ops->snapshot_load(b, w.data, w.len);
            if (rc == STRATA_OK) {
                sbuf w1;
                sbuf w2;
                l1_store *c = open_store(4);
                ASSERT_TRUE(c != NULL);
                ASSERT_OK(snap(b, &w1));
                ASSERT_OK(c->ops->snapshot_load(c, w1.data, w1.len));
                ASSERT_OK(snap(c, &w2));
                ASSERT_TRUE(w1.len == w2.len && memcmp(w1.data, w2.data, w1.len) == 0);
                ASSERT_TRUE(check_consistent(c, 4));
                sbuf_free(&w1);
                sbuf_free(&w2);
                c->ops->close(c);
            } else {
                ASSERT_EQ(rc, STRATA_ECORRUPT);
                ASSERT_TRUE(stats_zero(b));
            }
            w.data[i] = (char)(w.data[i] ^ masks[k]);
        }
    }
    sbuf_free(&w);
    a->ops->close(a);
    b->ops->close(b);
}

/* Hand-built images, one defect each. */
static void img_header(sbuf *b, uint32_t version, uint64_t n_sessions, uint64_t n_dirty)
{
    sbuf_init(b, SNAP_MAX);
    wire_put_u32(b, version);
    wire_put_u64(b, n_sessions);
    wire_put_u64(b, n_dirty);
}

static void img_session(sbuf *b, const char *tenant, const char *sid, uint32_t turn_count,
                        int64_t last_active, uint8_t ended, uint32_t n_turns)
{
    wire_put_str(b, tenant);
    wire_put_str(b, sid);
    wire_put_str(b, "user");
    wire_put_str(b, "stage");
    wire_put_u32(b, turn_count);
    wire_put_i64(b, last_active);
    wire_put_u8(b, ended);
    wire_put_u32(b, n_turns);
}

static void img_turn(sbuf *b, uint8_t role, const char *content, size_t len)
{
    wire_put_u8(b, role);
    wire_put_i64(b, 5);
    wire_put_bytes(b, content, len);
}

/* Load the image into a populated store; return the code (store must end empty on error). */
static int img_load(sbuf *img, bool *empty_on_error)
{
    l1_store *s = populated_store(4);
    if (s == NULL) {
        sbuf_free(img);
        return -1000;
    }
    int rc = s->ops->snapshot_load(s, img->data, img->len);
    *empty_on_error = rc == STRATA_OK || stats_zero(s);
    s->ops->close(s);
    sbuf_free(img);
    return rc;
}

TEST(snapshot_hostile_images)
{
    sbuf b;
    bool empty = false;
    /* Sanity: the builder makes valid images. */
    img_header(&b, 1, 2, 1);
    img_session(&b, "t", "a", 3, 10, 0, 2);
    img_turn(&b, 0, "x", 1);
    img_turn(&b, 2, "y\0z", 3);
    img_session(&b, "t", "b", 1, 10, 1, 0); /* equal last_active is fine */
    wire_put_str(&b, "t");
    wire_put_str(&b, "u");
    wire_put_u32(&b, 2);
    wire_put_str(&b, "a");
    wire_put_str(&b, "b");
    ASSERT_OK(img_load(&b, &empty));

    img_header(&b, 2, 0, 0);
    ASSERT_EQ(img_load(&b, &empty), STRATA_ECORRUPT); /* unknown version */
    ASSERT_TRUE(empty);
    img_header(&b, 1, UINT64_MAX, 0);
    img_session(&b, "t", "a", 1, 10, 0, 0);
    ASSERT_EQ(img_load(&b, &empty), STRATA_ECORRUPT); /* session count past the end */
    ASSERT_TRUE(empty);
    img_header(&b, 1, 0, UINT64_MAX / 2);
    ASSERT_EQ(img_load(&b, &empty), STRATA_ECORRUPT); /* dirty count past the end */
    ASSERT_TRUE(empty);
    img_header(&b, 1, 1, 0);
    img_session(&b, "t", "a", 1, 10, 0, 1);
    img_turn(&b, 3, "x", 1);
    ASSERT_EQ(img_load(&b, &empty), STRATA_ECORRUPT); /* bad role */
    ASSERT_TRUE(empty);
    img_header(&b, 1, 1, 0);
    img_session(&b, "t", "a", 1, 10, 2, 0);
    ASSERT_EQ(img_load(&b, &empty), STRATA_ECORRUPT); /* ended not 0/1 */
    img_header(&b, 1, 1, 0);
    img_session(&b, "t", "a", 0, 10, 0, 0);
    ASSERT_EQ(img_load(&b, &empty), STRATA_ECORRUPT); /* turn_count 0 */
    img_header(&b, 1, 1, 0);
    img_session(&b, "t", "a", 1, 10, 0, 2);
    img_turn(&b, 0, "x", 1);
    img_turn(&b, 0, "x", 1);
    ASSERT_EQ(img_load(&b, &empty), STRATA_ECORRUPT); /* more turns than turn_count */
    img_header(&b, 1, 1, 0);
    img_session(&b, "t", "a", UINT32_MAX, 10, 0, 1000000000u);
    img_turn(&b, 0, "x", 1);
    ASSERT_EQ(img_load(&b, &empty), STRATA_ECORRUPT); /* turn count past the end */
    ASSERT_TRUE(empty);
    img_header(&b, 1, 2, 0);
    img_session(&b, "t", "a", 1, 10, 0, 0);
    img_session(&b, "t", "b", 1, 9, 0, 0);
    ASSERT_EQ(img_load(&b, &empty), STRATA_ECORRUPT); /* not in last_active order */
    ASSERT_TRUE(empty);
    img_header(&b, 1, 2, 0);
    img_session(&b, "t", "a", 1, 10, 0, 0);
    img_session(&b, "t", "a", 1, 10, 0, 0);
    ASSERT_EQ(img_load(&b, &empty), STRATA_ECORRUPT); /* duplicate session */
    ASSERT_TRUE(empty);
    img_header(&b, 1, 1, 0);
    wire_put_str(&b, "t");
    wire_put_bytes(&b, "a\0b", 3);
    wire_put_str(&b, "u");
    wire_put_str(&b, "");
    wire_put_u32(&b, 1);
    wire_put_i64(&b, 1);
    wire_put_u8(&b, 0);
    wire_put_u32(&b, 0);
    ASSERT_EQ(img_load(&b, &empty), STRATA_ECORRUPT); /* NUL inside an id */
    img_header(&b, 1, 1, 0);
    img_session(&b, "t", "a", 1, 10, 0, 1);
    img_turn(&b, 0, "\xff", 1);
    ASSERT_EQ(img_load(&b, &empty), STRATA_ECORRUPT); /* content not UTF-8 */
    img_header(&b, 1, 1, 0);
    img_session(&b, "t", "\xc0\x80", 1, 10, 0, 0);
    ASSERT_EQ(img_load(&b, &empty), STRATA_ECORRUPT); /* overlong UTF-8 in an id */
    img_header(&b, 1, 1, 0);
    img_session(&b, "t", "a", 1, 10, 0, 0);
    wire_put_u8(&b, 0);
    ASSERT_EQ(img_load(&b, &empty), STRATA_ECORRUPT); /* trailing byte */
    img_header(&b, 1, 0, 1);
    wire_put_str(&b, "t");
    wire_put_str(&b, "u");
    wire_put_u32(&b, 0);
    wire_put_str(&b, "pad");
    ASSERT_EQ(img_load(&b, &empty), STRATA_ECORRUPT); /* empty dirty set */
    img_header(&b, 1, 0, 1);
    wire_put_str(&b, "t");
    wire_put_str(&b, "u");
    wire_put_u32(&b, 2);
    wire_put_str(&b, "b");
    wire_put_str(&b, "a");
    ASSERT_EQ(img_load(&b, &empty), STRATA_ECORRUPT); /* attributes unsorted */
    ASSERT_TRUE(empty);
    img_header(&b, 1, 0, 1);
    wire_put_str(&b, "t");
    wire_put_str(&b, "u");
    wire_put_u32(&b, 2);
    wire_put_str(&b, "a");
    wire_put_str(&b, "a");
    ASSERT_EQ(img_load(&b, &empty), STRATA_ECORRUPT); /* duplicate attribute */
    img_header(&b, 1, 0, 1);
    wire_put_str(&b, "t");
    wire_put_str(&b, "u");
    wire_put_u32(&b, 4000000000u);
    wire_put_str(&b, "a");
    ASSERT_EQ(img_load(&b, &empty), STRATA_ECORRUPT); /* attribute count past the end */
    for (int dup = 0; dup < 2; dup++) {
        img_header(&b, 1, 0, 2);
        wire_put_str(&b, "t");
        wire_put_str(&b, "u2");
        wire_put_u32(&b, 1);
        wire_put_str(&b, "a");
        wire_put_str(&b, "t");
        wire_put_str(&b, dup ? "u2" : "u1");
        wire_put_u32(&b, 1);
        wire_put_str(&b, "a");
        ASSERT_EQ(img_load(&b, &empty), STRATA_ECORRUPT); /* users unsorted / duplicate */
        ASSERT_TRUE(empty);
    }
}

/* ---- fault injection ------------------------------------------------------ */

#define LONG_TENANT                                                                     \
    "tenant-with-a-name-long-enough-that-its-keys-cannot-live-on-the-stack-"            \
    "0123456789012345678901234567890123456789012345678901234567890123456789012345678" \
    "0123456789012345678901234567890123456789012345678901234567890123456789012345678" \
    "0123456789012345678901234567890123456789012345678901234567890123456789012345678"

static int op_get(l1_store *s, const char *tenant, const char *sid)
{
    strata_session *ss = NULL;
    int rc = s->ops->session_get(s, tenant, sid, &ss);
    strata_session_free(ss);
    return rc;
}

static int op_dirty_get(l1_store *s, const char *tenant, const char *user)
{
    strata_strlist *l = NULL;
    int rc = s->ops->dirty_get(s, tenant, user, &l);
    strata_strlist_free(l);
    return rc;
}

static int op_idle(l1_store *s)
{
    l1_session_ref *refs = NULL;
    size_t n = 0;
    int rc = s->ops->session_list_idle(s, INT64_MAX, 100, &refs, &n);
    l1_session_refs_free(refs, n);
    return rc;
}

/* Snapshot s and load the image into copy; copy must then equal s, or be
 * empty if the load failed. Returns the first failure; -1000 on a mismatch. */
static int op_snap_copy(l1_store *s, l1_store *copy)
{
    sbuf w1;
    sbuf w2;
    sbuf_init(&w2, SNAP_MAX);
    int rc = snap(s, &w1);
    if (rc == STRATA_OK) {
        rc = copy->ops->snapshot_load(copy, w1.data, w1.len);
        if (rc != STRATA_OK && !stats_zero(copy)) {
            rc = -1000;
        }
    }
    if (rc == STRATA_OK) {
        rc = copy->ops->snapshot_write(copy, &w2);
        if (rc == STRATA_OK && (w1.len != w2.len || memcmp(w1.data, w2.data, w1.len) != 0)) {
            rc = -1000;
        }
    }
    sbuf_free(&w1);
    sbuf_free(&w2);
    return rc;
}

/* The sequence of operations under test. With expect == NULL every
 * operation runs and rcs[i] records its result, which must be STRATA_OK,
 * STRATA_ENOMEM (the injected failure) or STRATA_ENOTFOUND (an operation on a
 * session whose creation failed). With expect set (the reference run, no
 * injection), operation i runs unless expect[i] is STRATA_ENOMEM and must
 * return expect[i]. Only operations with from <= i < to run; *n_ops receives
 * the length of the whole sequence. Returns the number of operations that
 * broke these rules. */
static int run_ops(l1_store *s, l1_store *copy, const int *expect, int *rcs, size_t from,
                   size_t to, size_t *n_ops)
{
    size_t i = 0;
    int bad = 0;
#define OP(expr)                                                                  \
    do {                                                                          \
        if (i >= from && i < to && (expect == NULL || expect[i] != STRATA_ENOMEM)) { \
            int rc_ = (expr);                                                     \
            if (rcs != NULL) {                                                    \
                rcs[i] = rc_;                                                     \
            }                                                                     \
            bool good_ = expect != NULL ? rc_ == expect[i]                        \
                                        : (rc_ == STRATA_OK || rc_ == STRATA_ENOMEM || \
                                           rc_ == STRATA_ENOTFOUND);             \
            if (!good_) {                                                         \
                fprintf(stderr, "  op %zu: rc %d\n", i, rc_);                     \
                bad++;                                                            \
            }                                                                     \
        }                                                                         \
        i++;                                                                      \
    } while (0)
    for (int k = 0; k < 9; k++) {
        char msg[32];
        snprintf(msg, sizeof(msg), "turn %d", k);
        OP(append(s, "t1", "s1", "u1", msg, 100 + k));
    }
    OP(append(s, "t1", "s2", "u2", "hello", 50));
    OP(append(s, LONG_TENANT, "s1", "u3", "long tenant", 120));
    OP(s->ops->session_set_stage(s, "t1", "s1", "checkout", 130));
    static const char *attrs[] = {"f", "e", "d", "c", "b", "a"};
    for (size_t k = 0; k < STRATA_ARRAY_LEN(attrs); k++) {
        OP(s->ops->dirty_add(s, "t1", "u1", attrs[k]));
    }
    OP(s->ops->dirty_add(s, LONG_TENANT, "u3", "x"));
    OP(s->ops->session_end(s, "t1", "s2", 140));
    OP(op_get(s, "t1", "s1"));
    OP(op_get(s, LONG_TENANT, "s1"));
    OP(op_dirty_get(s, "t1", "u1"));
    OP(op_idle(s));
    OP(s->ops->turn_check(s, LONG_TENANT, "s1", "u3", NULL));
    if (copy != NULL) {
        OP(op_snap_copy(s, copy));
    } else {
        i++;
    }
    OP(s->ops->session_delete(s, "t1", "s2"));
    OP(append(s, "t1", "s1", "u1", "after", 200));
    OP(append(s, "t1", "s3", "u1", "new", 210));
    OP(s->ops->dirty_clear(s, LONG_TENANT, "u3"));
    OP(s->ops->dirty_add(s, "t1", "u1", "aa"));
#undef OP
    *n_ops = i;
    return bad;
}

static bool same_bytes(const sbuf *a, const sbuf *b)
{
    return a->len == b->len && (a->len == 0 || memcmp(a->data, b->data, a->len) == 0);
}

/* Make allocation n fail, for n = 0, 1, ... until the sequence runs without
 * reaching it. Each run checks: only STRATA_ENOMEM comes out of the failing
 * operation; right after it the store equals a reference store that ran the
 * same operations without it (no partial change); the store keeps working
 * and ends equal to the reference; ASan reports no leak. */
TEST(fault_injection)
{
    enum { MAX_OPS = 64 };
    size_t n_ops = 0;
    run_ops(NULL, NULL, NULL, NULL, 0, 0, &n_ops);
    ASSERT_TRUE(n_ops <= MAX_OPS);
    long n;
    for (n = 0; n < 10000; n++) {
        int rcs[MAX_OPS] = {0};
        l1_store *s = NULL;
        l1_store *copy = NULL;
        l1_mem_options o = {.buffer_max = 6};
        strata_alloc_fail_after(n);
        int rc = l1_mem_open(&o, &s);
        if (rc == STRATA_OK) {
            rc = l1_mem_open(&o, &copy);
            if (rc != STRATA_OK) {
                ASSERT_TRUE(copy == NULL);
                s->ops->close(s);
                s = NULL;
            }
        }
        if (rc != STRATA_OK) {
            strata_alloc_fail_after(-1);
            ASSERT_EQ(rc, STRATA_ENOMEM);
            ASSERT_TRUE(s == NULL);
            continue;
        }
        int bad = 0;
        bool fired = strata_alloc_count() > (unsigned long)n;
        size_t f = 0; /* the operation during which allocation n failed */
        sbuf at_fail;
        sbuf_init(&at_fail, SNAP_MAX);
        for (size_t k = 0; k < n_ops; k++) {
            bad += run_ops(s, copy, NULL, rcs, k, k + 1, &n_ops);
            if (!fired && strata_alloc_count() > (unsigned long)n) {
                /* The one injected failure is spent: snapshotting is safe now. */
                fired = true;
                f = k;
                rc = s->ops->snapshot_write(s, &at_fail);
                bad += rc != STRATA_OK;
            }
        }
        strata_alloc_fail_after(-1);
        bool consistent = check_consistent(s, 6);

        l1_store *ref = open_store(6);
        sbuf ws;
        sbuf wr;
        sbuf_init(&wr, SNAP_MAX);
        bool same_at_fail = true;
        if (ref != NULL && fired) {
            bad += run_ops(ref, NULL, rcs, NULL, 0, f + 1, &n_ops);
            rc = ref->ops->snapshot_write(ref, &wr);
            same_at_fail = rc == STRATA_OK && same_bytes(&at_fail, &wr);
            sbuf_reset(&wr);
        }
        if (ref != NULL) {
            bad += run_ops(ref, NULL, rcs, NULL, fired ? f + 1 : 0, n_ops, &n_ops);
            bad += ref->ops->snapshot_write(ref, &wr) != STRATA_OK;
        }
        bad += snap(s, &ws) != STRATA_OK;
        bool same_at_end = same_bytes(&ws, &wr);
        sbuf_free(&at_fail);
        sbuf_free(&ws);
        sbuf_free(&wr);
        if (ref != NULL) {
            ref->ops->close(ref);
        }
        s->ops->close(s);
        copy->ops->close(copy);
        if (bad != 0 || !consistent || !same_at_fail || !same_at_end) {
            fprintf(stderr, "  failing allocation %ld (operation %zu)\n", n, f);
        }
        ASSERT_TRUE(ref != NULL);
        ASSERT_EQ(bad, 0);
        ASSERT_TRUE(consistent);
        ASSERT_TRUE(same_at_fail);
        ASSERT_TRUE(same_at_end);
        if (!fired) {
            break; /* the whole sequence ran without reaching allocation n */
        }
    }
    ASSERT_TRUE(n > 50);
    ASSERT_TRUE(n < 10000);
}

TEST(snapshot_load_fault_injection)
{
    l1_store *a = populated_store(4);
    ASSERT_TRUE(a != NULL);
    sbuf w;
    ASSERT_OK(snap(a, &w));
    l1_store *b = open_store(4);
    ASSERT_TRUE(b != NULL);
    long n;
    for (n = 0; n < 10000; n++) {
        strata_alloc_fail_after(n);
        int rc = b->ops->snapshot_load(b, w.data, w.len);
        bool fired = strata_alloc_count() > (unsigned long)n;
        strata_alloc_fail_after(-1);
        if (rc != STRATA_OK) {
            ASSERT_EQ(rc, STRATA_ENOMEM);
            ASSERT_TRUE(stats_zero(b));
        } else {
            sbuf w2;
            ASSERT_OK(snap(b, &w2));
            ASSERT_TRUE(w2.len == w.len && memcmp(w.data, w2.data, w.len) == 0);
            sbuf_free(&w2);
        }
        if (!fired) {
            ASSERT_OK(rc);
            break;
        }
    }
    ASSERT_TRUE(n > 10);
    sbuf_free(&w);
    a->ops->close(a);
    b->ops->close(b);
}

/* ---- concurrency ---------------------------------------------------------- */

enum { CC_SESSIONS = 10, CC_TURNS = 20000, CC_N = 8, CC_ATTRS = 17 };

typedef struct cc_ctx {
    l1_store *s;
    int id;                    /* writer 0/1: tenant tA/tB, user u0/u1 */
    atomic_int *writers_left;
    atomic_int *errors;
    atomic_int *reads;         /* reader passes made, all readers */
} cc_ctx;

static void *cc_writer(void *arg)
{
    cc_ctx *c = arg;
    const char *tenant = c->id == 0 ? "tA" : "tB";
    const char *user = c->id == 0 ? "u0" : "u1";
    for (int i = 0; i < CC_TURNS; i++) {
        char sid[16];
        char msg[32];
        snprintf(sid, sizeof(sid), "s%d", i % CC_SESSIONS);
        snprintf(msg, sizeof(msg), "w%d-%d", c->id, i);
        if (append(c->s, tenant, sid, user, msg, i) != STRATA_OK) {
            atomic_fetch_add(c->errors, 1);
        }
        if (i % 50 == 0 && c->s->ops->session_set_stage(c->s, tenant, sid, msg, i) != 0) {
            atomic_fetch_add(c->errors, 1);
        }
        char attr[16];
        snprintf(attr, sizeof(attr), "a%02d", i % CC_ATTRS);
        if (c->s->ops->dirty_add(c->s, tenant, user, attr) != STRATA_OK) {
            atomic_fetch_add(c->errors, 1);
        }
    }
    atomic_fetch_sub(c->writers_left, 1);
    return NULL;
}

/* One reader pass; returns false on any inconsistency it can see. */
static bool cc_read_once(l1_store *s, l1_store *scratch, int k)
{
    const char *tenant = k % 2 ? "tA" : "tB";
    const char *user = k % 2 ? "u0" : "u1";
    char sid[16];
    snprintf(sid, sizeof(sid), "s%d", k % CC_SESSIONS);
    strata_session *ss = NULL;
    int rc = s->ops->session_get(s, tenant, sid, &ss);
    if (rc == STRATA_OK) {
        bool ok = strcmp(ss->user_id, user) == 0 && ss->n_turns <= CC_N &&
                  ss->n_turns <= ss->turn_count;
        for (size_t j = 0; j < ss->n_turns && ok; j++) {
            ok = ss->turns[j].seq == ss->turn_count - ss->n_turns + 1 + j;
        }
        strata_session_free(ss);
        if (!ok) {
            return false;
        }
        if (s->ops->turn_check(s, tenant, sid, "intruder", NULL) != STRATA_ECONFLICT) {
            return false;
        }
    } else if (rc != STRATA_ENOTFOUND) {
        return false;
    }
    strata_strlist *l = NULL;
    if (s->ops->dirty_get(s, tenant, user, &l) != STRATA_OK) {
        return false;
    }
    for (size_t j = 1; j < l->n; j++) {
        if (strcmp(l->items[j - 1], l->items[j]) >= 0) {
            strata_strlist_free(l);
            return false;
        }
    }
    strata_strlist_free(l);
    l1_stats st;
    s->ops->stats(s, &st);
    if (st.sessions > 2 * CC_SESSIONS || st.turns_buffered > st.sessions * CC_N) {
        return false;
    }
    l1_session_ref *refs = NULL;
    size_t n = 0;
    if (s->ops->session_list_idle(s, CC_TURNS / 2, 5, &refs, &n) != STRATA_OK) {
        return false;
    }
    l1_session_refs_free(refs, n);
    if (k % 64 == 0) {
        sbuf w;
        if (snap(s, &w) != STRATA_OK ||
            scratch->ops->snapshot_load(scratch, w.data, w.len) != STRATA_OK) {
            sbuf_free(&w);
            return false;
        }
        sbuf_free(&w);
    }
    return true;
}

static void *cc_reader(void *arg)
{
    cc_ctx *c = arg;
    l1_store *scratch = open_store(CC_N);
    if (scratch == NULL) {
        atomic_fetch_add(c->errors, 1);
        return NULL;
    }
    int k = c->id;
    do {
        if (!cc_read_once(c->s, scratch, k)) {
            atomic_fetch_add(c->errors, 1);
        }
        k++;
    } while (atomic_load(c->writers_left) > 0);
    atomic_fetch_add(c->reads, k - c->id);
    scratch->ops->close(scratch);
    return NULL;
}

TEST(concurrent_readers_writers)
{
    l1_store *s = open_store(CC_N);
    ASSERT_TRUE(s != NULL);
    atomic_int writers_left = 2;
    atomic_int errors = 0;
    atomic_int reads = 0;
    cc_ctx ctx[4];
    pthread_t th[4];
    for (int i = 0; i < 4; i++) {
        ctx[i] = (cc_ctx){s, i % 2, &writers_left, &errors, &reads};
        void *(*fn)(void *) = i < 2 ? cc_writer : cc_reader;
        ASSERT_EQ(pthread_create(&th[i], NULL, fn, &ctx[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
    }
    ASSERT_EQ(atomic_load(&errors), 0);
    ASSERT_TRUE(atomic_load(&reads) >= 2);
    l1_stats st;
    s->ops->stats(s, &st);
    ASSERT_EQ(st.sessions, 2 * CC_SESSIONS);
    ASSERT_EQ(st.turns_buffered, 2 * CC_SESSIONS * CC_N);
    ASSERT_EQ(st.dirty_users, 2);
    for (int w = 0; w < 2; w++) {
        for (int j = 0; j < CC_SESSIONS; j++) {
            char sid[16];
            char want[32];
            snprintf(sid, sizeof(sid), "s%d", j);
            strata_session *ss = NULL;
            ASSERT_OK(s->ops->session_get(s, w ? "tB" : "tA", sid, &ss));
            uint32_t tc = ss->turn_count;
            size_t nt = ss->n_turns;
            snprintf(want, sizeof(want), "w%d-%d", w, CC_TURNS - CC_SESSIONS + j);
            bool last_ok = nt == CC_N && strcmp(ss->turns[nt - 1].content, want) == 0;
            strata_session_free(ss);
            ASSERT_EQ(tc, CC_TURNS / CC_SESSIONS);
            ASSERT_TRUE(last_ok);
        }
        strata_strlist *l = NULL;
        ASSERT_OK(s->ops->dirty_get(s, w ? "tB" : "tA", w ? "u1" : "u0", &l));
        size_t nl = l->n;
        strata_strlist_free(l);
        ASSERT_EQ(nl, CC_ATTRS);
    }
    ASSERT_TRUE(check_consistent(s, CC_N));
    s->ops->close(s);
}

TEST_MAIN(TEST_ENTRY(append_and_read_back), TEST_ENTRY(buffer_trimmed_to_n),
          TEST_ENTRY(owner_conflict), TEST_ENTRY(stage_end_delete),
          TEST_ENTRY(tenant_isolation), TEST_ENTRY(dirty_sets), TEST_ENTRY(idle_listing),
          TEST_ENTRY(snapshot_round_trip), TEST_ENTRY(snapshot_truncated_and_flipped),
          TEST_ENTRY(snapshot_hostile_images), TEST_ENTRY(fault_injection),
          TEST_ENTRY(snapshot_load_fault_injection), TEST_ENTRY(concurrent_readers_writers))
