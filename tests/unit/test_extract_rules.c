/*
 * test_extract_rules.c - the built-in rule-based extractor (extract_rules.c):
 * a table of English sentences with the candidate each must give (type,
 * attribute, value, entity, kind, polarity, third-person content), sentences
 * that must give nothing (questions, negations, hypotheticals, other people,
 * requests, assistant turns), the scores (hedges, stated changes, safety
 * importance), the scripted promotion conversation, merging, and hostile
 * input: very long turns, invalid UTF-8, empty and unterminated turns, and
 * failed allocations. Also prints the throughput.
 */
#include <time.h>

#include "core/core.h"
#include "providers/extract.h"
#include "test.h"

#define PREF STRATA_MEM_PREFERENCE
#define FACT STRATA_MEM_FACT
#define EXP STRATA_MEM_EXPERIENCE

typedef struct row {
    const char *text;           /* one user turn */
    int n;                      /* candidates it gives */
    int type;                   /* of the candidate whose content is `content` */
    const char *attr;
    const char *value;
    const char *entity;
    const char *kind;
    int pol;
    const char *content;
} row;

static const row g_rows[] = {
    {"I'm a senior developer at Acme", 2, FACT, "role", "senior developer",
     NULL, NULL, 0, "User is a senior developer"},
    {"I'm a senior developer at Acme", 2, FACT, "employer", "Acme",
     "acme", "topic", 0, "User works at Acme"},
    {"I was promoted, I'm a team lead now", 1, FACT, "role", "team lead",
     NULL, NULL, 0, "User is a team lead"},
    {"I'm allergic to peanuts", 1, FACT, "allergy", "peanuts",
     "peanuts", "constraint", -1, "User is allergic to peanuts"},
    {"I love hiking", 1, PREF, "likes", "hiking",
     "hiking", "topic", 1, "User loves hiking"},
    {"I like hiking, swimming and cooking.", 3, PREF, "likes", "hiking",
     "hiking", "topic", 1, "User likes hiking"},
    {"I like hiking, swimming and cooking.", 3, PREF, "likes", "swimming",
     "swimming", "topic", 1, "User likes swimming"},
    {"I like hiking, swimming and cooking.", 3, PREF, "likes", "cooking",
     "cooking", "topic", 1, "User likes cooking"},
    {"I prefer concise answers", 1, PREF, "likes", "concise answers",
     "concise answers", "preference", 1, "User prefers concise answers"},
    {"I hate long meetings", 1, PREF, "dislikes", "long meetings",
     "long meetings", "topic", -1, "User hates long meetings"},
    {"I can't stand loud music", 1, PREF, "dislikes", "loud music",
     "loud music", "topic", -1, "User can't stand loud music"},
    {"I don't like spicy food", 1, PREF, "dislikes", "spicy food",
     "spicy food", "topic", -1, "User doesn't like spicy food"},
    {"I'm really into jazz", 1, PREF, "likes", "jazz",
     "jazz", "topic", 1, "User is into jazz"},
    {"My favourite colour is blue", 1, PREF, "favorite_color", "blue",
     "blue", "topic", 1, "User's favourite colour is blue"},
    {"I'd rather have tea than coffee", 1, PREF, "likes", "tea",
     "tea", "preference", 1, "User would rather have tea than coffee"},
    {"I work at Google", 1, FACT, "employer", "Google",
     "google", "topic", 0, "User works at Google"},
    {"I work for Acme Corp as a data scientist", 2, FACT, "employer", "Acme Corp",
     "acme corp", "topic", 0, "User works for Acme Corp"},
    {"I work for Acme Corp as a data scientist", 2, FACT, "role", "data scientist",
     NULL, NULL, 0, "User is a data scientist"},
    {"I work as a nurse", 1, FACT, "role", "nurse",
     NULL, NULL, 0, "User is a nurse"},
    {"I live in New York City with my wife", 1, FACT, "location", "New York City",
     "new york city", "topic", 0, "User lives in New York City"},
    {"I'm from Spain", 1, FACT, "origin", "Spain",
     "spain", "topic", 0, "User is from Spain"},
    {"I moved to Berlin last month", 1, FACT, "location", "Berlin",
     "berlin", "topic", 0, "User moved to Berlin"},
    {"My name is Alex Smith", 1, FACT, "name", "Alex Smith",
     NULL, NULL, 0, "User's name is Alex Smith"},
    {"Call me Sam", 1, FACT, "name", "Sam",
     NULL, NULL, 0, "User wants to be called Sam"},
    {"I am 34 years old", 1, FACT, "age", "34",
     NULL, NULL, 0, "User is 34 years old"},
    {"I speak English and Spanish", 2, FACT, "language", "English",
     "english", "topic", 0, "User speaks English"},
    {"I speak English and Spanish", 2, FACT, "language", "Spanish",
     "spanish", "topic", 0, "User speaks Spanish"},
    {"I'm vegetarian", 1, FACT, "diet", "vegetarian",
     "vegetarian", "constraint", 0, "User is vegetarian"},
    {"I'm a vegan now", 1, FACT, "diet", "vegan",
     "vegan", "constraint", 0, "User is vegan"},
    {"I can't eat gluten", 1, FACT, "avoids", "gluten",
     "gluten", "constraint", -1, "User can't eat gluten"},
    {"I must not use ibuprofen", 1, FACT, "avoids", "ibuprofen",
     "ibuprofen", "constraint", -1, "User must not use ibuprofen"},
    {"I shouldn't drink coffee", 1, FACT, "avoids", "coffee",
     "coffee", "constraint", -1, "User shouldn't drink coffee"},
    {"My budget is around $1,500", 1, FACT, "budget", "around $1,500",
     "budget", "constraint", 0, "User's budget is around $1,500"},
    {"I don't eat pork", 1, FACT, "avoids", "pork",
     "pork", "constraint", -1, "User doesn't eat pork"},
    {"I went to Japan last year", 1, EXP, NULL, NULL,
     "japan", "topic", 0, "User went to Japan last year"},
    {"Last year I visited Japan", 1, EXP, NULL, NULL,
     "japan", "topic", 0, "User visited Japan last year"},
    {"I bought a Kindle yesterday", 1, EXP, NULL, NULL,
     "kindle", "product", 0, "User bought a Kindle yesterday"},
    {"I just bought a new iPhone 15", 1, EXP, NULL, NULL,
     "iphone 15", "product", 0, "User just bought a new iPhone 15"},
    {"My doctor told me I'm allergic to penicillin", 1, FACT, "allergy", "penicillin",
     "penicillin", "constraint", -1, "User is allergic to penicillin"},
    {"I think I'm allergic to cats", 1, FACT, "allergy", "cats",
     "cats", "constraint", -1, "User is allergic to cats"},
    {"Maybe I like sushi", 1, PREF, "likes", "sushi",
     "sushi", "topic", 1, "User likes sushi"},
    {"I love my new Kindle", 1, PREF, "likes", "Kindle",
     "kindle", "product", 1, "User loves User's new Kindle"},
    {"I have a peanut allergy", 1, FACT, "allergy", "peanut",
     "peanut", "constraint", -1, "User has a peanut allergy"},
    {"I have diabetes", 1, FACT, "condition", "diabetes",
     "diabetes", "constraint", 0, "User has diabetes"},
    {"I've been to Paris", 1, EXP, NULL, NULL,
     "paris", "topic", 0, "User has been to Paris"},
    {"I'm 29", 1, FACT, "age", "29",
     NULL, NULL, 0, "User is 29 years old"},
    {"I'm a huge Star Wars fan", 1, PREF, "likes", "Star Wars",
     "star wars", "topic", 1, "User is a fan of Star Wars"},
    {"I'm a big fan of Python", 1, PREF, "likes", "Python",
     "python", "topic", 1, "User is a fan of Python"},
    {"I'm not a fan of horror movies", 1, PREF, "dislikes", "horror movies",
     "horror movies", "topic", -1, "User is not a fan of horror movies"},
    {"I no longer eat meat", 1, FACT, "avoids", "meat",
     "meat", "constraint", -1, "User no longer eats meat"},
    {"I don't drink", 1, FACT, "avoids", "alcohol",
     "alcohol", "constraint", -1, "User doesn't drink alcohol"},
    {"I'm lactose intolerant", 1, FACT, "intolerance", "lactose",
     "lactose", "constraint", -1, "User is lactose intolerant"},
    {"I got married last year", 1, FACT, "marital_status", "married",
     NULL, NULL, 0, "User got married last year"},
    {"I use Vim for coding", 1, FACT, "uses", "Vim",
     "vim", "product", 0, "User uses Vim for coding"},
    {"Pizza is my favourite food", 1, PREF, "favorite_food", "Pizza",
     "pizza", "topic", 1, "User's favourite food is Pizza"},
    {"I'm the CTO at Initech", 2, FACT, "role", "CTO",
     NULL, NULL, 0, "User is the CTO"},
    {"I'm the CTO at Initech", 2, FACT, "employer", "Initech",
     "initech", "topic", 0, "User works at Initech"},
    {"i'm a software engineer at microsoft", 2, FACT, "role", "software engineer",
     NULL, NULL, 0, "User is a software engineer"},
    {"i'm a software engineer at microsoft", 2, FACT, "employer", "microsoft",
     "microsoft", "topic", 0, "User works at microsoft"},
    {"I became a manager", 1, FACT, "role", "manager",
     NULL, NULL, 0, "User became a manager"},
    {"I enjoy going to the gym", 1, PREF, "likes", "going to the gym",
     "going to the gym", "topic", 1, "User enjoys going to the gym"},
    {"I really love hiking in the mountains", 1, PREF, "likes", "hiking",
     "hiking", "topic", 1, "User loves hiking in the mountains"},
    {"I'm not sure I like sushi", 1, PREF, "likes", "sushi",
     "sushi", "topic", 1, "User likes sushi"},
    {"I'm a 34 year old developer", 2, FACT, "age", "34",
     NULL, NULL, 0, "User is 34 years old"},
    {"I'm a 34 year old developer", 2, FACT, "role", "developer",
     NULL, NULL, 0, "User is a developer"},
    {"I'm originally from Lagos, Nigeria", 1, FACT, "origin", "Lagos",
     "lagos", "topic", 0, "User is from Lagos"},
    {"I work remotely for a startup", 1, FACT, "employer", "startup",
     "startup", "topic", 0, "User works for a startup"},
    {"I've been working at Stripe for 5 years", 1, FACT, "employer", "Stripe",
     "stripe", "topic", 0, "User works at Stripe"},
    {"I just started at Netflix", 1, FACT, "employer", "Netflix",
     "netflix", "topic", 0, "User works at Netflix"},
    {"I started as a junior analyst last year", 1, FACT, "role", "junior analyst",
     NULL, NULL, 0, "User is a junior analyst"},
    {"I joined Google in 2021", 1, FACT, "employer", "Google",
     "google", "topic", 0, "User joined Google"},
    {"I got a new job at Shopify", 1, FACT, "employer", "Shopify",
     "shopify", "topic", 0, "User works at Shopify"},
    {"I'm no longer a developer, I'm a manager now", 1, FACT, "role", "manager",
     NULL, NULL, 0, "User is a manager"},
    {"I'm allergic to peanuts and shellfish", 2, FACT, "allergy", "peanuts",
     "peanuts", "constraint", -1, "User is allergic to peanuts"},
    {"I'm allergic to peanuts and shellfish", 2, FACT, "allergy", "shellfish",
     "shellfish", "constraint", -1, "User is allergic to shellfish"},
    {"I have an allergy to latex", 1, FACT, "allergy", "latex",
     "latex", "constraint", -1, "User is allergic to latex"},
    {"I'm deathly allergic to bees", 1, FACT, "allergy", "bees",
     "bees", "constraint", -1, "User is allergic to bees"},
    {"Honestly I love hiking", 1, PREF, "likes", "hiking",
     "hiking", "topic", 1, "User loves hiking"},
    {"Yesterday I went hiking with my dog", 1, EXP, NULL, NULL,
     "hiking", "topic", 0, "User went hiking with User's dog yesterday"},
    {"Two weeks ago I flew to Tokyo", 1, EXP, NULL, NULL,
     "tokyo", "topic", 0, "User flew to Tokyo two weeks ago"},
    {"I finished the marathon on Sunday", 1, EXP, NULL, NULL,
     "marathon", "topic", 0, "User finished the marathon on Sunday"},
    {"I read Dune last month", 1, EXP, NULL, NULL,
     "dune", "topic", 0, "User read Dune last month"},
    {"I'm into rock climbing lately", 1, PREF, "likes", "rock climbing",
     "rock climbing", "topic", 1, "User is into rock climbing lately"},
    {"My wife and I love traveling", 1, PREF, "likes", "traveling",
     "traveling", "topic", 1, "User loves traveling"},
    {"I love traveling and I hate flying", 2, PREF, "likes", "traveling",
     "traveling", "topic", 1, "User loves traveling"},
    {"I love traveling and I hate flying", 2, PREF, "dislikes", "flying",
     "flying", "topic", -1, "User hates flying"},
    {"I love hiking, it's so relaxing", 1, PREF, "likes", "hiking",
     "hiking", "topic", 1, "User loves hiking"},
    {"I love hiking, especially in autumn", 1, PREF, "likes", "hiking",
     "hiking", "topic", 1, "User loves hiking"},
    {"I really don't like cilantro", 1, PREF, "dislikes", "cilantro",
     "cilantro", "topic", -1, "User doesn't like cilantro"},
    {"I told him I'm a vegetarian", 1, FACT, "diet", "vegetarian",
     "vegetarian", "constraint", 0, "User is vegetarian"},
    {"I'm a doctor.  I work at St Mary's Hospital.", 2, FACT, "role", "doctor",
     NULL, NULL, 0, "User is a doctor"},
    {"I'm a doctor.  I work at St Mary's Hospital.", 2, FACT, "employer", "St Mary's Hospital",
     "st mary's hospital", "topic", 0, "User works at St Mary's Hospital"},
    {"I'm an engineer", 1, FACT, "role", "engineer",
     NULL, NULL, 0, "User is an engineer"},
    {"i like pizza", 1, PREF, "likes", "pizza",
     "pizza", "topic", 1, "User likes pizza"},
    {"I LOVE PIZZA", 1, PREF, "likes", "PIZZA",
     "pizza", "topic", 1, "User loves PIZZA"},
    {"I enjoyed the concert last night", 1, EXP, NULL, NULL,
     "concert", "topic", 1, "User enjoyed the concert last night"},
    {"I hated the movie yesterday", 1, EXP, NULL, NULL,
     "movie", "topic", -1, "User hated the movie yesterday"},
    {"I prefer tea over coffee", 1, PREF, "likes", "tea",
     "tea", "preference", 1, "User prefers tea over coffee"},
    {"I prefer to get short answers", 1, PREF, "likes", "short answers",
     "short answers", "preference", 1, "User prefers to get short answers"},
    {"I'm based in London", 1, FACT, "location", "London",
     "london", "topic", 0, "User lives in London"},
    {"I'm married with two kids", 1, FACT, "marital_status", "married",
     NULL, NULL, 0, "User is married"},
    {"My budget for the trip is 2000 euros", 1, FACT, "budget", "2000 euros",
     "budget", "constraint", 0, "User's budget for the trip is 2000 euros"},
    {"I'm pescatarian", 1, FACT, "diet", "pescatarian",
     "pescatarian", "constraint", 0, "User is pescatarian"},
    {"I follow a keto diet", 1, FACT, "diet", "keto",
     "keto", "constraint", 0, "User follows a keto diet"},
    {"I'm on a low-carb diet", 1, FACT, "diet", "low-carb",
     "low-carb", "constraint", 0, "User is on a low-carb diet"},
    {"I became vegan last year", 1, FACT, "diet", "vegan",
     "vegan", "constraint", 0, "User became vegan"},
    {"My job title is Staff Engineer", 1, FACT, "role", "Staff Engineer",
     NULL, NULL, 0, "User is a Staff Engineer"},
    {"My native language is Portuguese", 1, FACT, "language", "Portuguese",
     "portuguese", "topic", 0, "User's native language is Portuguese"},
    {"I'm fluent in French and German", 2, FACT, "language", "French",
     "french", "topic", 0, "User is fluent in French"},
    {"I'm fluent in French and German", 2, FACT, "language", "German",
     "german", "topic", 0, "User is fluent in German"},
    {"I use a MacBook Pro and an iPad", 2, FACT, "uses", "MacBook Pro",
     "macbook pro", "product", 0, "User uses a MacBook Pro"},
    {"I use a MacBook Pro and an iPad", 2, FACT, "uses", "iPad",
     "ipad", "product", 0, "User uses an iPad"},
    {"I own a Tesla Model 3", 1, FACT, "owns", "Tesla Model 3",
     "tesla model 3", "product", 0, "User owns a Tesla Model 3"},
    {"I'm a huge fan of the Beatles", 1, PREF, "likes", "Beatles",
     "beatles", "topic", 1, "User is a fan of the Beatles"},
    {"I'm a team lead now", 1, FACT, "role", "team lead",
     NULL, NULL, 0, "User is a team lead"},
    {"I am a nurse", 1, FACT, "role", "nurse",
     NULL, NULL, 0, "User is a nurse"},
    {"I work as a data scientist at Spotify", 2, FACT, "role", "data scientist",
     NULL, NULL, 0, "User is a data scientist"},
    {"I work as a data scientist at Spotify", 2, FACT, "employer", "Spotify",
     "spotify", "topic", 0, "User works at Spotify"},
    {"I live in Paris", 1, FACT, "location", "Paris",
     "paris", "topic", 0, "User lives in Paris"},
    {"I moved to Lisbon", 1, FACT, "location", "Lisbon",
     "lisbon", "topic", 0, "User moved to Lisbon"},
    {"My name is Priya", 1, FACT, "name", "Priya",
     NULL, NULL, 0, "User's name is Priya"},
    {"I'm 42 years old", 1, FACT, "age", "42",
     NULL, NULL, 0, "User is 42 years old"},
    {"I speak Japanese", 1, FACT, "language", "Japanese",
     "japanese", "topic", 0, "User speaks Japanese"},
    {"I'm vegan", 1, FACT, "diet", "vegan",
     "vegan", "constraint", 0, "User is vegan"},
    {"I was promoted to senior manager", 1, FACT, "role", "senior manager",
     NULL, NULL, 0, "User was promoted to senior manager"},
    {"I became a teacher last year", 1, FACT, "role", "teacher",
     NULL, NULL, 0, "User became a teacher"},
    {"I'm allergic to shellfish", 1, FACT, "allergy", "shellfish",
     "shellfish", "constraint", -1, "User is allergic to shellfish"},
    {"I have a severe nut allergy", 1, FACT, "allergy", "nut",
     "nut", "constraint", -1, "User has a severe nut allergy"},
    {"I'm gluten intolerant", 1, FACT, "intolerance", "gluten",
     "gluten", "constraint", -1, "User is gluten intolerant"},
    {"I can't have dairy", 1, FACT, "avoids", "dairy",
     "dairy", "constraint", -1, "User can't have dairy"},
    {"I cannot eat eggs", 1, FACT, "avoids", "eggs",
     "eggs", "constraint", -1, "User can't eat eggs"},
    {"I mustn't drink alcohol", 1, FACT, "avoids", "alcohol",
     "alcohol", "constraint", -1, "User must not drink alcohol"},
    {"My budget is $500 per month", 1, FACT, "budget", "$500 per month",
     "budget", "constraint", 0, "User's budget is $500 per month"},
    {"I avoid sugar", 1, FACT, "avoids", "sugar",
     "sugar", "constraint", -1, "User avoids sugar"},
    {"I try to avoid caffeine", 1, FACT, "avoids", "caffeine",
     "caffeine", "constraint", -1, "User tries to avoid caffeine"},
    {"I don't eat red meat", 1, FACT, "avoids", "red meat",
     "red meat", "constraint", -1, "User doesn't eat red meat"},
    {"I never eat fish", 1, FACT, "avoids", "fish",
     "fish", "constraint", -1, "User never eats fish"},
    {"I enjoy reading science fiction", 1, PREF, "likes", "reading science fiction",
     "reading science fiction", "topic", 1, "User enjoys reading science fiction"},
    {"I adore cats", 1, PREF, "likes", "cats",
     "cats", "topic", 1, "User adores cats"},
    {"I prefer email over phone calls", 1, PREF, "likes", "email",
     "email", "preference", 1, "User prefers email over phone calls"},
    {"I'd rather work remotely", 1, PREF, "likes", "work remotely",
     "work remotely", "preference", 1, "User would rather work remotely"},
    {"I dislike crowds", 1, PREF, "dislikes", "crowds",
     "crowds", "topic", -1, "User dislikes crowds"},
    {"I don't love mornings", 1, PREF, "dislikes", "mornings",
     "mornings", "topic", -1, "User doesn't love mornings"},
    {"I'm really into photography", 1, PREF, "likes", "photography",
     "photography", "topic", 1, "User is into photography"},
    {"My favourite food is sushi", 1, PREF, "favorite_food", "sushi",
     "sushi", "topic", 1, "User's favourite food is sushi"},
    {"I like Python and Rust", 2, PREF, "likes", "Python",
     "python", "topic", 1, "User likes Python"},
    {"I like Python and Rust", 2, PREF, "likes", "Rust",
     "rust", "topic", 1, "User likes Rust"},
    {"I visited Rome in 2019", 1, EXP, NULL, NULL,
     "rome", "topic", 0, "User visited Rome in 2019"},
    {"I bought a PS5 last week", 1, EXP, NULL, NULL,
     "ps5", "product", 0, "User bought a PS5 last week"},
    {"I went skiing last winter", 1, EXP, NULL, NULL,
     "skiing", "topic", 0, "User went skiing last winter"},
    {"I finished my PhD three years ago", 1, EXP, NULL, NULL,
     "phd", "topic", 0, "User finished User's PhD three years ago"},
    {"I ran a marathon on Saturday", 1, EXP, NULL, NULL,
     "marathon", "topic", 0, "User ran a marathon on Saturday"},
    {"I've visited Iceland twice", 1, EXP, NULL, NULL,
     "iceland", "topic", 0, "User has visited Iceland twice"},
    {"I watched Oppenheimer yesterday", 1, EXP, NULL, NULL,
     "oppenheimer", "topic", 0, "User watched Oppenheimer yesterday"},
    {"I went to the dentist this morning", 1, EXP, NULL, NULL,
     "dentist", "topic", 0, "User went to the dentist this morning"},
    {"I'm a student at Stanford", 2, FACT, "school", "Stanford",
     "stanford", "topic", 0, "User studies at Stanford"},
    {"I like coffee more than tea", 1, PREF, "likes", "coffee",
     "coffee", "topic", 1, "User likes coffee more than tea"},
};

/* Sentences that must give nothing. */
static const char *const g_nothing[] = {
    "Do I like hiking?",
    "Am I a doctor",
    "I'm not a doctor",
    "If I were a doctor I would help",
    "My wife likes jazz",
    "She says I'm lazy",
    "I love it",
    "I love you",
    "I'd like a coffee",
    "I used to live in Paris",
    "I'm a bit tired",
    "\"I love meetings\" is what my boss says",
    "I don't work at Acme anymore",
    "I'm learning Spanish",
    "I'd love to visit Japan",
    "I would like to know more",
    "I want a new laptop",
    "Can you tell me what I like?",
    "What's my name?",
    "He thinks I'm an idiot",
    "I wish I were a pilot",
    "Imagine I'm a doctor",
    "I'm tired",
    "I'm happy to help",
    "I'm going to Paris next week",
    "I'm moving to Berlin",
    "I love it when you explain things",
    "I like your answer",
    "I like that",
    "I have two kids",
    "I'm 5 minutes late",
    "My budget is tight",
    "I'm the best",
    "I'm an only child",
    "Do I like jazz?",
    "Am I a good cook",
    "What do I like",
    "If I were rich I would travel",
    "If I'm a doctor, so what",
    "I'm not a lawyer",
    "I'm not allergic to anything",
    "My wife likes opera",
    "My boss is a vegetarian",
    "She said I'm a genius",
    "They think I'm rich",
    "I don't work there anymore",
    "I'd like a refund",
    "I would love a coffee",
    "I hate that",
    "I like your style",
    "I'm tired today",
    "I'm a bit confused",
    "I went there",
    "I like to think I'm smart",
    "I prefer not to say",
    "I like the idea",
    "I'm a fan",
    "I work out every day",
    "I'm working on a project",
    "we moved to Berlin",
};

/* ---- helpers ------------------------------------------------------------ */

static const char *type_name(int t)
{
    return t == PREF ? "preference" : t == FACT ? "fact" : t == EXP ? "experience" : "?";
}

static strata_turn user_turn(const char *text)
{
    strata_turn t = {STRATA_ROLE_USER, (char *)text, text ? strlen(text) : 0, 0, 1};
    return t;
}

/* Extract from turns; NULL (with a message) on error. */
static extract_result *run_turns(const strata_turn *turns, size_t n)
{
    extractor *x = NULL;
    if (extractor_rules_create(&x) != STRATA_OK) {
        fprintf(stderr, "  create failed\n");
        return NULL;
    }
    extract_result *r = NULL;
    char err[256] = "";
    int rc = x->ops->extract(x, turns, n, &r, err, sizeof(err));
    extractor_free(x);
    if (rc != STRATA_OK) {
        fprintf(stderr, "  extract failed: %d %s\n", rc, err);
        return NULL;
    }
    return r;
}

static extract_result *run1(const char *text)
{
    strata_turn t = user_turn(text);
    return run_turns(&t, 1);
}

/* The candidate with this attribute and value (value NULL: any), or NULL. */
static const extract_candidate *find(const extract_result *r, const char *attr, const char *value)
{
    for (size_t i = 0; r != NULL && i < r->n; i++) {
        const extract_candidate *c = &r->items[i];
        if (c->attribute != NULL && strcmp(c->attribute, attr) == 0 &&
            (value == NULL || (c->value != NULL && strcmp(c->value, value) == 0))) {
            return c;
        }
    }
    return NULL;
}

static bool str_eq(const char *a, const char *b)
{
    return (a == NULL && b == NULL) || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

/* The invariants of extract.h; NULL if they hold, else what broke. */
static const char *invariant_error(const extract_result *r, const strata_turn *turns, size_t n)
{
    for (size_t i = 0; i < r->n; i++) {
        const extract_candidate *c = &r->items[i];
        if (c->type != PREF && c->type != FACT && c->type != EXP) {
            return "bad type";
        }
        if (c->content == NULL || c->content[0] == '\0' ||
            !utf8_valid(c->content, strlen(c->content)) || strncmp(c->content, "User", 4) != 0) {
            return "content empty, not UTF-8 or not third person";
        }
        if ((c->attribute == NULL) != (c->value == NULL)) {
            return "attribute without value or value without attribute";
        }
        if (c->attribute != NULL) {
            size_t len = strlen(c->attribute);
            if (len == 0 || len > EXTRACT_ATTR_MAX ||
                strspn(c->attribute, "abcdefghijklmnopqrstuvwxyz0123456789_") != len) {
                return "attribute is not a key";
            }
            if (c->value[0] == '\0' || !utf8_valid(c->value, strlen(c->value))) {
                return "value empty or not UTF-8";
            }
        }
        if (c->entity != NULL) {
            if (c->entity[0] == '\0' || !utf8_valid(c->entity, strlen(c->entity))) {
                return "entity empty or not UTF-8";
            }
            for (const char *p = c->entity; *p; p++) {
                if (*p >= 'A' && *p <= 'Z') {
                    return "entity not lower case";
                }
            }
        }
        if (c->entity_kind != NULL && !str_eq(c->entity_kind, "topic") &&
            !str_eq(c->entity_kind, "product") && !str_eq(c->entity_kind, "constraint") &&
            !str_eq(c->entity_kind, "preference")) {
            return "bad entity_kind";
        }
        if (c->entity_kind != NULL && c->entity == NULL) {
            return "entity_kind without entity";
        }
        if (c->polarity < -1 || c->polarity > 1) {
            return "polarity out of range";
        }
        if (!(c->confidence >= 0.0f && c->confidence <= 1.0f) ||
            !(c->importance >= 0.0f && c->importance <= 1.0f)) {
            return "score out of range";
        }
        if (c->source >= n || turns[c->source].role != STRATA_ROLE_USER) {
            return "source is not a user turn";
        }
    }
    return NULL;
}

/* ---- the sentence table ------------------------------------------------- */

TEST(table)
{
    int bad = 0;
    for (size_t i = 0; i < sizeof(g_rows) / sizeof(g_rows[0]); i++) {
        const row *w = &g_rows[i];
        strata_turn t = user_turn(w->text);
        extract_result *r = run_turns(&t, 1);
        ASSERT_TRUE(r != NULL);
        const extract_candidate *c = NULL;
        for (size_t k = 0; k < r->n; k++) {
            if (strcmp(r->items[k].content, w->content) == 0) {
                c = &r->items[k];
            }
        }
        const char *inv = invariant_error(r, &t, 1);
        bool ok = c != NULL && (int)r->n == w->n && (int)c->type == w->type &&
                  str_eq(c->attribute, w->attr) && str_eq(c->value, w->value) &&
                  str_eq(c->entity, w->entity) && str_eq(c->entity_kind, w->kind) &&
                  c->polarity == w->pol && inv == NULL;
        if (!ok) {
            bad++;
            fprintf(stderr, "  \"%s\": want %d candidates incl. %s %s=%s entity %s/%s pol %d "
                    "\"%s\"%s%s\n", w->text, w->n, type_name(w->type), w->attr ? w->attr : "-",
                    w->value ? w->value : "-", w->entity ? w->entity : "-",
                    w->kind ? w->kind : "-", w->pol, w->content, inv ? "; broken: " : "",
                    inv ? inv : "");
            for (size_t k = 0; k < r->n; k++) {
                const extract_candidate *o = &r->items[k];
                fprintf(stderr, "    got %s %s=%s entity %s/%s pol %d \"%s\"\n",
                        type_name(o->type), o->attribute ? o->attribute : "-",
                        o->value ? o->value : "-", o->entity ? o->entity : "-",
                        o->entity_kind ? o->entity_kind : "-", o->polarity, o->content);
            }
        }
        extract_result_free(r);
    }
    ASSERT_EQ(bad, 0);
    ASSERT_TRUE(sizeof(g_rows) / sizeof(g_rows[0]) >= 60);
}

TEST(nothing)
{
    int bad = 0;
    for (size_t i = 0; i < sizeof(g_nothing) / sizeof(g_nothing[0]); i++) {
        extract_result *r = run1(g_nothing[i]);
        ASSERT_TRUE(r != NULL);
        if (r->n != 0) {
            bad++;
            fprintf(stderr, "  \"%s\" gave \"%s\"\n", g_nothing[i], r->items[0].content);
        }
        extract_result_free(r);
    }
    ASSERT_EQ(bad, 0);
}

/* ---- the scripted conversation and scores ------------------------------ */

TEST(promotion_conversation)
{
    strata_turn turns[] = {
        user_turn("I'm a senior developer at Acme"),
        {STRATA_ROLE_ASSISTANT, (char *)"Nice! I'm a big fan of Acme. I love pizza, by the way.",
         54, 0, 2},
        user_turn("I was promoted, I'm a team lead now"),
        {STRATA_ROLE_SYSTEM, (char *)"I am a system prompt. I live in a server.", 41, 0, 4},
        user_turn("I'm allergic to peanuts"),
        user_turn("I love hiking"),
    };
    extract_result *r = run_turns(turns, 6);
    ASSERT_TRUE(r != NULL);
    const char *inv = invariant_error(r, turns, 6);
    if (inv != NULL) {
        fprintf(stderr, "  %s\n", inv);
    }
    ASSERT_TRUE(inv == NULL);
    ASSERT_EQ(r->n, 5);   /* role x2, employer, allergy, likes: nothing from turns 1 and 3 */
    const extract_candidate *senior = find(r, "role", "senior developer");
    const extract_candidate *lead = find(r, "role", "team lead");
    const extract_candidate *acme = find(r, "employer", "Acme");
    const extract_candidate *peanuts = find(r, "allergy", "peanuts");
    const extract_candidate *hiking = find(r, "likes", "hiking");
    ASSERT_TRUE(senior && lead && acme && peanuts && hiking);
    ASSERT_EQ(senior->source, 0);
    ASSERT_EQ(acme->source, 0);
    ASSERT_EQ(lead->source, 2);
    ASSERT_EQ(peanuts->source, 4);
    ASSERT_EQ(hiking->source, 5);
    ASSERT_STREQ(lead->content, "User is a team lead");
    ASSERT_TRUE(lead->confidence > senior->confidence);
    ASSERT_NEAR(senior->confidence, 0.7, 0.01);
    ASSERT_NEAR(lead->confidence, 0.9, 0.01);
    ASSERT_TRUE(lead->importance >= senior->importance);
    ASSERT_EQ(peanuts->type, FACT);
    ASSERT_STREQ(peanuts->entity_kind, "constraint");
    ASSERT_TRUE(peanuts->importance >= 0.9f);
    ASSERT_EQ(peanuts->polarity, -1);
    ASSERT_EQ(hiking->type, PREF);
    ASSERT_EQ(hiking->polarity, 1);
    ASSERT_STREQ(hiking->content, "User loves hiking");
    extract_result_free(r);
}

/* Confidence and importance of the first candidate of one sentence. */
static int scores(const char *text, float *conf, float *imp)
{
    extract_result *r = run1(text);
    if (r == NULL || r->n == 0) {
        fprintf(stderr, "  \"%s\" gave nothing\n", text);
        extract_result_free(r);
        return -1;
    }
    *conf = r->items[0].confidence;
    *imp = r->items[0].importance;
    extract_result_free(r);
    return 0;
}

TEST(confidence)
{
    static const struct {
        const char *text;
        float lo, hi;
    } cases[] = {
        {"I'm a nurse", 0.65f, 0.75f},                      /* plain */
        {"I live in Rome", 0.65f, 0.75f},
        {"I think I'm a nurse", 0.0f, 0.5f},                /* hedges */
        {"Maybe I live in Rome", 0.0f, 0.5f},
        {"I'm probably vegan", 0.0f, 0.5f},
        {"I might be allergic to cats", 0.0f, 0.5f},
        {"I'm not sure, but I think I love opera", 0.0f, 0.5f},
        {"I guess I'm a morning runner", 0.0f, 0.5f},
        {"I live in Rome now", 0.85f, 0.95f},               /* stated changes */
        {"I just moved to Oslo", 0.85f, 0.95f},
        {"I became a pilot", 0.85f, 0.95f},
        {"I no longer eat meat", 0.85f, 0.95f},
        {"My name is Ana", 0.75f, 0.85f},                   /* explicit */
        {"I'm allergic to wasps", 0.75f, 0.85f},
        {"My sister says I'm allergic to cats", 0.0f, 0.5f}, /* reported constraint */
        {"I don't love mornings", 0.55f, 0.65f},            /* weak */
    };
    int bad = 0;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        float c = -1;
        float imp = -1;
        if (scores(cases[i].text, &c, &imp) != 0 || c < cases[i].lo || c > cases[i].hi) {
            fprintf(stderr, "  \"%s\": confidence %.2f not in %.2f..%.2f\n", cases[i].text, c,
                    cases[i].lo, cases[i].hi);
            bad++;
        }
    }
    ASSERT_EQ(bad, 0);
}

TEST(importance)
{
    static const struct {
        const char *text;
        float lo, hi;
    } cases[] = {
        {"I'm allergic to peanuts", 0.9f, 1.0f},            /* safety */
        {"I have celiac disease", 0.9f, 1.0f},
        {"I can't eat gluten", 0.9f, 1.0f},
        {"I'm lactose intolerant", 0.9f, 1.0f},
        {"I don't eat pork", 0.8f, 0.9f},                   /* other constraints */
        {"My budget is 300 dollars", 0.8f, 0.9f},
        {"I'm vegetarian", 0.75f, 0.85f},
        {"My name is Ana", 0.65f, 0.75f},                   /* facts */
        {"I'm a nurse", 0.65f, 0.75f},
        {"I work at IKEA", 0.6f, 0.7f},
        {"I live in Rome", 0.6f, 0.7f},
        {"I moved to Oslo", 0.75f, 0.85f},                  /* a change matters more */
        {"I love hiking", 0.5f, 0.6f},                      /* preferences */
        {"I like tea", 0.5f, 0.6f},
        {"I visited Japan last year", 0.4f, 0.5f},          /* experiences */
        {"I bought a Kindle yesterday", 0.45f, 0.55f},
    };
    int bad = 0;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        float c = -1;
        float imp = -1;
        if (scores(cases[i].text, &c, &imp) != 0 || imp < cases[i].lo || imp > cases[i].hi) {
            fprintf(stderr, "  \"%s\": importance %.2f not in %.2f..%.2f\n", cases[i].text, imp,
                    cases[i].lo, cases[i].hi);
            bad++;
        }
    }
    ASSERT_EQ(bad, 0);
}

TEST(change_carries_to_next_sentence)
{
    extract_result *r = run1("I got promoted last week! I'm a team lead. I love tea.");
    ASSERT_TRUE(r != NULL);
    const extract_candidate *lead = find(r, "role", "team lead");
    const extract_candidate *tea = find(r, "likes", "tea");
    ASSERT_TRUE(lead != NULL && tea != NULL);
    ASSERT_NEAR(lead->confidence, 0.9, 0.01);   /* the sentence right after the promotion */
    ASSERT_NEAR(tea->confidence, 0.7, 0.01);    /* two sentences later: plain again */
    extract_result_free(r);
}

/* ---- merging, turns, roles ---------------------------------------------- */

TEST(merge_duplicates)
{
    extract_result *r = run1("I love hiking. I really love hiking! I LOVE HIKING");
    ASSERT_TRUE(r != NULL);
    ASSERT_EQ(r->n, 1);
    extract_result_free(r);

    strata_turn turns[] = {user_turn("I love hiking"), user_turn("I love hiking now")};
    r = run_turns(turns, 2);
    ASSERT_TRUE(r != NULL);
    ASSERT_EQ(r->n, 1);
    ASSERT_EQ(r->items[0].source, 1);               /* the latest mention */
    ASSERT_NEAR(r->items[0].confidence, 0.9, 0.01); /* the highest confidence */
    extract_result_free(r);
}

TEST(several_sentences_in_a_turn)
{
    extract_result *r = run1("Hi! I'm a nurse. I live in Leeds!! Do I like tea? "
                             "Anyway\nI love jazz; my favorite band is Muse");
    ASSERT_TRUE(r != NULL);
    ASSERT_EQ(r->n, 4);
    ASSERT_TRUE(find(r, "role", "nurse") != NULL);
    ASSERT_TRUE(find(r, "location", "Leeds") != NULL);
    ASSERT_TRUE(find(r, "likes", "jazz") != NULL);
    ASSERT_TRUE(find(r, "favorite_band", "Muse") != NULL);
    ASSERT_TRUE(find(r, "likes", "tea") == NULL);
    extract_result_free(r);
}

TEST(only_user_turns)
{
    strata_turn turns[] = {
        {STRATA_ROLE_ASSISTANT, (char *)"I'm a doctor and I love hiking.", 31, 0, 1},
        {STRATA_ROLE_SYSTEM, (char *)"I'm allergic to peanuts.", 24, 0, 2},
        {STRATA_ROLE_ASSISTANT, (char *)"My name is Bot.", 15, 0, 3},
    };
    extract_result *r = run_turns(turns, 3);
    ASSERT_TRUE(r != NULL);
    ASSERT_EQ(r->n, 0);
    extract_result_free(r);
}

TEST(other_people_and_quotes)
{
    /* Documented choice: statements about others are not about the user. */
    static const char *const texts[] = {
        "My wife likes jazz. My son is a doctor. My boss loves golf.",
        "My husband is allergic to cats.",
        "My brother lives in Paris and works at Google.",
        "She told me \"I love hiking\" yesterday.",
        "He said “I'm a vegan”.",
        "They say I'm a genius.",
        "You think I love meetings?",
    };
    for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++) {
        extract_result *r = run1(texts[i]);
        ASSERT_TRUE(r != NULL);
        if (r->n != 0) {
            fprintf(stderr, "  \"%s\" gave \"%s\"\n", texts[i], r->items[0].content);
        }
        ASSERT_EQ(r->n, 0);
        extract_result_free(r);
    }
}

TEST(curly_apostrophes)
{
    extract_result *r = run1("I\xe2\x80\x99m allergic to peanuts. I don\xe2\x80\x99t eat pork.");
    ASSERT_TRUE(r != NULL);
    ASSERT_EQ(r->n, 2);
    ASSERT_TRUE(find(r, "allergy", "peanuts") != NULL);
    const extract_candidate *pork = find(r, "avoids", "pork");
    ASSERT_TRUE(pork != NULL);
    ASSERT_STREQ(pork->content, "User doesn't eat pork");
    extract_result_free(r);
}

/* ---- hostile input ------------------------------------------------------ */

TEST(empty_input)
{
    extract_result *r = run_turns(NULL, 0);
    ASSERT_TRUE(r != NULL);
    ASSERT_EQ(r->n, 0);
    ASSERT_TRUE(r->items == NULL);
    extract_result_free(r);

    strata_turn turns[] = {
        {STRATA_ROLE_USER, NULL, 0, 0, 1},
        {STRATA_ROLE_USER, (char *)"", 0, 0, 2},
        {STRATA_ROLE_USER, (char *)"...?? ?!!! ,,, ;;", 17, 0, 3},
        {STRATA_ROLE_USER, (char *)"I", 1, 0, 4},
        {STRATA_ROLE_USER, (char *)"I'm", 3, 0, 5},
        {STRATA_ROLE_USER, (char *)"my", 2, 0, 6},
        {STRATA_ROLE_USER, (char *)"I love", 6, 0, 7},
        {STRATA_ROLE_USER, (char *)"I'm allergic to", 15, 0, 8},
        {STRATA_ROLE_USER, (char *)"call me", 7, 0, 9},
        {STRATA_ROLE_USER, (char *)"my favourite", 12, 0, 10},
        {STRATA_ROLE_USER, (char *)"my budget is", 12, 0, 11},
    };
    r = run_turns(turns, sizeof(turns) / sizeof(turns[0]));
    ASSERT_TRUE(r != NULL);
    ASSERT_EQ(r->n, 0);
    extract_result_free(r);
}

TEST(bad_arguments)
{
    extractor *x = NULL;
    ASSERT_OK(extractor_rules_create(&x));
    ASSERT_STREQ(x->ops->name, "rules");
    extract_result *r = (extract_result *)1;
    char err[128] = "";
    ASSERT_EQ(x->ops->extract(x, NULL, 3, &r, err, sizeof(err)), STRATA_EINVAL);
    ASSERT_TRUE(r == NULL);
    ASSERT_TRUE(err[0] != '\0');
    /* errbuf may be NULL */
    ASSERT_EQ(x->ops->extract(x, NULL, 3, &r, NULL, 0), STRATA_EINVAL);
    extractor_free(x);
    extractor_free(NULL);
    extract_result_free(NULL);
}

TEST(content_len_is_respected)
{
    /* An exact-size heap copy without a NUL: ASan catches any read past it. */
    const char *text = "I love hiking and I'm a nurse";
    size_t len = 13;  /* "I love hiking" */
    char *buf = malloc(len);
    ASSERT_TRUE(buf != NULL);
    memcpy(buf, text, len);
    strata_turn t = {STRATA_ROLE_USER, buf, len, 0, 1};
    extract_result *r = run_turns(&t, 1);
    free(buf);
    ASSERT_TRUE(r != NULL);
    ASSERT_EQ(r->n, 1);
    ASSERT_STREQ(r->items[0].value, "hiking");
    extract_result_free(r);

    /* Every prefix of a busy sentence, unterminated. */
    const char *busy = "I'm a senior dev at Acme, I love hiking, swimming and my new Kindle, "
                       "I can't eat gluten; my budget is $1,500 and I went to Rome last week.";
    for (size_t n = 0; n <= strlen(busy); n++) {
        char *b = malloc(n ? n : 1);
        ASSERT_TRUE(b != NULL);
        memcpy(b, busy, n);
        strata_turn u = {STRATA_ROLE_USER, b, n, 0, 1};
        r = run_turns(&u, 1);
        free(b);
        ASSERT_TRUE(r != NULL);
        ASSERT_TRUE(invariant_error(r, &u, 1) == NULL);
        extract_result_free(r);
    }
}

TEST(very_long_input)
{
    /* 300 KiB of distinct likes: read up to EXTRACT_RULES_TURN_MAX, capped items. */
    size_t cap = 300 * 1024;
    char *big = malloc(cap + 64);
    ASSERT_TRUE(big != NULL);
    size_t len = 0;
    for (unsigned i = 0; len < cap; i++) {
        len += (size_t)sprintf(big + len, "I love topic%u. ", i);
    }
    strata_turn t = {STRATA_ROLE_USER, big, len, 0, 1};
    extract_result *r = run_turns(&t, 1);
    ASSERT_TRUE(r != NULL);
    ASSERT_EQ(r->n, EXTRACT_RULES_ITEMS_MAX);
    ASSERT_TRUE(invariant_error(r, &t, 1) == NULL);
    extract_result_free(r);

    /* One 300 KiB word, then a pattern. */
    memset(big, 'a', cap);
    memcpy(big + cap, ". I love tea", 12);
    t.content_len = cap + 12;
    r = run_turns(&t, 1);
    ASSERT_TRUE(r != NULL);
    ASSERT_EQ(r->n, 0);     /* the pattern is past the 256 KiB read */
    extract_result_free(r);
    memcpy(big, "I love ", 7);  /* a giant value: capped */
    t.content_len = 200 * 1024;
    r = run_turns(&t, 1);
    ASSERT_TRUE(r != NULL);
    ASSERT_EQ(r->n, 1);
    ASSERT_TRUE(strlen(r->items[0].value) <= 256);
    ASSERT_TRUE(strlen(r->items[0].content) <= EXTRACT_CONTENT_MAX);
    extract_result_free(r);

    /* A 20k-word sentence with no punctuation, patterns inside. */
    len = 0;
    for (unsigned i = 0; i < 20000; i++) {
        len += (size_t)sprintf(big + len, "%s ", i % 500 == 0 ? "I love hiking" :
                               i % 7 == 0 ? "I" : "word");
    }
    t.content_len = len;
    r = run_turns(&t, 1);
    ASSERT_TRUE(r != NULL);
    ASSERT_TRUE(find(r, "likes", "hiking") != NULL);
    extract_result_free(r);

    /* "I I I I ...", "my my my ...", "I'm I'm ...", "call me call me ...". */
    static const char *const units[] = {"I ", "my ", "I'm ", "call me ", "I'm a ", "I love, "};
    for (size_t u = 0; u < sizeof(units) / sizeof(units[0]); u++) {
        size_t ul = strlen(units[u]);
        len = 0;
        while (len + ul < cap) {
            memcpy(big + len, units[u], ul);
            len += ul;
        }
        t.content_len = len;
        r = run_turns(&t, 1);
        ASSERT_TRUE(r != NULL);
        ASSERT_TRUE(invariant_error(r, &t, 1) == NULL);
        extract_result_free(r);
    }
    free(big);
}

TEST(invalid_utf8)
{
    static const char *const texts[] = {
        "I love caf\xc3 hiking",
        "I love \xff\xfe\xfd",
        "I'm a \xe2\x80 developer at \xf0\x9f\x98 Acme",
        "I\xe2\x80\x99m allergic to \xed\xa0\x80 peanuts",  /* a UTF-16 surrogate */
        "My name is \xc0\xaf",                              /* overlong '/' */
        "I love \xe2\x80\x9c quoted \xe2\x80\x9d things",
        "I live in S\xc3\xa3o Paulo",
        "I love \xe6\x97\xa5\xe6\x9c\xac",
        "\xe2\x80\x99I\xe2\x80\x99 \xe2\x80\x99m\xe2",
        "I love \x01\x02\x03 things",
    };
    for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++) {
        strata_turn t = user_turn(texts[i]);
        extract_result *r = run_turns(&t, 1);
        ASSERT_TRUE(r != NULL);
        const char *inv = invariant_error(r, &t, 1);
        if (inv != NULL) {
            fprintf(stderr, "  \"%s\": %s\n", texts[i], inv);
        }
        ASSERT_TRUE(inv == NULL);
        extract_result_free(r);
    }
    extract_result *r = run1("I live in S\xc3\xa3o Paulo");
    ASSERT_TRUE(r != NULL);
    ASSERT_EQ(r->n, 1);
    ASSERT_STREQ(r->items[0].value, "S\xc3\xa3o Paulo");
    ASSERT_STREQ(r->items[0].entity, "s\xc3\xa3o paulo");
    extract_result_free(r);

    /* Pseudo-random bytes with trigger words mixed in. */
    static const char *const words[] = {"I ", "I'm ", "my ", "love ", "a ", "allergic to ",
                                        "favourite ", "is ", "call me ", "last year ", ", ",
                                        ". ", "? ", "\"", "\xe2\x80\x99", "\xff", "\xc3",
                                        "work at ", "Acme ", "not ", "don't "};
    uint64_t seed = 42;
    char buf[2048];
    for (int round = 0; round < 2000; round++) {
        size_t len = 0;
        while (len < sizeof(buf) - 32) {
            seed = seed * 6364136223846793005ull + 1442695040888963407ull;
            unsigned pick = (unsigned)(seed >> 33);
            if (pick % 5 == 0) {
                buf[len++] = (char)(pick >> 8);
            } else {
                const char *w = words[(pick >> 3) % (sizeof(words) / sizeof(words[0]))];
                memcpy(buf + len, w, strlen(w));
                len += strlen(w);
            }
            if ((pick >> 20) % 40 == 0) {
                break;
            }
        }
        strata_turn t = {STRATA_ROLE_USER, buf, len, 0, 1};
        extract_result *rr = run_turns(&t, 1);
        ASSERT_TRUE(rr != NULL);
        const char *inv = invariant_error(rr, &t, 1);
        ASSERT_TRUE(inv == NULL);
        extract_result_free(rr);
    }
}

TEST(alloc_failures)
{
    strata_turn turns[] = {
        user_turn("I'm a senior developer at Acme. I love hiking, swimming and jazz."),
        user_turn("I was promoted, I'm a team lead now. I'm allergic to peanuts."),
        user_turn("My budget is $300 and I went to Rome last week. Call me Sam."),
    };
    extractor *x = NULL;
    ASSERT_OK(extractor_rules_create(&x));
    bool done = false;
    for (long n = 0; n < 1000 && !done; n++) {
        extract_result *r = NULL;
        char err[128];
        strata_alloc_fail_after(n);
        int rc = x->ops->extract(x, turns, 3, &r, err, sizeof(err));
        unsigned long used = strata_alloc_count();
        strata_alloc_fail_after(-1);
        if (rc == STRATA_OK) {
            ASSERT_TRUE(r != NULL);
            done = used <= (unsigned long)n;    /* no allocation failed: all paths seen */
            if (done) {
                ASSERT_EQ(r->n, 10);
            }
            extract_result_free(r);
        } else {
            ASSERT_EQ(rc, STRATA_ENOMEM);
            ASSERT_TRUE(r == NULL);
        }
    }
    ASSERT_TRUE(done);
    extractor_free(x);
    strata_alloc_fail_after(0);
    ASSERT_EQ(extractor_rules_create(&x), STRATA_ENOMEM);
    strata_alloc_fail_after(-1);
    ASSERT_TRUE(x == NULL);
}

TEST(attribute_multi)
{
    ASSERT_TRUE(extract_attribute_multi("likes"));
    ASSERT_TRUE(extract_attribute_multi("allergy"));
    ASSERT_TRUE(extract_attribute_multi("avoids"));
    ASSERT_TRUE(extract_attribute_multi("language"));
    ASSERT_TRUE(!extract_attribute_multi("role"));
    ASSERT_TRUE(!extract_attribute_multi("employer"));
    ASSERT_TRUE(!extract_attribute_multi("favorite_food"));
    ASSERT_TRUE(!extract_attribute_multi("like"));
    ASSERT_TRUE(!extract_attribute_multi(""));
    ASSERT_TRUE(!extract_attribute_multi(NULL));
}

/* ---- throughput (printed; the bound is loose so sanitizers pass) -------- */

TEST(throughput)
{
    static const char *const mix[] = {
        "I love hiking in the mountains.", "What time is it in Tokyo?",
        "I'm a senior developer at Acme.", "Can you summarise this article for me?",
        "I'm allergic to peanuts.", "The weather was nice yesterday.",
        "I went to Japan last year.", "Please write a haiku about autumn.",
        "My favourite food is sushi.", "Thanks, that helps a lot.",
    };
    enum { N_MIX = sizeof(mix) / sizeof(mix[0]), BATCHES = 3000 };
    strata_turn turns[N_MIX];
    for (size_t i = 0; i < N_MIX; i++) {
        turns[i] = user_turn(mix[i]);
    }
    extractor *x = NULL;
    ASSERT_OK(extractor_rules_create(&x));
    struct timespec t0;
    struct timespec t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    size_t found = 0;
    for (int b = 0; b < BATCHES; b++) {
        extract_result *r = NULL;
        ASSERT_OK(x->ops->extract(x, turns, N_MIX, &r, NULL, 0));
        found += r->n;
        extract_result_free(r);
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    extractor_free(x);
    double s = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    double rate = (double)BATCHES * N_MIX / s;
    printf("  rules extractor: %.0f sentences/s (%zu candidates)\n", rate, found);
    ASSERT_EQ(found, (size_t)BATCHES * 6);
    ASSERT_TRUE(rate > 5000.0);
}

TEST_MAIN(TEST_ENTRY(table), TEST_ENTRY(nothing), TEST_ENTRY(promotion_conversation),
          TEST_ENTRY(confidence), TEST_ENTRY(importance),
          TEST_ENTRY(change_carries_to_next_sentence), TEST_ENTRY(merge_duplicates),
          TEST_ENTRY(several_sentences_in_a_turn), TEST_ENTRY(only_user_turns),
          TEST_ENTRY(other_people_and_quotes), TEST_ENTRY(curly_apostrophes),
          TEST_ENTRY(empty_input), TEST_ENTRY(bad_arguments), TEST_ENTRY(content_len_is_respected),
          TEST_ENTRY(very_long_input), TEST_ENTRY(invalid_utf8), TEST_ENTRY(alloc_failures),
          TEST_ENTRY(attribute_multi), TEST_ENTRY(throughput))
