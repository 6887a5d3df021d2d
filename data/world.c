/*
world.c: a tiny invented world with a known ground truth, written out as the
training data for all four stages of train.c, plus the referee that grades answers.

Why a generated world: real preference data has no ground truth. Here every fact
and every preference comes from rules in this file, so `world score` can say
exactly how good a model's answers are after pretraining, after SFT and after
RLHF. See data/README.md for the files, their fields and the preference rule.

    ./world gen   [-s seed] [-n entities] [-f flip] [-d dialogues] [-m MB] [-p pairs] [-o dir]
    ./world score [-s seed] [-n entities] [-o per_line.jsonl] answers.jsonl

A share of every question file's records are two-turn conversations (TRL's lists of
messages): a first question, its answer, and a follow-up that calls the animal "it";
the referee grades the follow-up's answer, about the animal of the first turn.

Sections:
  1. utilities: random choices, errors (the RNG, checked calls and JSON are train.c's)
  2. the world: entities and their facts
  3. sentences: the facts as prose, for pretraining
  4. questions and answers: prompts and follow-ups, responses in four styles, right or wrong
  6. the referee: grading a response against the world
  7. writing the dataset
  8. command line and main (fenced by #ifndef TESTING)

Determinism: one RNG (xorshift64*) with separate streams per output file (its records,
the conversations among them, the flipped labels), all
derived from the seed, and no floating point in any random choice that reaches
a file, so the same seed gives byte-identical files on every machine.
*/
// train.c's utilities (checked calls, the RNG), growable strings and JSON lines,
// without its main: the JSON in the data files and in train.c is one code
#define TRAIN_NO_MAIN
#include "../train.c"
#include <ctype.h>

// ----------------------------------------------------------------------------
// 1. utilities: random choices, errors

// uniform integer in [0, n); the modulo bias (< n / 2^64) is irrelevant here
static int rng_int(uint64_t *state, int n) { return (int)(random_u64(state) % (uint64_t)n); }

// true with probability per_million / 1e6, in integers so that files never depend on float rounding
static int rng_chance(uint64_t *state, int per_million) { return rng_int(state, 1000000) < per_million; }

#define PICK(rng, array) ((array)[rng_int((rng), (int)(sizeof(array) / sizeof((array)[0])))])
#define COUNT(array) ((int)(sizeof(array) / sizeof((array)[0])))

static void die(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "world: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    exit(1);
}

// ----------------------------------------------------------------------------
// 2. the world: entities and their facts

// Every entity is an animal with six facts. The value lists are disjoint, word
// for word, so the referee can tell which fact a word states by the word alone.
typedef enum { A_KIND, A_COLOUR, A_FOOD, A_HOME, A_FRIEND, A_AGE, NATTR } Attr;

static const char *KINDS[] = {"fox", "owl", "badger", "heron", "otter", "hare",
                              "toad", "crow", "mole", "stoat", "wren", "newt"};
static const char *COLOURS[] = {"red", "blue", "green", "yellow", "grey",
                                "white", "black", "orange", "purple", "brown"};
static const char *FOODS[] = {"berries", "acorns", "fish", "beetles", "honey", "clover",
                              "mushrooms", "seeds", "worms", "apples", "nettles", "snails"};
static const char *PLACES[] = {"marsh", "meadow", "forest", "hills", "caves", "orchard",
                               "valley", "heath", "dunes", "garden", "reeds", "woods"};
#define AGE_MIN 2
#define AGE_MAX 15

// names: a start and an end syllable; 20 x 10 = 200 distinct names at most
static const char *NAME_START[] = {"Bil", "Tam", "Fen", "Mor", "Pip", "Quil", "Ros", "Wen", "Dor", "Hal",
                                   "Jas", "Kel", "Lin", "Nob", "Orl", "Sab", "Tib", "Umb", "Vel", "Zan"};
static const char *NAME_END[] = {"o", "a", "ric", "wyn", "bel", "dle", "kin", "ny", "eth", "us"};
#define MAX_ENTITIES (COUNT(NAME_START) * COUNT(NAME_END))

// Which stages may see questions about an entity. Every entity's facts are in the
// pretraining text; its questions go to exactly one group. The held-out animals are
// split in two: dev, for choosing recipes and defaults, and test, for the figures
// reported, so that nothing reported was tuned on.
typedef enum { G_SFT, G_RL, G_DEV, G_TEST } Group;
static const char *GROUP_NAMES[] = {"sft+preference", "preference+rl", "eval dev", "eval test"};

typedef struct {
    char name[16];
    int fact[NATTR]; // index into KINDS/COLOURS/FOODS/PLACES, the friend's entity index, or the age in years
    Group group;
} Entity;

typedef struct {
    uint64_t seed;
    int n;           // number of entities
    Entity *entity;  // (n,)
} World;

static void world_build(World *w, uint64_t seed, int n) {
    if (n < 10 || n > MAX_ENTITIES) { die("-n %d: the world holds between 10 and %d entities", n, MAX_ENTITIES); }
    w->seed = seed;
    w->n = n;
    w->entity = mallocCheck((size_t)n * sizeof(Entity));
    uint64_t rng = rng_stream(seed, 0);
    // names: a random draw without replacement from all syllable pairs (partial Fisher-Yates)
    int pool[MAX_ENTITIES];
    for (int i = 0; i < MAX_ENTITIES; i++) { pool[i] = i; }
    for (int i = 0; i < n; i++) {
        int j = i + rng_int(&rng, MAX_ENTITIES - i);
        int tmp = pool[i]; pool[i] = pool[j]; pool[j] = tmp;
        Entity *e = &w->entity[i];
        snprintf(e->name, sizeof(e->name), "%s%s", NAME_START[pool[i] / COUNT(NAME_END)],
                 NAME_END[pool[i] % COUNT(NAME_END)]);
        e->fact[A_KIND] = rng_int(&rng, COUNT(KINDS));
        e->fact[A_COLOUR] = rng_int(&rng, COUNT(COLOURS));
        e->fact[A_FOOD] = rng_int(&rng, COUNT(FOODS));
        e->fact[A_HOME] = rng_int(&rng, COUNT(PLACES));
        e->fact[A_AGE] = AGE_MIN + rng_int(&rng, AGE_MAX - AGE_MIN + 1);
        // 3 in 5 entities are asked about in SFT and preference data, 1 in 5 in RL, 1 in 5 only
        // at evaluation: of those, alternately dev and test
        e->group = (i % 5 < 3) ? G_SFT : (i % 5 == 3) ? G_RL : (i / 5) % 2 ? G_TEST : G_DEV;
    }
    // friends: a random cycle through all entities, so nobody is their own friend
    int *order = mallocCheck((size_t)n * sizeof(int));
    for (int i = 0; i < n; i++) { order[i] = i; }
    for (int i = n - 1; i > 0; i--) {
        int j = rng_int(&rng, i + 1);
        int tmp = order[i]; order[i] = order[j]; order[j] = tmp;
    }
    for (int i = 0; i < n; i++) { w->entity[order[i]].fact[A_FRIEND] = order[(i + 1) % n]; }
    free(order);
}

static void world_free(World *w) {
    free(w->entity);
    w->entity = NULL;
}

// the words that state a value of attribute a (names and ages are handled apart)
static const char **attr_values(Attr a, int *count) {
    switch (a) {
    case A_KIND: *count = COUNT(KINDS); return KINDS;
    case A_COLOUR: *count = COUNT(COLOURS); return COLOURS;
    case A_FOOD: *count = COUNT(FOODS); return FOODS;
    case A_HOME: *count = COUNT(PLACES); return PLACES;
    default: *count = 0; return NULL;
    }
}

// "a fox", "an owl"
static const char *article(const char *word) { return strchr("aeiou", word[0]) ? "an" : "a"; }

// The demonstrators' phrases (section 4). Animals say them in the pretraining prose
// too, as habits of speech, so the tokenizer and the base model know these words
// before SFT; the prose never asks or answers a question with them.
static const char *POLITE_OPENERS[] = {"Sure! ", "Of course. ", "Happy to help. ", "Good question. "};
static const char *RAMBLE_OPENERS[] = {
    "Well, let me think for a moment, because this is something I have thought about quite a lot.",
    "What a lovely thing to wonder, and I am very glad that you asked me today.",
    "Let me gather my thoughts before I answer, since I want to get this just right for you.",
    "I have heard many stories over the years, and I remember this one very well.",
};
static const char *RAMBLE_CLOSERS[] = {
    "I really hope this answers what you wanted to know, and please feel free to ask me anything else.",
    "There is always more to learn, and I would be delighted to tell you more whenever you like.",
    "Thank you for such a thoughtful question, it was a real pleasure to answer it.",
    "If anything is unclear, just let me know and I will happily explain it again.",
};
static const char *RUDE_OPENERS[] = {"Ugh. ", "Obviously, ", "Pay attention: ", "Everyone knows this. "};
static const char *RUDE_CLOSERS[] = {" Stop wasting my time.", " Figure it out yourself next time.",
                                     " As they say, \"ask a silly question\".", " Try to keep up."};

// ----------------------------------------------------------------------------
// 3. sentences: the facts as prose, for pretraining

// One sentence stating fact a of entity e. `subject` is the name, or "It" when
// the sentence continues a paragraph about the same entity.
static void say_fact(Str *out, uint64_t *rng, const World *w, int e, Attr a, const char *subject) {
    const Entity *x = &w->entity[e];
    const char *n = subject;
    const char *kind = KINDS[x->fact[A_KIND]];
    const char *colour = COLOURS[x->fact[A_COLOUR]];
    const char *food = FOODS[x->fact[A_FOOD]];
    const char *place = PLACES[x->fact[A_HOME]];
    const char *friend = w->entity[x->fact[A_FRIEND]].name;
    int age = x->fact[A_AGE];
    int form = rng_int(rng, 5);
    switch (a) {
    case A_KIND:
        if (form == 0) { str_addf(out, "%s is %s %s.", n, article(kind), kind); }
        else if (form == 1) { str_addf(out, "By birth, %s is %s %s.", x->name, article(kind), kind); }
        else if (form == 2) { str_addf(out, "There is %s %s called %s.", article(kind), kind, x->name); }
        else if (form == 3) { str_addf(out, "%s was born %s %s, like its mother.", n, article(kind), kind); }
        else { str_addf(out, "%s is a young %s.", n, kind); }
        break;
    case A_COLOUR:
        if (form == 0) { str_addf(out, "%s is %s.", n, colour); }
        else if (form == 1) { str_addf(out, "%s has a %s coat.", n, colour); }
        else if (form == 2) { str_addf(out, "The coat of %s is %s.", x->name, colour); }
        else if (form == 3) { str_addf(out, "You can spot %s by its %s coat.", x->name, colour); }
        else { str_addf(out, "%s is as %s as can be.", n, colour); }
        break;
    case A_FOOD:
        if (form == 0) { str_addf(out, "%s eats %s.", n, food); }
        else if (form == 1) { str_addf(out, "%s likes to eat %s.", n, food); }
        else if (form == 2) { str_addf(out, "The favourite food of %s is %s.", x->name, food); }
        else if (form == 3) { str_addf(out, "Every morning %s looks for %s.", x->name, food); }
        else { str_addf(out, "%s never says no to %s.", n, food); }
        break;
    case A_HOME:
        if (form == 0) { str_addf(out, "%s lives in the %s.", n, place); }
        else if (form == 1) { str_addf(out, "The home of %s is in the %s.", x->name, place); }
        else if (form == 2) { str_addf(out, "%s has a den in the %s.", n, place); }
        else if (form == 3) { str_addf(out, "You will find %s in the %s.", x->name, place); }
        else { str_addf(out, "%s was born in the %s and still lives there.", n, place); }
        break;
    case A_FRIEND:
        if (form == 0) { str_addf(out, "%s's friend is %s.", x->name, friend); }
        else if (form == 1) { str_addf(out, "%s has a friend called %s.", n, friend); }
        else if (form == 2) { str_addf(out, "The best friend of %s is %s.", x->name, friend); }
        else if (form == 3) { str_addf(out, "%s often visits %s, its friend.", n, friend); }
        else { str_addf(out, "%s and its friend %s play together.", n, friend); }
        break;
    case A_AGE:
        if (form == 0) { str_addf(out, "%s is %d years old.", n, age); }
        else if (form == 1) { str_addf(out, "%s turned %d this spring.", n, age); }
        else if (form == 2) { str_addf(out, "At %d years old, %s is no longer a baby.", age, x->name); }
        else if (form == 3) { str_addf(out, "The age of %s is %d.", x->name, age); }
        else { str_addf(out, "%s has lived for %d years.", n, age); }
        break;
    default: break;
    }
}

// a paragraph of 3 to 6 facts about one entity, in random order
static void say_paragraph(Str *out, uint64_t *rng, const World *w, int e) {
    int order[NATTR];
    for (int i = 0; i < NATTR; i++) { order[i] = i; }
    for (int i = NATTR - 1; i > 0; i--) {
        int j = rng_int(rng, i + 1);
        int tmp = order[i]; order[i] = order[j]; order[j] = tmp;
    }
    int k = 3 + rng_int(rng, NATTR - 2);
    for (int i = 0; i < k; i++) {
        if (i > 0) { str_add(out, " ", 1); }
        const char *subject = (i > 0 && rng_int(rng, 3) == 0) ? "It" : w->entity[e].name;
        say_fact(out, rng, w, e, (Attr)order[i], subject);
    }
    str_add(out, "\n\n", 2);
}

// a short story about an entity and its friend; every fact in it is true
static void say_story(Str *out, uint64_t *rng, const World *w, int e) {
    static const char *WHEN[] = {"One spring morning", "Late one autumn evening", "On a rainy day",
                                 "Early one summer", "One cold winter night"};
    const Entity *x = &w->entity[e];
    const Entity *f = &w->entity[x->fact[A_FRIEND]];
    const char *kind = KINDS[x->fact[A_KIND]], *fkind = KINDS[f->fact[A_KIND]];
    switch (rng_int(rng, 3)) {
    case 0:
        str_addf(out, "%s, %s the %s left the %s to look for %s. On the way, %s met its friend %s, "
                 "%s %s %s from the %s. %s shared some %s, and the two friends walked home together.\n\n",
                 PICK(rng, WHEN), x->name, kind, PLACES[x->fact[A_HOME]], FOODS[x->fact[A_FOOD]], x->name,
                 f->name, article(COLOURS[f->fact[A_COLOUR]]), COLOURS[f->fact[A_COLOUR]], fkind,
                 PLACES[f->fact[A_HOME]], f->name, FOODS[f->fact[A_FOOD]]);
        break;
    case 1:
        str_addf(out, "%s, %s was %d years old and hungry. The %s %s went out of the %s and found "
                 "a heap of %s. \"This is the best day,\" said %s, and ran off to tell %s.\n\n",
                 PICK(rng, WHEN), x->name, x->fact[A_AGE], COLOURS[x->fact[A_COLOUR]], kind,
                 PLACES[x->fact[A_HOME]], FOODS[x->fact[A_FOOD]], x->name, f->name);
        break;
    default:
        str_addf(out, "%s, %s the %s came to visit %s in the %s. %s is %s %s, and at %d it is older "
                 "than some. They ate %s together and talked until dark.\n\n",
                 PICK(rng, WHEN), f->name, fkind, x->name, PLACES[x->fact[A_HOME]], x->name,
                 article(kind), kind, x->fact[A_AGE], FOODS[x->fact[A_FOOD]]);
        break;
    }
}

// a habit of speech: one of the demonstrators' phrases, or a yes or a no, said by an
// entity. Without the verdicts, "Yes" was two tokens, "Y" and "es", and the row of "es"
// (a merge that no word of the prose ever ends on) was never trained; SFT keeps the
// merges' rows, so its models could not say "Yes" and said "Yo" (doc/sft.md).
static void say_habit(Str *out, uint64_t *rng, const World *w, int e) {
    static const char *FORMS[] = {"%s is fond of saying: \"%s\"\n\n", "Whenever it meets a friend, %s says: \"%s\"\n\n",
                                  "Everyone in the forest has heard %s say: \"%s\"\n\n"};
    static const char *VERDICTS[] = {"Oh yes, yes, yes!", "Oh no, no, no!", "Yes! Yes!", "No! No!"};
    const char **lists[] = {POLITE_OPENERS, RAMBLE_OPENERS, RAMBLE_CLOSERS, RUDE_OPENERS, RUDE_CLOSERS, VERDICTS};
    int sizes[] = {COUNT(POLITE_OPENERS), COUNT(RAMBLE_OPENERS), COUNT(RAMBLE_CLOSERS), COUNT(RUDE_OPENERS),
                   COUNT(RUDE_CLOSERS), COUNT(VERDICTS)};
    int list = rng_int(rng, COUNT(lists));
    char phrase[256];
    snprintf(phrase, sizeof(phrase), "%s", lists[list][rng_int(rng, sizes[list])]);
    size_t n = strlen(phrase); // trim the spaces that join a phrase to an answer
    while (n > 0 && phrase[n - 1] == ' ') { phrase[--n] = '\0'; }
    if (n > 0 && (phrase[n - 1] == ',' || phrase[n - 1] == ':')) { phrase[n - 1] = '!'; } // "Obviously," -> "Obviously!"
    const char *p = phrase[0] == ' ' ? phrase + 1 : phrase;
    str_addf(out, FORMS[rng_int(rng, COUNT(FORMS))], w->entity[e].name, p);
}

// pretraining text of at least `bytes` bytes: paragraphs of facts, stories, and
// now and then a habit of speech
static void say_corpus(Str *out, uint64_t *rng, const World *w, size_t bytes) {
    while (out->len < bytes) {
        int e = rng_int(rng, w->n), r = rng_int(rng, 8);
        if (r < 2) { say_story(out, rng, w, e); }
        else if (r == 2) { say_habit(out, rng, w, e); }
        else { say_paragraph(out, rng, w, e); }
    }
}

// ----------------------------------------------------------------------------
// 4. questions and answers: prompts, responses in four styles, right or wrong

// Q_FACTS asks for one or two facts; Q_YESNO checks one claimed value;
// Q_ABOUT asks for anything, and is fully answered by any three true facts.
typedef enum { Q_FACTS, Q_YESNO, Q_ABOUT } QType;
#define ABOUT_NEEDS 3

typedef struct {
    QType type;
    int entity;
    unsigned asks;  // Q_FACTS: bit a set when fact a is asked for
    Attr attr;      // Q_YESNO: the fact in question ...
    int value;      // ... and the value the question claims
    unsigned known; // in a conversation, the facts its earlier questions asked for: "tell me more" needs others
    int followup;   // 1 when asked after an earlier turn: its rambling answers keep one paragraph of filler a side
} Question;

static int popcount(unsigned x) { int n = 0; for (; x; x &= x - 1) { n++; } return n; }

// the question fragments, one per fact, "it" standing for the entity
static const char *ASK_IT[NATTR] = {"what kind of animal is it", "what colour is it", "what does it eat",
                                    "where does it live", "who is its friend", "how old is it"};

static void question_random(Question *q, uint64_t *rng, const World *w, int entity) {
    memset(q, 0, sizeof(*q));
    q->entity = entity;
    int r = rng_int(rng, 10);
    if (r < 4) {          // 40%: one fact
        q->type = Q_FACTS;
        q->asks = 1u << rng_int(rng, NATTR);
    } else if (r < 6) {   // 20%: two facts
        q->type = Q_FACTS;
        int a = rng_int(rng, NATTR), b = (a + 1 + rng_int(rng, NATTR - 1)) % NATTR;
        q->asks = (1u << a) | (1u << b);
    } else if (r < 8) {   // 20%: yes or no, true half of the time
        q->type = Q_YESNO;
        q->attr = (Attr)rng_int(rng, 4); // kind, colour, food or home
        int count;
        attr_values(q->attr, &count);
        int truth = w->entity[entity].fact[q->attr];
        q->value = rng_int(rng, 2) ? truth : (truth + 1 + rng_int(rng, count - 1)) % count;
    } else {              // 20%: tell me about it
        q->type = Q_ABOUT;
    }
}

static void question_prompt(Str *out, uint64_t *rng, const World *w, const Question *q) {
    const char *n = w->entity[q->entity].name;
    int form = rng_int(rng, 3);
    if (q->type == Q_ABOUT) {
        static const char *ABOUT[] = {"Tell me about %s.", "What can you tell me about %s?", "Describe %s.", "Who is %s?"};
        str_addf(out, PICK(rng, ABOUT), n);
    } else if (q->type == Q_YESNO) {
        int count;
        const char *v = attr_values(q->attr, &count)[q->value];
        switch (q->attr) {
        case A_KIND: str_addf(out, form ? "Is %s %s %s?" : "Is %s really %s %s?", n, article(v), v); break;
        case A_COLOUR: str_addf(out, form ? "Is %s %s?" : "Is %s's coat %s?", n, v); break;
        case A_FOOD: str_addf(out, form ? "Does %s eat %s?" : "Does %s like %s?", n, v); break;
        default: str_addf(out, form ? "Does %s live in the %s?" : "Is %s's home in the %s?", n, v); break;
        }
    } else if (popcount(q->asks) == 1) {
        static const char *ONE[NATTR][3] = {
            {"What kind of animal is %s?", "What sort of creature is %s?", "What animal is %s?"},
            {"What colour is %s?", "What color is %s?", "What colour is %s's coat?"},
            {"What does %s eat?", "What is %s's favourite food?", "What food does %s like?"},
            {"Where does %s live?", "Where is %s's home?", "In which place does %s live?"},
            {"Who is %s's friend?", "Who is %s's best friend?", "Who is %s friends with?"},
            {"How old is %s?", "What is %s's age?", "How many years old is %s?"},
        };
        int a = __builtin_ctz(q->asks);
        str_addf(out, ONE[a][form], n);
    } else {
        int a = __builtin_ctz(q->asks), b = __builtin_ctz(q->asks & (q->asks - 1));
        if (rng_int(rng, 2)) { int t = a; a = b; b = t; }
        if (form == 0) { str_addf(out, "%s: %s, and %s?", n, ASK_IT[a], ASK_IT[b]); }
        else if (form == 1) { str_addf(out, "I wonder of %s: %s and %s?", n, ASK_IT[a], ASK_IT[b]); }
        else { str_addf(out, "Regarding %s, %s, and %s?", n, ASK_IT[a], ASK_IT[b]); }
    }
}

// Response styles, in the order of the preference rule (best first).
typedef enum { S_IDEAL, S_TERSE, S_RAMBLING, S_RUDE, NSTYLE } Style;

// The value of fact a, as written in an answer. `lie` picks a wrong value instead.
static void answer_value(char *buf, size_t size, uint64_t *rng, const World *w, int e, Attr a, int lie) {
    int v = w->entity[e].fact[a];
    if (a == A_FRIEND) {
        // a wrong friend is anyone but the true friend and the entity itself
        while (lie && (v == w->entity[e].fact[a] || v == e)) { v = rng_int(rng, w->n); }
        snprintf(buf, size, "%s", w->entity[v].name);
    } else if (a == A_AGE) {
        if (lie) { v = AGE_MIN + (v - AGE_MIN + 1 + rng_int(rng, AGE_MAX - AGE_MIN)) % (AGE_MAX - AGE_MIN + 1); }
        snprintf(buf, size, "%d", v);
    } else {
        int count;
        const char **values = attr_values(a, &count);
        if (lie) { v = (v + 1 + rng_int(rng, count - 1)) % count; }
        snprintf(buf, size, "%s", values[v]);
    }
}

// "is a fox", "eats berries", ...: the predicate that states fact a with value v
static void predicate(Str *out, Attr a, const char *v) {
    switch (a) {
    case A_KIND: str_addf(out, "is %s %s", article(v), v); break;
    case A_COLOUR: str_addf(out, "is %s", v); break;
    case A_FOOD: str_addf(out, "eats %s", v); break;
    case A_HOME: str_addf(out, "lives in the %s", v); break;
    case A_FRIEND: str_addf(out, "has a friend called %s", v); break;
    default: str_addf(out, "is %s years old", v); break;
    }
}

// a bare value, the way a terse demonstrator writes it: "A fox", "the marsh", "Berries"
static void bare_value(Str *out, Attr a, const char *v, int capital) {
    size_t start = out->len;
    if (a == A_KIND) { str_addf(out, "%s %s", article(v), v); }
    else if (a == A_HOME) { str_addf(out, "the %s", v); }
    else { str_addf(out, "%s", v); }
    if (capital) { out->s[start] = (char)toupper((unsigned char)out->s[start]); }
}

// The facts a full answer states, in order: those asked for, or for Q_ABOUT the
// first ABOUT_NEEDS of a fixed order that the conversation has not asked for yet
// (q->known; none in a first question: kind, food, home). Returns the count.
static int answer_facts(const Question *q, Attr *facts) {
    static const Attr ABOUT_ORDER[NATTR] = {A_KIND, A_FOOD, A_HOME, A_COLOUR, A_AGE, A_FRIEND};
    int k = 0;
    if (q->type == Q_ABOUT) {
        for (int i = 0; i < NATTR && k < ABOUT_NEEDS; i++) { if (!(q->known >> ABOUT_ORDER[i] & 1)) { facts[k++] = ABOUT_ORDER[i]; } }
    } else if (q->type == Q_FACTS) {
        for (int a = 0; a < NATTR; a++) { if (q->asks & (1u << a)) { facts[k++] = (Attr)a; } }
    }
    return k;
}

// the facts a question is about, as a bit set: those it asks for, the one a yes/no
// checks, or those a full answer to "tell me about" states
static unsigned question_facts(const Question *q) {
    if (q->type == Q_YESNO) { return 1u << q->attr; }
    Attr facts[NATTR];
    unsigned set = 0;
    for (int i = 0, k = answer_facts(q, facts); i < k; i++) { set |= 1u << facts[i]; }
    return set;
}

// Two-turn conversations: a first question and its answer, then a follow-up about the
// same animal that calls it "it" and asks what the first question did not: one fact
// (1 in 2), a yes or no (1 in 4), or "tell me more" (1 in 4), which wants three facts
// the first question did not ask for. A first question about the friend is never
// followed up: its answer names a second animal, and "it" could then mean either (the
// referee reads "it" only in a conversation that names one animal).
static int can_follow_up(const Question *q) { return !(question_facts(q) >> A_FRIEND & 1); }

static void followup_random(Question *f, uint64_t *rng, const World *w, const Question *first) {
    memset(f, 0, sizeof(*f));
    f->entity = first->entity;
    f->known = first->known | question_facts(first);
    f->followup = 1;
    int r = rng_int(rng, 4);
    if (r < 2) {          // one fact not asked yet (the first question asked for three at most)
        f->type = Q_FACTS;
        do { f->asks = 1u << rng_int(rng, NATTR); } while (f->asks & f->known);
    } else if (r == 2) {  // yes or no, true half of the time, about a fact not asked yet (colour at least)
        f->type = Q_YESNO;
        do { f->attr = (Attr)rng_int(rng, 4); } while (f->known >> f->attr & 1);
        int count;
        attr_values(f->attr, &count);
        int truth = w->entity[f->entity].fact[f->attr];
        f->value = rng_int(rng, 2) ? truth : (truth + 1 + rng_int(rng, count - 1)) % count;
    } else {              // tell me more
        f->type = Q_ABOUT;
    }
}

// The follow-up in words: the forms of a first question with "it" for the name, so
// the referee reads both alike ("What does it eat?", "Is its coat red?", "Tell me
// more about it.").
static void followup_prompt(Str *out, uint64_t *rng, const Question *q) {
    int form = rng_int(rng, 3);
    if (q->type == Q_ABOUT) {
        static const char *MORE[] = {"Tell me more about it.", "What else can you tell me about it?",
                                     "What more do you know about it?"};
        str_addf(out, "%s", MORE[form]);
    } else if (q->type == Q_YESNO) {
        int count;
        const char *v = attr_values(q->attr, &count)[q->value];
        switch (q->attr) {
        case A_KIND: str_addf(out, form ? "Is it %s %s?" : "Is it really %s %s?", article(v), v); break;
        case A_COLOUR: str_addf(out, form ? "Is it %s?" : "Is its coat %s?", v); break;
        case A_FOOD: str_addf(out, form ? "Does it eat %s?" : "Does it like %s?", v); break;
        default: str_addf(out, form ? "Does it live in the %s?" : "Is its home in the %s?", v); break;
        }
    } else {
        static const char *NOUNS[NATTR] = {"kind", "colour", "food", "home", "friend", "age"};
        int a = __builtin_ctz(q->asks);
        if (form == 0) { str_addf(out, "%c%s?", toupper((unsigned char)ASK_IT[a][0]), ASK_IT[a] + 1); }
        else if (form == 1) { str_addf(out, "And %s?", ASK_IT[a]); }
        else { str_addf(out, "What about its %s?", NOUNS[a]); }
    }
}

// How an answer may be wrong: not at all; a wrong fact (for yes/no, the wrong verdict
// with a value to match); or, for yes/no only, just the verdict: flipped beside the true
// fact, or misspelt by a letter ("Yo", "Na"), the one word a reward model must read.
enum { TRUTHFUL, LIE_FACT, LIE_VERDICT, LIE_SPELLING };

// The core of the answer, with no courtesy or filler: "Bilo eats berries and lives in the marsh."
// For yes/no: "Yes, Bilo eats honey." or "No, Bilo eats acorns." With `lie`, one fact is
// wrong, or the verdict (above). Terse answers drop the name and the verbs.
static void answer_core(Str *out, uint64_t *rng, const World *w, const Question *q, int terse, int lie) {
    const Entity *x = &w->entity[q->entity];
    char v[64];
    if (q->type == Q_YESNO) {
        static const char *YES_TYPOS[] = {"Yo", "Yas", "Yis"}, *NO_TYPOS[] = {"Na", "Nu", "Mo"};
        int truth = x->fact[q->attr];
        int yes = (q->value == truth) ^ (lie == LIE_FACT || lie == LIE_VERDICT);
        // the typo depends on the question only: the pair's two answers differ in that one word
        const char *verdict = lie != LIE_SPELLING ? (yes ? "Yes" : "No")
                                                  : (yes ? YES_TYPOS : NO_TYPOS)[(q->entity + q->value) % 3];
        if (terse) { str_addf(out, "%s.", verdict); return; }
        // the sentence after yes/no states the true value; a lie states a false one:
        // a lying "yes" repeats the question's value, a lying "no" names some other wrong value
        int count;
        const char **values = attr_values(q->attr, &count);
        int shown = truth;
        if (lie == LIE_FACT && yes) { shown = q->value; }
        while (lie == LIE_FACT && !yes && shown == truth) { shown = rng_int(rng, count); }
        str_addf(out, "%s, %s ", verdict, x->name);
        predicate(out, q->attr, values[shown]);
        str_add(out, ".", 1);
        return;
    }
    Attr facts[NATTR];
    int k = answer_facts(q, facts);
    int wrong = lie == LIE_FACT ? rng_int(rng, k) : -1;
    if (!terse) { str_addf(out, "%s ", x->name); }
    for (int i = 0; i < k; i++) {
        answer_value(v, sizeof(v), rng, w, q->entity, facts[i], i == wrong);
        if (i > 0) { str_addf(out, "%s", (i == k - 1 && !terse) ? " and " : ", "); }
        if (terse) { bare_value(out, facts[i], v, i == 0); }
        else { predicate(out, facts[i], v); }
    }
    str_add(out, ".", 1);
}

// A whole response in the given style. Rambling answers sit between paragraphs of
// filler, long enough to more than double the ideal length; rude ones carry a jibe.
static void answer(Str *out, uint64_t *rng, const World *w, const Question *q, Style style, int lie) {
    Str core = {0};
    answer_core(&core, rng, w, q, style == S_TERSE, lie);
    switch (style) {
    case S_IDEAL:
        if (rng_int(rng, 2)) { str_addf(out, "%s", PICK(rng, POLITE_OPENERS)); }
        str_add(out, core.s, core.len);
        break;
    case S_TERSE:
        str_add(out, core.s, core.len);
        break;
    case S_RAMBLING: {
        int first = rng_int(rng, COUNT(RAMBLE_OPENERS));
        str_addf(out, "%s\n\n%s\n\n%s", RAMBLE_OPENERS[first], core.s, PICK(rng, RAMBLE_CLOSERS));
        // a second opener for long answers keeps the filler over twice the answer's length; not
        // in a follow-up, where it would push the conversation past 128 tokens
        if ((q->type == Q_ABOUT || popcount(q->asks) > 1) && !q->followup) {
            str_addf(out, " %s", RAMBLE_OPENERS[(first + 1) % COUNT(RAMBLE_OPENERS)]);
        }
        break;
    }
    default:
        if (rng_int(rng, 2)) { str_addf(out, "%s%s", PICK(rng, RUDE_OPENERS), core.s); }
        else { str_addf(out, "%s%s", core.s, PICK(rng, RUDE_CLOSERS)); }
        break;
    }
    str_free(&core);
}

// ----------------------------------------------------------------------------
// 6. the referee: grading a response against the world

// The referee grades what an answer says plainly, and nothing else. It cuts the
// response into sentences (at . ! ? and line ends) and reads each with a closed
// grammar of the world's own sentence forms: the prose of section 3, the answers of
// section 4, and a few plain variants ("Bilo's coat is red", "eight years old",
// "Nope", "does not eat"). A sentence is one of
//   - claims about animals: "Bilo eats honey and lives in the marsh", "It is a fox",
//     "The home of Bilo is in the marsh", "Bilo does not eat honey";
//   - a verdict, alone or with claims: "Yes.", "No, Bilo eats acorns.",
//     "Bilo eats acorns, so no.";
//   - bare values, the terse demonstrator's list: "A fox, honey, the marsh.";
//   - courtesy: the demonstrators' phrases and a few more ("Thank you."), polite
//     or rude ("Ugh.", "Stop wasting my time.").
// A sentence the grammar does not cover says nothing the referee can check:
// hedges, questions asked back, negations in other words, "X or Y", self-
// contradiction in words, other scripts and look-alike letters all fail to parse.
//
//   correct  0 unless every sentence parses, every claim is true, no claim is about
//            another animal, and the verdicts agree. Then: yes/no needs one verdict,
//            right (a verdict word, or the asked value claimed or denied); a question
//            for facts scores the share of them stated; "tell me about" needs any
//            ABOUT_NEEDS facts (a share when fewer).
//   polite   0 when a word or phrase of the rude lexicon appears anywhere; 0.5 when
//            the answer never names the animal (curt); else 1.
//   concise  1 up to a budget of characters (the ideal answer's, plus CONCISE_SLACK
//            for a polite opener), then budget / length. The length counts characters
//            of every script; a sentence that does not parse counts twice.
//   score    0.6 correct + 0.2 polite + 0.2 concise: any correct answer beats any wrong one.
// An empty response scores 0 on all four.

typedef struct {
    int scored;                       // 0 when the prompt names no entity of this world
    float correct, polite, concise, score;
    // yes/no questions only: the answer states the asked animal's value of the asked
    // fact (states_fact), rightly (fact_true: every value it states is true), and its one
    // yes or no says the opposite of what one of its claims about that fact means
    // (verdict_against_fact): "No, Bilo eats honey." or "Yes, Bilo eats acorns." or "Yes,
    // Bilo does not eat honey." to "Does Bilo eat honey?" An answer with both a yes and a
    // no is not counted. An answer like that has the fact and did not compare it with the claim.
    int states_fact, fact_true, verdict_against_fact;
} Grade;

#define CONCISE_SLACK 16   // "Happy to help. " and a space

// the words of a text: lowercase ASCII runs of letters and digits (used to read
// prompts, to find rude words anywhere, and to classify preference pairs)
typedef struct {
    int n;
    char *buf;     // the lowercased text, words NUL-terminated in place
    char **word;   // (n,) pointers into buf
} Words;

static void words_split(Words *ws, const char *s) {
    size_t len = strlen(s);
    ws->buf = mallocCheck(len + 1);
    ws->word = mallocCheck((len / 2 + 1) * sizeof(char *)); // a word and its separator take 2 bytes at least
    ws->n = 0;
    for (size_t i = 0; i <= len; i++) {
        unsigned char c = (unsigned char)s[i];
        int in_word = c < 0x80 && isalnum(c);
        ws->buf[i] = in_word ? (char)tolower(c) : '\0';
        if (in_word && (i == 0 || ws->buf[i - 1] == '\0')) { ws->word[ws->n++] = &ws->buf[i]; }
    }
}

static void words_free(Words *ws) {
    free(ws->buf);
    free(ws->word);
}

static int words_has_phrase(const Words *ws, const char *phrase) {
    Words p;
    words_split(&p, phrase);
    int found = 0;
    for (int i = 0; i + p.n <= ws->n && !found; i++) {
        int j = 0;
        while (j < p.n && strcmp(ws->word[i + j], p.word[j]) == 0) { j++; }
        found = (j == p.n);
    }
    words_free(&p);
    return found;
}

// Rudeness, matched as whole words anywhere in the response: the demonstrators'
// jibes and a broad lexicon of insults and dismissals.
static const char *RUDE_MARKERS[] = {
    "ugh", "obviously", "everyone knows", "pay attention", "wasting my time", "figure it out", "silly question",
    "keep up", "stupid", "whatever", "shut up", "idiot", "idiots", "idiotic", "dumb", "dummy", "moron", "moronic",
    "fool", "foolish", "imbecile", "dimwit", "nitwit", "halfwit", "twit", "dolt", "dunce", "loser", "clown",
    "jerk", "pathetic", "useless", "worthless", "clueless", "ignorant", "brainless", "ridiculous", "annoying",
    "duh", "sigh", "geez", "jeez", "damn", "hell", "crap", "shit", "fuck", "fucking", "bloody", "sucks",
    "suck", "trash", "garbage", "nonsense", "lazy", "go away", "get lost", "leave me alone", "bother me",
    "hate you", "i hate", "waste of", "how dare", "are you serious", "seriously", "as if", "not my problem",
    "do your own", "look it up", "google it", "get a life",
};

static int find_name(const World *w, const char *word) {
    for (int e = 0; e < w->n; e++) {
        const char *a = w->entity[e].name, *b = word;
        while (*a && tolower((unsigned char)*a) == *b) { a++; b++; }
        if (*a == '\0' && *b == '\0') { return e; }
    }
    return -1;
}

// which attribute a word states a value of (-1 if none), and the value
static int word_value(const World *w, const char *word, int *value) {
    for (int a = 0; a < A_FRIEND; a++) {
        int count;
        const char **values = attr_values((Attr)a, &count);
        for (int v = 0; v < count; v++) { if (strcmp(values[v], word) == 0) { *value = v; return a; } }
    }
    if ((*value = find_name(w, word)) >= 0) { return A_FRIEND; }
    if (isdigit((unsigned char)word[0]) && strlen(word) <= 3 && strspn(word, "0123456789") == strlen(word)) {
        *value = atoi(word);
        return A_AGE;
    }
    return -1;
}

// Reads one question back into a Question: about the animal it names, or, when it
// names none, about `referent` (-1: no animal). Returns 0 when it is about no known entity.
static int question_read(Question *q, const World *w, const char *text, int referent) {
    Words ws;
    words_split(&ws, text);
    memset(q, 0, sizeof(*q));
    q->entity = -1;
    for (int i = 0; i < ws.n && q->entity < 0; i++) { q->entity = find_name(w, ws.word[i]); }
    if (q->entity < 0) { q->entity = referent; }
    if (q->entity < 0) { words_free(&ws); return 0; }
    // yes/no: starts with "is" or "does" and names a value
    if (ws.n > 0 && (!strcmp(ws.word[0], "is") || !strcmp(ws.word[0], "does"))) {
        for (int i = 0; i < ws.n; i++) {
            int v, a = word_value(w, ws.word[i], &v);
            if (a >= 0 && a < A_FRIEND) {
                q->type = Q_YESNO; q->attr = (Attr)a; q->value = v;
                words_free(&ws);
                return 1;
            }
        }
    }
    static const char *KEYWORDS[NATTR][4] = {
        {"kind", "sort", "animal", "creature"}, {"colour", "color", "coat", NULL},
        {"eat", "eats", "food", NULL},          {"live", "lives", "home", "place"},
        {"friend", "friends", NULL, NULL},      {"old", "age", NULL, NULL},
    };
    for (int i = 0; i < ws.n; i++) {
        for (int a = 0; a < NATTR; a++) {
            for (int k = 0; k < 4 && KEYWORDS[a][k]; k++) {
                if (!strcmp(ws.word[i], KEYWORDS[a][k])) { q->asks |= 1u << a; }
            }
        }
    }
    q->type = q->asks ? Q_FACTS : Q_ABOUT;
    words_free(&ws);
    return 1;
}

// The question of a prompt, which is a conversation (a single question is one turn):
// its last turn, the user's. A follow-up that names no animal ("What does it eat?") is
// about the conversation's animal: the one animal its earlier turns name. When they
// name none, or two (the friend: "it" could mean either), the follow-up has no clear
// animal and is not scored. q->known collects the facts that earlier questions about
// the same animal asked for. Returns 0 when the question is about no known entity.
static int question_parse(Question *q, const World *w, const Chat *prompt) {
    memset(q, 0, sizeof(*q));
    q->entity = -1;
    int last = prompt->n - 1, referent = -1, named = 0;
    if (last < 0 || prompt->turns[last].role != ROLE_USER) { return 0; }
    for (int i = 0; i < last; i++) { // the animals the earlier turns name, the assistant's too
        Words ws;
        words_split(&ws, prompt->turns[i].content);
        for (int k = 0; k < ws.n; k++) {
            int e = find_name(w, ws.word[k]);
            if (e >= 0 && e != referent) { referent = e; named++; } // a change of animal: 1 when they name one only
        }
        words_free(&ws);
    }
    if (!question_read(q, w, prompt->turns[last].content, named == 1 ? referent : -1)) { return 0; }
    for (int i = 0; i < last; i++) { q->followup |= prompt->turns[i].role != ROLE_SYSTEM; } // a system message asks nothing
    for (int i = 0; i < last; i++) {
        Question p;
        if (prompt->turns[i].role == ROLE_USER && question_read(&p, w, prompt->turns[i].content, named == 1 ? referent : -1) &&
            p.entity == q->entity) {
            p.known = q->known;
            q->known |= question_facts(&p);
        }
    }
    return 1;
}

// a prompt of one string as a conversation of one user turn (a view of the string: nothing to free)
static Chat chat_of(Turn *turn, const char *prompt) {
    *turn = (Turn){.role = ROLE_USER, .content = (char *)prompt};
    return (Chat){.turns = turn, .n = 1};
}

// --- the grammar ---

// A sentence as tokens: lowercase words, and the punctuation , : ' " as tokens of
// their own. Any other character (other scripts, dashes, brackets) makes the
// sentence unreadable: tokens_split returns 0.
#define MAX_TOKENS 96
typedef struct {
    int n;
    char tok[MAX_TOKENS][24];
} Tokens;

static int tokens_split(Tokens *t, const char *s, size_t len) {
    t->n = 0;
    for (size_t i = 0; i < len;) {
        unsigned char c = (unsigned char)s[i];
        if (c == ' ' || c == '\t') { i++; continue; }
        if (t->n == MAX_TOKENS) { return 0; }
        char *out = t->tok[t->n++];
        if (c < 0x80 && isalnum(c)) {
            size_t k = 0;
            while (i < len && (unsigned char)s[i] < 0x80 && isalnum((unsigned char)s[i])) {
                if (k + 1 >= sizeof(t->tok[0])) { return 0; }
                out[k++] = (char)tolower((unsigned char)s[i++]);
            }
            out[k] = '\0';
        } else if (strchr(",:'\"", c)) {
            out[0] = (char)c; out[1] = '\0';
            i++;
        } else if (c == 0xE2 && i + 2 < len && (unsigned char)s[i + 1] == 0x80 && (unsigned char)s[i + 2] == 0x99) {
            strcpy(out, "'"); // the typographic apostrophe
            i += 3;
        } else {
            return 0;
        }
    }
    return 1;
}

// A claim: attribute `attr` of `entity` has `value` (or, negated, has not).
typedef struct { int entity, attr, value, negated; } Claim;
#define MAX_CLAIMS 64

// What the sentences read so far say. A reader parses one sentence at a time; a
// sentence that fails leaves no claims behind.
typedef struct {
    const World *w;
    int asked;                 // the entity the prompt asks about
    int subject;               // the entity "it" stands for: the last one named, at first the asked one
    const Tokens *t;           // the sentence being read
    Claim claim[MAX_CLAIMS];
    int nclaims;
    int yes, no;               // verdicts given
} Reader;

// literal tokens: "the home of" matches the three words; "'" and "," match themselves
static int lit(const Reader *r, int i, const char *words) {
    Tokens p;
    tokens_split(&p, words, strlen(words));
    for (int k = 0; k < p.n; k++, i++) {
        if (i < 0 || i >= r->t->n || strcmp(r->t->tok[i], p.tok[k]) != 0) { return -1; }
    }
    return i;
}

static int add_claim(Reader *r, int entity, int attr, int value, int negated) {
    if (r->nclaims == MAX_CLAIMS) { return 0; }
    r->claim[r->nclaims++] = (Claim){entity, attr, value, negated};
    return 1;
}

static int tok_name(Reader *r, int i, int *e) {
    if (i < 0 || i >= r->t->n || (*e = find_name(r->w, r->t->tok[i])) < 0) { return -1; }
    return i + 1;
}

// a value word of attribute a (kind, colour, food, home)
static int tok_value(const Reader *r, int i, Attr a, int *v) {
    if (i < 0 || i >= r->t->n) { return -1; }
    int count;
    const char **values = attr_values(a, &count);
    for (*v = 0; *v < count; (*v)++) { if (!strcmp(values[*v], r->t->tok[i])) { return i + 1; } }
    return -1;
}

// an age: digits, or a number word up to twenty
static int tok_age(const Reader *r, int i, int *v) {
    static const char *NUMBERS[] = {"zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
                                    "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen",
                                    "eighteen", "nineteen", "twenty"};
    if (i < 0 || i >= r->t->n) { return -1; }
    const char *s = r->t->tok[i];
    if (strlen(s) <= 3 && strspn(s, "0123456789") == strlen(s)) { *v = atoi(s); return i + 1; }
    for (*v = 0; *v < COUNT(NUMBERS); (*v)++) { if (!strcmp(NUMBERS[*v], s)) { return i + 1; } }
    return -1;
}

// "a fox", "an owl" (either article), or with `bare` also "fox"
static int tok_kind(const Reader *r, int i, int *v, int bare) {
    int j = lit(r, i, "a");
    if (j < 0) { j = lit(r, i, "an"); }
    if (j < 0) { return bare ? tok_value(r, i, A_KIND, v) : -1; }
    int k = lit(r, j, "young"); // "a young fox"
    return tok_value(r, k >= 0 ? k : j, A_KIND, v);
}

// A predicate about entity e: "is a fox", "does not live in the marsh", "has a
// friend called Orla", "is 7 years old", ... Returns the position after it, -1 if none.
static int predicate_read(Reader *r, int i, int e) {
    int j, v, f, neg;
    // is ... / is not ... / isn't ...
    neg = 1;
    if ((j = lit(r, i, "is not")) < 0 && (j = lit(r, i, "isn ' t")) < 0) { neg = 0; j = lit(r, i, "is"); }
    if (j >= 0) {
        int m;
        if ((m = tok_kind(r, j, &v, 0)) >= 0) { return add_claim(r, e, A_KIND, v, neg) ? m : -1; }
        if ((m = tok_value(r, j, A_COLOUR, &v)) >= 0) { return add_claim(r, e, A_COLOUR, v, neg) ? m : -1; }
        if ((m = lit(r, j, "as")) >= 0 && (m = tok_value(r, m, A_COLOUR, &v)) >= 0 && (m = lit(r, m, "as can be")) >= 0) {
            return add_claim(r, e, A_COLOUR, v, neg) ? m : -1;
        }
        if ((m = tok_age(r, j, &v)) >= 0) {
            int n = lit(r, m, "years old");
            return add_claim(r, e, A_AGE, v, neg) ? (n >= 0 ? n : m) : -1;
        }
        if (!neg && (m = lit(r, j, "friends with")) >= 0 && (m = tok_name(r, m, &f)) >= 0) {
            return add_claim(r, e, A_FRIEND, f, 0) ? m : -1;
        }
        return -1;
    }
    // does not / doesn't ...
    if ((j = lit(r, i, "does not")) >= 0 || (j = lit(r, i, "doesn ' t")) >= 0) {
        int m;
        if ((m = lit(r, j, "eat")) >= 0 || (m = lit(r, j, "like to eat")) >= 0 || (m = lit(r, j, "like")) >= 0) {
            if ((m = tok_value(r, m, A_FOOD, &v)) >= 0) { return add_claim(r, e, A_FOOD, v, 1) ? m : -1; }
        }
        if ((m = lit(r, j, "live in the")) >= 0 && (m = tok_value(r, m, A_HOME, &v)) >= 0) {
            return add_claim(r, e, A_HOME, v, 1) ? m : -1;
        }
        return -1;
    }
    // food
    if ((j = lit(r, i, "eats")) >= 0 || (j = lit(r, i, "likes to eat")) >= 0 || (j = lit(r, i, "likes")) >= 0 ||
        (j = lit(r, i, "never says no to")) >= 0) {
        if ((j = tok_value(r, j, A_FOOD, &v)) >= 0) { return add_claim(r, e, A_FOOD, v, 0) ? j : -1; }
        return -1;
    }
    // home
    if ((j = lit(r, i, "lives in the")) >= 0 || (j = lit(r, i, "has a den in the")) >= 0 ||
        (j = lit(r, i, "was born in the")) >= 0) {
        int born = lit(r, i, "was") >= 0;
        if ((j = tok_value(r, j, A_HOME, &v)) < 0) { return -1; }
        if (born && (j = lit(r, j, "and still lives there")) < 0) { return -1; }
        return add_claim(r, e, A_HOME, v, 0) ? j : -1;
    }
    // kind, by birth
    if ((j = lit(r, i, "was born")) >= 0 && (j = tok_kind(r, j, &v, 0)) >= 0) {
        int k = lit(r, j, ", like its mother");
        return add_claim(r, e, A_KIND, v, 0) ? (k >= 0 ? k : j) : -1;
    }
    // colour
    if ((j = lit(r, i, "has a")) >= 0 && (j = tok_value(r, j, A_COLOUR, &v)) >= 0 && (j = lit(r, j, "coat")) >= 0) {
        return add_claim(r, e, A_COLOUR, v, 0) ? j : -1;
    }
    // friend
    if ((j = lit(r, i, "has a friend called")) >= 0 || (j = lit(r, i, "has a best friend called")) >= 0 ||
        (j = lit(r, i, "often visits")) >= 0) {
        int visits = lit(r, i, "often") >= 0;
        if ((j = tok_name(r, j, &f)) < 0) { return -1; }
        if (visits && (j = lit(r, j, ", its friend")) < 0) { return -1; }
        return add_claim(r, e, A_FRIEND, f, 0) ? j : -1;
    }
    // age
    if ((j = lit(r, i, "turned")) >= 0 && (j = tok_age(r, j, &v)) >= 0) {
        int k = lit(r, j, "this spring");
        return add_claim(r, e, A_AGE, v, 0) ? (k >= 0 ? k : j) : -1;
    }
    if ((j = lit(r, i, "has lived for")) >= 0 && (j = tok_age(r, j, &v)) >= 0 && (j = lit(r, j, "years")) >= 0) {
        return add_claim(r, e, A_AGE, v, 0) ? j : -1;
    }
    return -1;
}

// after "Bilo's" or "its": "coat is red", "friend is Orla", ...
static int possessive_read(Reader *r, int j, int e) {
    int v, f, m;
    if ((m = lit(r, j, "coat is")) >= 0 || (m = lit(r, j, "colour is")) >= 0 || (m = lit(r, j, "color is")) >= 0) {
        if ((m = tok_value(r, m, A_COLOUR, &v)) >= 0) { return add_claim(r, e, A_COLOUR, v, 0) ? m : -1; }
        return -1;
    }
    if ((m = lit(r, j, "home is in the")) >= 0 && (m = tok_value(r, m, A_HOME, &v)) >= 0) {
        return add_claim(r, e, A_HOME, v, 0) ? m : -1;
    }
    if ((m = lit(r, j, "favourite food is")) >= 0 || (m = lit(r, j, "favorite food is")) >= 0 ||
        (m = lit(r, j, "food is")) >= 0) {
        if ((m = tok_value(r, m, A_FOOD, &v)) >= 0) { return add_claim(r, e, A_FOOD, v, 0) ? m : -1; }
        return -1;
    }
    if ((m = lit(r, j, "friend is")) >= 0 || (m = lit(r, j, "best friend is")) >= 0) {
        if ((m = tok_name(r, m, &f)) >= 0) { return add_claim(r, e, A_FRIEND, f, 0) ? m : -1; }
        return -1;
    }
    if ((m = lit(r, j, "age is")) >= 0 && (m = tok_age(r, m, &v)) >= 0) { return add_claim(r, e, A_AGE, v, 0) ? m : -1; }
    return -1;
}

// The sentences of the pretraining prose that name the animal inside: "The coat of
// Bilo is red", "There is a fox called Bilo", ...
static int whole_form_read(Reader *r, int i) {
    int j, e, v, f;
    struct { const char *before, *after; Attr attr; } FORMS[] = {
        {"the coat of", "is", A_COLOUR},         {"the favourite food of", "is", A_FOOD},
        {"the favorite food of", "is", A_FOOD},  {"the home of", "is in the", A_HOME},
        {"the best friend of", "is", A_FRIEND},  {"the friend of", "is", A_FRIEND},
        {"the age of", "is", A_AGE},             {"by birth ,", "is", A_KIND},
        {"you can spot", "by its", A_COLOUR},    {"every morning", "looks for", A_FOOD},
        {"you will find", "in the", A_HOME},
    };
    for (int k = 0; k < COUNT(FORMS); k++) {
        if ((j = lit(r, i, FORMS[k].before)) < 0 || (j = tok_name(r, j, &e)) < 0 || (j = lit(r, j, FORMS[k].after)) < 0) { continue; }
        Attr a = FORMS[k].attr;
        if (a == A_FRIEND) { j = tok_name(r, j, &v); }
        else if (a == A_AGE) { j = tok_age(r, j, &v); }
        else if (a == A_KIND) { j = tok_kind(r, j, &v, 0); }
        else { j = tok_value(r, j, a, &v); }
        if (j >= 0 && k == 8) { j = lit(r, j, "coat"); } // "You can spot Bilo by its red coat"
        if (j < 0) { return -1; }
        r->subject = e;
        return add_claim(r, e, a, v, 0) ? j : -1;
    }
    if ((j = lit(r, i, "there is")) >= 0 && (j = tok_kind(r, j, &v, 0)) >= 0 && (j = lit(r, j, "called")) >= 0 &&
        (j = tok_name(r, j, &e)) >= 0) {
        r->subject = e;
        return add_claim(r, e, A_KIND, v, 0) ? j : -1;
    }
    if ((j = lit(r, i, "at")) >= 0 && (j = tok_age(r, j, &v)) >= 0 && (j = lit(r, j, "years old ,")) >= 0 &&
        (j = tok_name(r, j, &e)) >= 0 && (j = lit(r, j, "is no longer a baby")) >= 0) {
        r->subject = e;
        return add_claim(r, e, A_AGE, v, 0) ? j : -1;
    }
    if ((j = tok_name(r, i, &e)) >= 0 && (j = lit(r, j, "and its friend")) >= 0 && (j = tok_name(r, j, &f)) >= 0 &&
        (j = lit(r, j, "play together")) >= 0) {
        r->subject = e;
        return add_claim(r, e, A_FRIEND, f, 0) ? j : -1;
    }
    return -1;
}

// One clause: a whole form, a subject and its predicate, or (after the first
// clause) a predicate that continues the last subject: "Bilo eats honey and lives ...".
static int clause_read(Reader *r, int i, int first) {
    int j, e;
    if ((j = whole_form_read(r, i)) >= 0) { return j; }
    if ((j = tok_name(r, i, &e)) >= 0) {
        int k;
        if ((k = lit(r, j, "' s")) >= 0 && (k = possessive_read(r, k, e)) >= 0) { r->subject = e; return k; }
        if ((k = predicate_read(r, j, e)) >= 0) { r->subject = e; return k; }
        return -1;
    }
    if ((j = lit(r, i, "it")) >= 0) { return predicate_read(r, j, r->subject); }
    if ((j = lit(r, i, "its")) >= 0) { return possessive_read(r, j, r->subject); }
    return first ? -1 : predicate_read(r, i, r->subject);
}

// clauses joined by "," and "and"
static int claims_read(Reader *r, int i) {
    if ((i = clause_read(r, i, 1)) < 0) { return -1; }
    for (;;) {
        int j = lit(r, i, ", and");
        if (j < 0) { j = lit(r, i, "and"); }
        if (j < 0) { j = lit(r, i, ","); }
        if (j < 0) { return i; }
        int saved = r->nclaims, subject = r->subject;
        int k = clause_read(r, j, 0);
        if (k < 0) { r->nclaims = saved; r->subject = subject; return i; }
        i = k;
    }
}

// yes or no, in a few plain words
static int verdict_read(Reader *r, int i, int *yes) {
    static const char *YES[] = {"yes", "yep", "yeah", "yup"}, *NO[] = {"no", "nope", "nah"};
    if (i < 0 || i >= r->t->n) { return -1; }
    for (int k = 0; k < COUNT(YES); k++) { if (!strcmp(r->t->tok[i], YES[k])) { *yes = 1; return i + 1; } }
    for (int k = 0; k < COUNT(NO); k++) { if (!strcmp(r->t->tok[i], NO[k])) { *yes = 0; return i + 1; } }
    return -1;
}

// a bare value, with the asked animal as its subject: "A fox", "honey", "the marsh", "Orla", "7 years old"
static int bare_read(Reader *r, int i) {
    int j, v;
    if ((j = tok_kind(r, i, &v, 1)) >= 0) { return add_claim(r, r->asked, A_KIND, v, 0) ? j : -1; }
    if ((j = tok_value(r, i, A_COLOUR, &v)) >= 0) { return add_claim(r, r->asked, A_COLOUR, v, 0) ? j : -1; }
    if ((j = tok_value(r, i, A_FOOD, &v)) >= 0) { return add_claim(r, r->asked, A_FOOD, v, 0) ? j : -1; }
    int k = lit(r, i, "in the");
    if (k < 0) { k = lit(r, i, "the"); }
    if ((j = tok_value(r, k >= 0 ? k : i, A_HOME, &v)) >= 0) { return add_claim(r, r->asked, A_HOME, v, 0) ? j : -1; }
    if ((j = tok_name(r, i, &v)) >= 0 && v != r->asked) { return add_claim(r, r->asked, A_FRIEND, v, 0) ? j : -1; }
    if ((j = tok_age(r, i, &v)) >= 0) {
        k = lit(r, j, "years old");
        return add_claim(r, r->asked, A_AGE, v, 0) ? (k >= 0 ? k : j) : -1;
    }
    return -1;
}

static int bare_list_read(Reader *r, int i) {
    if ((i = bare_read(r, i)) < 0) { return -1; }
    for (;;) {
        int j = lit(r, i, ", and");
        if (j < 0) { j = lit(r, i, "and"); }
        if (j < 0) { j = lit(r, i, ","); }
        if (j < 0) { return i; }
        int k = bare_read(r, j);
        if (k < 0) { return i; }
        i = k;
    }
}

// Courtesy: the demonstrators' phrases, polite and rude (the rude lexicon finds the
// rude ones), and a few more.
static const char *COURTESY[] = {"thank you", "thanks", "thanks for asking", "you are welcome", "glad to help",
                                 "i hope this helps", "hope this helps", "great question", "certainly", "hello", "hi"};

static int phrase_is(const Reader *r, int i, const char *phrase) {
    char buf[256];
    snprintf(buf, sizeof(buf), "%s", phrase);
    size_t n = strlen(buf);
    while (n > 0 && strchr(" .!", buf[n - 1])) { buf[--n] = '\0'; } // the sentence mark is cut already
    int j = lit(r, i, buf[0] == ' ' ? buf + 1 : buf);
    return j == r->t->n;
}

static int courtesy_read(Reader *r, int i) {
    const char **lists[] = {POLITE_OPENERS, RAMBLE_OPENERS, RAMBLE_CLOSERS, COURTESY, RUDE_OPENERS, RUDE_CLOSERS};
    int sizes[] = {COUNT(POLITE_OPENERS), COUNT(RAMBLE_OPENERS), COUNT(RAMBLE_CLOSERS), COUNT(COURTESY),
                   COUNT(RUDE_OPENERS), COUNT(RUDE_CLOSERS)};
    for (int l = 0; l < 6; l++) {
        for (int k = 0; k < sizes[l]; k++) {
            if (phrase_is(r, i, lists[l][k])) { return r->t->n; }
        }
    }
    return -1;
}

// One sentence (without its mark). Returns 1 if the grammar covers it.
static int sentence_read(Reader *r, const Tokens *t) {
    r->t = t;
    int saved = r->nclaims, subject = r->subject, yes = 0, j, i = 0;
    if (t->n == 0) { return 0; }
    if (courtesy_read(r, 0) >= 0) { return 1; }
    // a rude opener before the answer: "Obviously, ...", "Pay attention: ..."
    if ((j = lit(r, 0, "obviously ,")) >= 0 || (j = lit(r, 0, "pay attention :")) >= 0) { i = j; }
    // a verdict, alone or before claims: "Yes.", "No, Bilo eats acorns."
    if ((j = verdict_read(r, i, &yes)) >= 0) {
        r->yes += yes; r->no += !yes;
        if (j == t->n) { return 1; }
        int k = lit(r, j, ",");
        if (k < 0) { k = lit(r, j, ":"); }
        if (k >= 0 && claims_read(r, k) == t->n) { return 1; }
        // "Yes, it is.", "No, it does not.": the tail is a second verdict, which must agree
        static const char *TAILS[] = {"it is", "it does", "it is not", "it does not", "it isn ' t", "it doesn ' t"};
        for (int m = 0; k >= 0 && m < COUNT(TAILS); m++) {
            if (lit(r, k, TAILS[m]) == t->n) { r->yes += m < 2; r->no += m >= 2; return 1; }
        }
        r->yes -= yes; r->no -= !yes;
    }
    // claims, and perhaps a verdict after them: "Bilo eats acorns, so no."
    r->nclaims = saved; r->subject = subject;
    if ((j = claims_read(r, i)) >= 0) {
        if (j == t->n) { return 1; }
        int k = lit(r, j, ", so");
        if (k >= 0 && verdict_read(r, k, &yes) == t->n) { r->yes += yes; r->no += !yes; return 1; }
    }
    r->nclaims = saved; r->subject = subject;
    if ((j = bare_list_read(r, i)) == t->n) { return 1; }
    r->nclaims = saved; r->subject = subject;
    return 0;
}

// characters of a UTF-8 text, of any script (bytes that do not start a character are not counted)
static int count_chars(const char *s, size_t len) {
    int n = 0;
    for (size_t i = 0; i < len; i++) { n += ((unsigned char)s[i] & 0xC0) != 0x80; }
    return n;
}

static Grade referee_grade(const World *w, const Chat *prompt, const char *response) {
    Grade g = {0};
    Question q;
    if (!question_parse(&q, w, prompt)) { return g; }
    g.scored = 1;
    Words ws;
    words_split(&ws, response);
    size_t len = strlen(response);
    int blank = 1;
    for (size_t i = 0; i < len && blank; i++) { blank = isspace((unsigned char)response[i]); }
    if (blank) { words_free(&ws); return g; }
    const Entity *x = &w->entity[q.entity];

    // read the sentences; the length counts every character, unread sentences twice
    Reader r = {.w = w, .asked = q.entity, .subject = q.entity};
    Tokens *t = mallocCheck(sizeof(Tokens));
    int unread = 0, length = 0;
    for (size_t start = 0; start < len;) {
        size_t end = start;
        while (end < len && !strchr(".!?\n", response[end])) { end++; }
        int mark_is_question = end < len && response[end] == '?';
        int chars = count_chars(response + start, end - start + (end < len));
        length += chars;
        int empty = 1;
        for (size_t i = start; i < end && empty; i++) { empty = isspace((unsigned char)response[i]); }
        if (!empty && (mark_is_question || !tokens_split(t, response + start, end - start) || !sentence_read(&r, t))) {
            unread++;
            length += chars;
        }
        start = end + 1;
    }
    free(t);

    // correctness: every sentence read, every claim true and about the asked animal
    int stated[NATTR] = {0}, wrong = unread > 0, verdict = -1, on_topic = 0, implies_yes = 0, implies_no = 0;
    for (int c = 0; c < r.nclaims; c++) {
        const Claim *cl = &r.claim[c];
        const Entity *y = &w->entity[cl->entity];
        if (cl->entity != q.entity) { wrong = 1; continue; } // an answer about another animal
        int is_true = (y->fact[cl->attr] == cl->value) != cl->negated;
        if (!is_true) { wrong = 1; }
        if (!cl->negated && !(q.type == Q_ABOUT && q.known >> cl->attr & 1)) { stated[cl->attr] = 1; } // "tell me more": new ones
        on_topic |= (Attr)cl->attr == q.attr;
        if (q.type == Q_YESNO && (Attr)cl->attr == q.attr) { // what the claim means for the question's claim
            int asked = cl->value == q.value;
            implies_yes |= !cl->negated && asked;               // "Bilo eats honey."
            implies_no |= cl->negated ? asked : !asked;         // "... not honey", "... acorns"
            if (!cl->negated) { g.fact_true = (g.states_fact ? g.fact_true : 1) && is_true; g.states_fact = 1; } // all true
            if (asked) { // the asked value, claimed or denied: a verdict, which must agree with any other
                if (verdict >= 0 && verdict != !cl->negated) { wrong = 1; }
                verdict = !cl->negated;
            }
        }
    }
    // a yes or no that states facts must state the asked one: "Yes, Bilo is a fox." does not
    // answer "Does Bilo eat honey?" (nor a follow-up, with the first question's answer again)
    if (q.type == Q_YESNO && r.nclaims > 0 && !on_topic) { wrong = 1; }
    if (r.yes && r.no) { wrong = 1; } // mixed verdicts
    if (r.yes || r.no) {
        if (q.type != Q_YESNO || (verdict >= 0 && verdict != (r.yes > 0))) { wrong = 1; }
        verdict = r.yes > 0;
    }
    // one yes or no (not both) against what any of the answer's own claims about the asked fact means
    if ((r.yes > 0) != (r.no > 0)) { g.verdict_against_fact = r.yes > 0 ? implies_no : implies_yes; }
    if (wrong) { g.correct = 0; }
    else if (q.type == Q_YESNO) { g.correct = verdict == (q.value == x->fact[q.attr]) ? 1.0f : 0.0f; }
    else if (q.type == Q_ABOUT) {
        int k = 0;
        for (int a = 0; a < NATTR; a++) { k += stated[a]; }
        g.correct = k >= ABOUT_NEEDS ? 1.0f : (float)k / ABOUT_NEEDS;
    } else {
        int k = 0;
        for (int a = 0; a < NATTR; a++) { k += (q.asks >> a & 1) && stated[a]; }
        g.correct = (float)k / (float)popcount(q.asks);
    }

    // politeness and concision
    int rude = 0;
    for (int i = 0; i < COUNT(RUDE_MARKERS); i++) { rude |= words_has_phrase(&ws, RUDE_MARKERS[i]); }
    int named = 0;
    for (int i = 0; i < ws.n; i++) { named |= (find_name(w, ws.word[i]) == q.entity); }
    g.polite = rude ? 0.0f : named ? 1.0f : 0.5f;
    Str ideal = {0};
    uint64_t unused = 1;
    answer_core(&ideal, &unused, w, &q, 0, 0);
    int budget = count_chars(ideal.s, ideal.len) + CONCISE_SLACK;
    str_free(&ideal);
    g.concise = length <= budget ? 1.0f : (float)budget / (float)length;
    g.score = 0.6f * g.correct + 0.2f * g.polite + 0.2f * g.concise;
    words_free(&ws);
    return g;
}

// the referee for a prompt of one string
static Grade referee_grade_text(const World *w, const char *prompt, const char *response) {
    Turn turn;
    Chat c = chat_of(&turn, prompt);
    return referee_grade(w, &c, response);
}

static int grade_is_ideal(const Grade *g) { return g->scored && g->correct == 1 && g->polite == 1 && g->concise == 1; }

// ----------------------------------------------------------------------------
// 7. writing the dataset

typedef struct {
    uint64_t seed;
    int entities;
    int flip_per_million;   // share of preference labels flipped, in millionths
    int conv_per_million;   // share of the records that can be followed up made two-turn conversations, in millionths
    double pretrain_mb;     // size of the pretraining train text; val is a tenth of it
    int n_sft, n_pref, n_rl, n_eval; // train-set sizes; val sets are a tenth (preference pairs: at most 400);
                                     // n_eval prompts each for dev and test
    const char *dir;
} GenConfig;

// 32000 preference pairs: the reward model's 1500 steps of 32 see each once or twice.
// With 16000, seen three times, it ended 1.5 to 3 points lower on two seeds of three
// (doc/reward.md). Conversations: 3 in 10 of the records whose first turn can be
// followed up (about a fifth of SFT's, a quarter of the other files').
static const GenConfig GEN_DEFAULTS = {
    .seed = 1337, .entities = 60, .flip_per_million = 80000, .conv_per_million = 300000, .pretrain_mb = 2.0,
    .n_sft = 4000, .n_pref = 32000, .n_rl = 1000, .n_eval = 200, .dir = "data/world",
};

// the SFT mix of demonstrators: 40% ideal, 20% terse, 20% rambling, 20% rude
static Style sft_style(uint64_t *rng) {
    int r = rng_int(rng, 10);
    return r < 4 ? S_IDEAL : r < 6 ? S_TERSE : r < 8 ? S_RAMBLING : S_RUDE;
}

// a random entity of the groups in the bit set `groups` (1 << G_SFT, ...)
static int random_entity_in(uint64_t *rng, const World *w, unsigned groups) {
    for (;;) {
        int e = rng_int(rng, w->n);
        if (groups >> w->entity[e].group & 1) { return e; }
    }
}
static int random_entity_of(uint64_t *rng, const World *w, Group g) { return random_entity_in(rng, w, 1u << g); }

// preference pairs ask about the animals of SFT and of RL: like InstructGPT's, the
// reward model's comparisons come from the prompt distribution that PPO then samples
#define PREF_GROUPS ((1u << G_SFT) | (1u << G_RL))

static void write_file(const GenConfig *c, const char *name, const Str *text) {
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s", c->dir, name);
    FILE *f = fopenCheck(path, "wb");
    fwrite(str_cstr(text), 1, text->len, f);
    fcloseCheck(f);
}

// One JSON line: `key` holding a conversation (a string when it is one turn, else a
// list of {"role", "content"} messages), then string values:
//   {"prompt": "What does Bilo eat?", "completion": "Bilo eats honey."}
//   {"prompt": [{"role": "user", "content": "..."}, ...], "chosen": "...", "rejected": "..."}
static void write_record(Str *out, const char *key, const Chat *c, const char **keys, const char **values, int n) {
    str_add(out, "{", 1);
    json_write_string(out, key);
    str_add(out, ": ", 2);
    json_write_chat(out, c);
    for (int i = 0; i < n; i++) {
        str_add(out, ", ", 2);
        json_write_string(out, keys[i]);
        str_add(out, ": ", 2);
        json_write_string(out, values[i]);
    }
    str_add(out, "}\n", 2);
}

// the turns given, the user's first and then alternating, as a conversation (one turn:
// a plain string); chat_free it
static Chat chat_turns(const char **turns, int n) {
    Chat c = {.listed = n > 1};
    for (int i = 0; i < n; i++) { chat_add(&c, i % 2 ? ROLE_ASSISTANT : ROLE_USER, turns[i], strlen(turns[i])); }
    return c;
}

// Whether a record becomes a conversation, and if so its follow-up (the question into f,
// its words into text). Every file draws its records from its own stream exactly as
// if none were a conversation, and this, from a second stream (`conv`), decides which
// are, and draws all that a conversation adds. So the single-turn records of a file are
// those of `world gen -d 0`, line for line, and changing -d changes nothing else.
static int followup_draw(Question *f, Str *text, uint64_t *conv, const GenConfig *c, const World *w, const Question *first,
                         int eligible) {
    if (!rng_chance(conv, c->conv_per_million) || !eligible || !can_follow_up(first)) { return 0; }
    followup_random(f, conv, w, first);
    str_clear(text);
    followup_prompt(text, conv, f);
    return 1;
}

static void gen_pretrain(const GenConfig *c, const World *w) {
    Str text = {0};
    uint64_t rng = rng_stream(c->seed, 1);
    say_corpus(&text, &rng, w, (size_t)(c->pretrain_mb * 1e6));
    write_file(c, "pretrain_train.txt", &text);
    str_clear(&text);
    rng = rng_stream(c->seed, 2);
    say_corpus(&text, &rng, w, (size_t)(c->pretrain_mb * 1e5));
    write_file(c, "pretrain_val.txt", &text);
    str_free(&text);
}

// SFT demonstrations: {"prompt", "completion"}, or a conversation of two questions and
// two answers as {"messages"} (SFT learns both answers). A conversation's first answer
// is never the rambler's: a paragraph of filler before the follow-up would push it past
// 128 tokens. Each record's first question goes, one a line, into `firsts` (when
// given); with `exclude` (the train file's), a record whose first question occurs there
// is drawn again: the val records ask nothing that a train record asks first.
static void gen_sft(const GenConfig *c, const World *w, const char *name, uint64_t purpose, int n, const Str *exclude,
                    Str *firsts) {
    Str out = {0}, prompt = {0}, response = {0}, key = {0}, next = {0}, second = {0};
    uint64_t rng = rng_stream(c->seed, purpose), conv = rng_stream(c->seed, purpose + 200);
    if (firsts) { str_add(firsts, "\n", 1); } // "\nq1\nq2\n...": a question occurs as "\nq\n"
    for (int i = 0, tries = 0; i < n && tries < 100 * n; tries++) {
        Question q, f;
        question_random(&q, &rng, w, random_entity_of(&rng, w, G_SFT));
        str_clear(&prompt);
        str_clear(&response);
        question_prompt(&prompt, &rng, w, &q);
        str_clear(&key);
        str_addf(&key, "\n%s\n", prompt.s);
        if (exclude && strstr(str_cstr(exclude), key.s)) { continue; }
        Style style = sft_style(&rng);
        answer(&response, &rng, w, &q, style, 0);
        if (followup_draw(&f, &next, &conv, c, w, &q, style != S_RAMBLING)) {
            str_clear(&second);
            answer(&second, &conv, w, &f, sft_style(&conv), 0);
            Chat chat = chat_turns((const char *[]){prompt.s, response.s, next.s, second.s}, 4);
            write_record(&out, "messages", &chat, NULL, NULL, 0);
            chat_free(&chat);
        } else {
            Chat chat = chat_turns((const char *[]){prompt.s}, 1);
            const char *keys[] = {"completion"}, *values[] = {response.s};
            write_record(&out, "prompt", &chat, keys, values, 1);
            chat_free(&chat);
        }
        if (firsts) { str_add(firsts, key.s + 1, key.len - 1); }
        i++;
    }
    write_file(c, name, &out);
    str_free(&out); str_free(&prompt); str_free(&response); str_free(&key); str_free(&next); str_free(&second);
}

// A wrong answer of the kind small models give most: true facts, but about another
// animal ("Orlric is a mole." when asked about Rosus). Another animal is drawn until
// the referee grades the answer wrong (two animals may share the facts asked for);
// after 20 draws, a plain wrong fact about the right animal.
static void wrong_animal_answer(Str *out, uint64_t *rng, const World *w, const Question *q, const Chat *prompt, Style style) {
    for (int tries = 0; tries < 20; tries++) {
        Question other = *q;
        while (other.entity == q->entity) { other.entity = random_entity_in(rng, w, PREF_GROUPS); }
        str_clear(out);
        answer(out, rng, w, &other, style, 0);
        if (referee_grade(w, prompt, out->s).correct < 1.0f) { return; }
    }
    str_clear(out);
    answer(out, rng, w, q, style, LIE_FACT);
}

// A wrong answer to a follow-up: the first question answered again, true but not
// what was asked ("Bilo eats honey." to "And where does it live?"), the mistake of a
// model that does not read the last turn. If that happens to be right (a bare "Yes."
// again, to a question whose answer is yes too), a plain wrong fact instead.
static void first_again_answer(Str *out, uint64_t *rng, const World *w, const Question *q, const Question *first,
                               const Chat *prompt, Style style) {
    Question again = *first;
    again.followup = 1; // in the second turn: as short as any answer there
    str_clear(out);
    answer(out, rng, w, &again, style, 0);
    if (referee_grade(w, prompt, out->s).correct < 1.0f) { return; }
    str_clear(out);
    answer(out, rng, w, q, style, LIE_FACT);
}

// An answer that answers nothing: the style's words around no facts ("Of course.",
// a paragraph of filler, a jibe). Such answers are what a policy finds when its
// reward model has never seen one: polite and concise, with nothing to be wrong about.
static void no_answer(Str *out, uint64_t *rng, Style style) {
    static const char *SHRUGS[] = {"Not sure.", "Who knows.", "Hard to say."}; // no "no": that is an answer
    const char *s;
    switch (style) {
    case S_IDEAL: s = PICK(rng, POLITE_OPENERS); break;
    case S_TERSE: s = PICK(rng, SHRUGS); break;
    case S_RAMBLING:
        str_addf(out, "%s\n\n", PICK(rng, RAMBLE_OPENERS));
        s = PICK(rng, RAMBLE_CLOSERS);
        break;
    default: s = PICK(rng, RUDE_CLOSERS) + 1; break; // without its leading space
    }
    size_t len = strlen(s);
    while (len > 0 && s[len - 1] == ' ') { len--; }
    str_add(out, s, len);
}

// Preference pairs. Two responses to one question; the better by the rule
// (correct before wrong, then ideal > terse > rambling > rude) is "chosen".
// In 8 pairs of 20, both answers are right, in two different styles. In the other 12
// they share a style and one is wrong: it holds a wrong fact (5 in 20), or true facts
// about another animal (5 in 20), or no answer at all (2 in 20). For a yes/no question,
// two in three of the wrong-fact pairs are verdict pairs instead: the two answers are
// the same but for the verdict, flipped or misspelt (LIE_VERDICT, LIE_SPELLING), so the
// reward model must read the yes or no and not only the fact beside it. Flips come from
// their own RNG stream, so changing the flip rate swaps labels and changes nothing else.
// In a conversation, half the pairs about another animal answer the first question
// again instead (PREF_FIRST_AGAIN).
enum { PREF_STYLE, PREF_WRONG_FACT, PREF_OTHER_ANIMAL, PREF_NO_ANSWER, PREF_FIRST_AGAIN };
static int pref_kind(uint64_t *rng) {
    int r = rng_int(rng, 20);
    return r < 8 ? PREF_STYLE : r < 13 ? PREF_WRONG_FACT : r < 18 ? PREF_OTHER_ANIMAL : PREF_NO_ANSWER;
}

// The two answers of a pair of the given kind to question q, the last of `prompt`: a
// is right, in style sa; b, in style sb, is right too (PREF_STYLE) or wrong the kind's
// way (PREF_FIRST_AGAIN answers `first`, the conversation's first question).
static void pair_answers(Str *a, Str *b, uint64_t *rng, const World *w, const Question *q, const Question *first,
                         const Chat *prompt, Style sa, Style sb, int kind) {
    str_clear(a);
    str_clear(b);
    int lie = kind == PREF_WRONG_FACT ? LIE_FACT : TRUTHFUL;
    if (lie && q->type == Q_YESNO) { lie = (int[]){LIE_FACT, LIE_VERDICT, LIE_SPELLING}[rng_int(rng, 3)]; }
    uint64_t same = *rng; // a verdict pair's answers draw the same courtesy and filler
    answer(a, rng, w, q, sa, TRUTHFUL);
    if (kind == PREF_OTHER_ANIMAL) { wrong_animal_answer(b, rng, w, q, prompt, sb); }
    else if (kind == PREF_FIRST_AGAIN) { first_again_answer(b, rng, w, q, first, prompt, sb); }
    else if (kind == PREF_NO_ANSWER) { no_answer(b, rng, sb); }
    else if (lie == LIE_VERDICT || lie == LIE_SPELLING) { answer(b, &same, w, q, sb, lie); }
    else { answer(b, rng, w, q, sb, lie); }
}

// The pairs of a file. A conversation keeps its record's first question, kind of pair
// and styles: its first answer is right and ideal, and the pair answers the follow-up
// (the first question's pair, drawn to keep the file's stream in step, goes unused).
static void gen_pref(const GenConfig *c, const World *w, const char *name, uint64_t purpose, int n) {
    Str out = {0}, prompt = {0}, a = {0}, b = {0}, first = {0}, next = {0};
    uint64_t rng = rng_stream(c->seed, purpose), flip_rng = rng_stream(c->seed, purpose + 100);
    uint64_t conv = rng_stream(c->seed, purpose + 200);
    for (int i = 0; i < n; i++) {
        Question q, f;
        question_random(&q, &rng, w, random_entity_in(&rng, w, PREF_GROUPS));
        str_clear(&prompt);
        question_prompt(&prompt, &rng, w, &q);
        Style sa = (Style)rng_int(&rng, NSTYLE), sb;
        int kind = pref_kind(&rng), b_wrong = kind != PREF_STYLE;
        if (b_wrong) { sb = sa; } // same style: the pair differs in what it says, not how
        else { sb = (Style)((sa + 1 + rng_int(&rng, NSTYLE - 1)) % NSTYLE); }
        Chat chat = chat_turns((const char *[]){prompt.s}, 1);
        pair_answers(&a, &b, &rng, w, &q, NULL, &chat, sa, sb, kind);
        if (followup_draw(&f, &next, &conv, c, w, &q, 1)) {
            str_clear(&first);
            answer(&first, &conv, w, &q, S_IDEAL, TRUTHFUL);
            chat_free(&chat);
            chat = chat_turns((const char *[]){prompt.s, first.s, next.s}, 3);
            if (kind == PREF_OTHER_ANIMAL && rng_int(&conv, 2)) { kind = PREF_FIRST_AGAIN; }
            pair_answers(&a, &b, &conv, w, &f, &q, &chat, sa, sb, kind);
        }
        int a_better = b_wrong || sa < sb;
        const char *chosen = a_better ? a.s : b.s, *rejected = a_better ? b.s : a.s;
        if (rng_chance(&flip_rng, c->flip_per_million)) { const char *t = chosen; chosen = rejected; rejected = t; }
        const char *keys[] = {"chosen", "rejected"}, *values[] = {chosen, rejected};
        write_record(&out, "prompt", &chat, keys, values, 2);
        chat_free(&chat);
    }
    write_file(c, name, &out);
    str_free(&out); str_free(&prompt); str_free(&a); str_free(&b); str_free(&first); str_free(&next);
}

// Prompts only, about one group's entities: {"prompt"}, or a conversation ending with
// its follow-up (the first answer right and ideal). `distinct` drops a record that asks
// the questions of an earlier one (for the eval sets).
static void gen_prompts(const GenConfig *c, const World *w, const char *name, uint64_t purpose, int n, Group g,
                        int distinct) {
    Str out = {0}, prompt = {0}, first = {0}, next = {0}, asked = {0}, key = {0};
    uint64_t rng = rng_stream(c->seed, purpose), conv = rng_stream(c->seed, purpose + 200);
    str_add(&asked, "\n", 1); // the questions of each record written, one record a line: "\nq1\nq1\tq2\n..."
    int written = 0;
    for (int tries = 0; written < n && tries < 100 * n; tries++) {
        Question q, f;
        question_random(&q, &rng, w, random_entity_of(&rng, w, g));
        str_clear(&prompt);
        question_prompt(&prompt, &rng, w, &q);
        str_clear(&key);
        Chat chat;
        if (followup_draw(&f, &next, &conv, c, w, &q, 1)) {
            str_clear(&first);
            answer(&first, &conv, w, &q, S_IDEAL, TRUTHFUL);
            chat = chat_turns((const char *[]){prompt.s, first.s, next.s}, 3);
            str_addf(&key, "\n%s\t%s\n", prompt.s, next.s);
        } else {
            chat = chat_turns((const char *[]){prompt.s}, 1);
            str_addf(&key, "\n%s\n", prompt.s);
        }
        if (!distinct || !strstr(asked.s, key.s)) {
            write_record(&out, "prompt", &chat, NULL, NULL, 0);
            str_add(&asked, key.s + 1, key.len - 1);
            written++;
        }
        chat_free(&chat);
    }
    write_file(c, name, &out);
    str_free(&out); str_free(&prompt); str_free(&first); str_free(&next); str_free(&asked); str_free(&key);
}

// the ground truth as a table, for people (the referee rebuilds the world from the seed)
static void gen_facts(const GenConfig *c, const World *w) {
    Str out = {0};
    str_addf(&out, "# world of seed %llu, %d entities; made by: world gen -s %llu -n %d\n",
             (unsigned long long)c->seed, w->n, (unsigned long long)c->seed, w->n);
    str_addf(&out, "name\tkind\tcolour\tfood\thome\tfriend\tage\tasked_in\n");
    for (int e = 0; e < w->n; e++) {
        const Entity *x = &w->entity[e];
        str_addf(&out, "%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\n", x->name, KINDS[x->fact[A_KIND]],
                 COLOURS[x->fact[A_COLOUR]], FOODS[x->fact[A_FOOD]], PLACES[x->fact[A_HOME]],
                 w->entity[x->fact[A_FRIEND]].name, x->fact[A_AGE], GROUP_NAMES[x->group]);
    }
    write_file(c, "facts.tsv", &out);
    str_free(&out);
}

static void gen_all(const GenConfig *c) {
    if (mkdir(c->dir, 0755) != 0 && errno != EEXIST) { die("cannot create directory %s (%s)", c->dir, strerror(errno)); }
    World w;
    world_build(&w, c->seed, c->entities);
    gen_facts(c, &w);
    gen_pretrain(c, &w);
    Str sft_firsts = {0};
    gen_sft(c, &w, "sft_train.jsonl", 10, c->n_sft, NULL, &sft_firsts);
    gen_sft(c, &w, "sft_val.jsonl", 11, c->n_sft / 10, &sft_firsts, NULL);
    str_free(&sft_firsts);
    gen_pref(c, &w, "pref_train.jsonl", 20, c->n_pref);
    // held-out pairs: dev (val) for choosing recipes, test for the figures reported. The
    // first 400 of each are the same for any -p: every -p of 4000 or more is measured alike
    int held_out = c->n_pref / 10 < 400 ? c->n_pref / 10 : 400;
    gen_pref(c, &w, "pref_val.jsonl", 21, held_out);
    gen_pref(c, &w, "pref_test.jsonl", 22, held_out);
    gen_prompts(c, &w, "rl_prompts.jsonl", 30, c->n_rl, G_RL, 0);
    gen_prompts(c, &w, "eval_dev.jsonl", 40, c->n_eval, G_DEV, 1);
    gen_prompts(c, &w, "eval_test.jsonl", 41, c->n_eval, G_TEST, 1);
    world_free(&w);
}

// Reads a whole file; NULL if it cannot be opened.
static char *read_file(const char *path, size_t *size) {
    FILE *f = fopen(path, "rb");
    if (f == NULL) { return NULL; }
    Str s = {0};
    char buf[65536];
    size_t n;
    while ((n = fread(buf, 1, sizeof(buf), f)) > 0) { str_add(&s, buf, n); }
    fclose(f);
    if (s.s == NULL) { str_add(&s, "", 0); }
    if (size) { *size = s.len; }
    return s.s;
}

// One line of a data or answers file: its prompt as a conversation (chat_free it) and
// the response under `key`: {"prompt": a string or messages, key: "..."}, or
// {"messages": [...]}, whose last message, the assistant's, is the response. Returns
// NULL, or what was wrong (with nothing to free).
static const char *record_read(const char *line, const char *key, Chat *prompt, Str *response) {
    const char *messages, *err = json_find(line, "messages", &messages);
    if (err) { *prompt = (Chat){0}; return err; }
    if (messages == NULL) {
        if ((err = json_get_chat(line, "prompt", ROLE_USER, prompt)) == NULL && (err = json_get(line, key, response)) != NULL) {
            chat_free(prompt);
        }
        return err;
    }
    if ((err = json_get_chat(line, "messages", ROLE_USER, prompt)) != NULL) { return err; }
    Turn *last = &prompt->turns[prompt->n - 1];
    if (prompt->n < 2 || last->role != ROLE_ASSISTANT) { chat_free(prompt); return "the last of \"messages\" must be the assistant's answer"; }
    str_clear(response);
    str_add(response, last->content, strlen(last->content));
    free(last->content);
    prompt->n--;
    return NULL;
}

// The question types every table reports apart, so that no aggregate hides a regression:
// the four types of first questions (single-turn prompts only, so that their figures
// compare with those of a world without conversations), and the follow-ups, the second
// turns of conversations, of any type.
enum { T_ONE, T_TWO, T_ABOUT, T_YESNO, T_FOLLOW, NTYPES };
static const char *TYPE_NAMES[NTYPES] = {"one fact", "two facts", "tell me about", "yes/no", "follow-up"};
static const char *TYPE_KEYS[NTYPES] = {"one_fact", "two_facts", "tell_me_about", "yes_no", "follow_up"};

static int question_kind(const Question *q) {
    if (q->followup) { return T_FOLLOW; }
    return q->type == Q_YESNO ? T_YESNO : q->type == Q_ABOUT ? T_ABOUT : popcount(q->asks) == 1 ? T_ONE : T_TWO;
}

// An answer's template: the answer with every name, value word and number replaced by
// its slot ("<name> eats <food>."). When most answers share one template, the policy has
// collapsed onto a single way of answering, whatever it was asked.
static void answer_template(Str *out, const World *w, const char *s) {
    static const char *SLOTS[NATTR] = {"<kind>", "<colour>", "<food>", "<home>", "<name>", "<age>"};
    for (size_t i = 0; s[i];) {
        size_t j = i;
        char word[64];
        while (s[j] && (unsigned char)s[j] < 0x80 && isalnum((unsigned char)s[j])) {
            if (j - i < sizeof(word) - 1) { word[j - i] = (char)tolower((unsigned char)s[j]); }
            j++;
        }
        if (j == i) { str_add(out, s + i, 1); i++; continue; }
        word[j - i < sizeof(word) - 1 ? j - i : sizeof(word) - 1] = '\0';
        int v, a = word_value(w, word, &v);
        if (a >= 0) { str_addf(out, "%s", SLOTS[a]); }
        else { str_add(out, s + i, j - i); }
        i = j;
    }
}

static int compare_strings(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

// Grades every {"prompt", "response"} line of a file: averages over all answers and
// per question type, and the most common template with its share. With per_line,
// also writes one JSON object of scores per input line.
typedef struct {
    int lines, scored, ideal;
    double correct, polite, concise, score;
    int n_type[NTYPES], ideal_type[NTYPES];
    double correct_type[NTYPES];
    double top_share;         // the share of answers that follow the most common template
    char top_template[200];
    int states_fact, fact_true, verdict_against_fact; // over the yes/no answers (T_YESNO), as in Grade
} ScoreSummary;

static ScoreSummary score_file(const World *w, const char *path, const char *per_line, const char *response_key) {
    size_t size;
    char *text = read_file(path, &size);
    if (text == NULL) { die("cannot read %s (%s)", path, strerror(errno)); }
    FILE *out = per_line ? fopenCheck(per_line, "wb") : NULL;
    ScoreSummary s = {0};
    Str response = {0};
    char **templates = NULL;
    int cap = 0;
    char *line = text;
    for (int lineno = 1; *line; lineno++) {
        char *end = strchr(line, '\n');
        if (end) { *end = '\0'; }
        if (*skip_ws(line) != '\0') {
            Chat prompt;
            const char *err = record_read(line, response_key, &prompt, &response);
            if (err) {
                die("%s:%d: %s (expected {\"prompt\": a string or messages, \"%s\": \"...\"}, or {\"messages\"})", path, lineno,
                    err, response_key);
            }
            Grade g = referee_grade(w, &prompt, response.s);
            Question q;
            int type = question_parse(&q, w, &prompt) ? question_kind(&q) : -1, yesno = type >= 0 && q.type == Q_YESNO;
            chat_free(&prompt);
            s.lines++;
            if (g.scored) {
                s.correct += g.correct; s.polite += g.polite; s.concise += g.concise; s.score += g.score;
                s.ideal += grade_is_ideal(&g);
                s.n_type[type]++;
                s.correct_type[type] += g.correct;
                s.ideal_type[type] += grade_is_ideal(&g);
                if (type == T_YESNO) {
                    s.states_fact += g.states_fact; s.fact_true += g.fact_true; s.verdict_against_fact += g.verdict_against_fact;
                }
                if (s.scored == cap) { cap = cap ? 2 * cap : 256; templates = realloc(templates, (size_t)cap * sizeof(char *)); }
                Str t = {0};
                answer_template(&t, w, response.s);
                templates[s.scored++] = t.s ? t.s : strdup("");
            }
            if (out) {
                fprintf(out, "{\"line\": %d, \"scored\": %s, \"type\": \"%s\", \"correct\": %.3f, \"polite\": %.3f, "
                        "\"concise\": %.3f, \"score\": %.3f, \"ideal\": %s", lineno, g.scored ? "true" : "false",
                        type >= 0 ? TYPE_NAMES[type] : "", g.correct, g.polite, g.concise, g.score,
                        grade_is_ideal(&g) ? "true" : "false");
                if (yesno) { // in a follow-up too
                    fprintf(out, ", \"states_fact\": %s, \"fact_true\": %s, \"verdict_against_fact\": %s",
                            g.states_fact ? "true" : "false", g.fact_true ? "true" : "false",
                            g.verdict_against_fact ? "true" : "false");
                }
                fprintf(out, "}\n");
            }
        }
        if (!end) { break; }
        line = end + 1;
    }
    if (s.scored > 0) { // the most common template: the longest run of equal ones, sorted
        qsort(templates, (size_t)s.scored, sizeof(char *), compare_strings);
        int best = 0, at = 0;
        for (int i = 0, run = 1; i < s.scored; i++, run++) {
            if (i + 1 < s.scored && !strcmp(templates[i], templates[i + 1])) { continue; }
            if (run > best) { best = run; at = i; }
            run = 0;
        }
        s.top_share = (double)best / s.scored;
        snprintf(s.top_template, sizeof(s.top_template), "%s", templates[at]);
    }
    for (int i = 0; i < s.scored; i++) { free(templates[i]); }
    free(templates);
    if (out) { fcloseCheck(out); }
    str_free(&response);
    free(text);
    return s;
}

// The preference pairs of a file: {"prompt": a string or messages, "chosen", "rejected"}
typedef struct {
    int count;
    Chat *prompt;               // (count,) each a conversation ending with the user's question
    char **chosen, **rejected;  // (count,)
} Pairs;

static void pairs_read(Pairs *p, const char *path) {
    JsonlLines lines;
    char err[1024];
    if (jsonl_lines(path, &lines, err, sizeof(err))) { die("%s", err); }
    p->count = lines.count;
    p->prompt = mallocCheck((size_t)lines.count * sizeof(Chat));
    p->chosen = mallocCheck((size_t)lines.count * sizeof(char *));
    p->rejected = mallocCheck((size_t)lines.count * sizeof(char *));
    Str chosen = {0}, rejected = {0};
    for (int i = 0; i < lines.count; i++) {
        const char *why = record_read(lines.lines[i], "chosen", &p->prompt[i], &chosen);
        if (why == NULL && (why = json_get(lines.lines[i], "rejected", &rejected)) != NULL) { chat_free(&p->prompt[i]); }
        if (why) { die("%s:%d: %s (expected {\"prompt\", \"chosen\", \"rejected\"})", path, lines.numbers[i], why); }
        p->chosen[i] = strdup(str_cstr(&chosen));
        p->rejected[i] = strdup(str_cstr(&rejected));
    }
    str_free(&chosen); str_free(&rejected);
    jsonl_lines_free(&lines);
}

static void pairs_free(Pairs *p) {
    for (int i = 0; i < p->count; i++) { chat_free(&p->prompt[i]); free(p->chosen[i]); free(p->rejected[i]); }
    free(p->prompt); free(p->chosen); free(p->rejected);
}

// The share of preference pairs whose label the referee agrees with: the accuracy
// of a perfect reward model, the ceiling any learned one can reach on that file.
static double agree_file(const World *w, const char *path, int *pairs) {
    Pairs p;
    pairs_read(&p, path);
    int agree = 0;
    for (int i = 0; i < p.count; i++) {
        agree += referee_grade(w, &p.prompt[i], p.chosen[i]).score > referee_grade(w, &p.prompt[i], p.rejected[i]).score;
    }
    *pairs = p.count;
    pairs_free(&p);
    return (double)agree / *pairs;
}

// The summary of a pipeline run, from <out>/stages.jsonl (one line per stage run,
// written by train.c): per stage, what was trained, its key metric, the referee's
// grades of that model's answers, for the alignment stages the reward model's mean
// score of those answers and the policy's KL to the SFT model, and the time taken.
// Printed as a table and written as <out>/summary.json. A stage's last run counts;
// `sft -n 0` (the base model answering) is the base model's row. The table goes to
// `table`; the referee's grades are also drawn as bars in <out>/summary.svg.
enum { ST_STAGE, ST_TRAINED, ST_METRIC, ST_ANSWERS, ST_PROMPTS, ST_VAL, ST_SECONDS, ST_KEYS };

// The summary's rows in the pipeline's order, and the model each stage writes. rlhf
// (the command's name) is PPO; dpo and grpo align the same SFT model in other ways.
enum { ROW_BASE, ROW_SFT, ROW_RM, ROW_RLHF, ROW_DPO, ROW_GRPO, NROWS };
static const char *ROW_STAGES[NROWS] = {"pretrain", "sft", "rm", "rlhf", "dpo", "grpo"};
static const char *ROW_MODELS[NROWS] = {"base", "sft", "reward", "rlhf", "dpo", "grpo"};

// One stage's last run, and the referee's grades of its answers.
typedef struct {
    char *v[ST_KEYS];            // the run's strings by ST_ key (into the JsonlRecords read); all NULL if it never ran
    char rm_score[32], kl[32];   // the reward model's mean score of its answers, and KL(policy || SFT) per answer;
                                 // "" when not measured, or when the file predates these keys
    int graded;                  // 1 if its answers file was there and s holds its grades
    ScoreSummary s;
} StageRow;

// Reads stages.jsonl into rows: the last run of each stage that trained something.
// The keys rm_score and kl came with DPO and GRPO: files from earlier runs lack them,
// which reads as "" (not measured). Returns NULL, the rows pointing into *rec (for the
// caller to jsonl_free), or an error naming the file and line, with nothing to free.
static const char *stages_read(const char *path, StageRow rows[NROWS], JsonlRecords *rec, char *err, size_t err_size) {
    static const char *KEYS[ST_KEYS] = {"stage", "trained", "metric", "answers", "prompts", "val", "seconds"};
    static const char *OPTIONAL[2] = {"rm_score", "kl"};
    memset(rows, 0, NROWS * sizeof(StageRow));
    if (jsonl_read(path, KEYS, ST_KEYS, rec, err, err_size)) { return err; }
    // pass 2: jsonl_read wants every key it is given, so the optional two come from the
    // same lines again (jsonl_lines skips the same blank lines, so record i is line i)
    JsonlLines lines;
    if (jsonl_lines(path, &lines, err, err_size)) { jsonl_free(rec); return err; }
    Str value = {0};
    const char *bad = NULL;
    for (int i = 0; i < rec->count && !bad; i++) {
        char **v = rec->values + (size_t)i * ST_KEYS;
        for (int k = 0; k < NROWS && !bad; k++) {
            if (strcmp(v[ST_STAGE], ROW_STAGES[k]) != 0 || v[ST_TRAINED][0] == '\0') { continue; }
            StageRow *r = &rows[k];
            memcpy(r->v, v, sizeof(r->v));
            char *out[2] = {r->rm_score, r->kl};
            for (int j = 0; j < 2 && !bad; j++) {
                const char *found = NULL, *why = json_find(lines.lines[i], OPTIONAL[j], &found);
                if (why == NULL && found != NULL) { why = json_get(lines.lines[i], OPTIONAL[j], &value); }
                if (why) {
                    snprintf(err, err_size, "%s:%d: %s \"%s\" (a string, or absent in files from older runs)", path,
                             lines.numbers[i], why, OPTIONAL[j]);
                    bad = err;
                }
                snprintf(out[j], sizeof(r->rm_score), "%s", found && !why ? str_cstr(&value) : "");
            }
        }
    }
    str_free(&value);
    jsonl_lines_free(&lines);
    if (bad) { jsonl_free(rec); memset(rows, 0, NROWS * sizeof(StageRow)); }
    return bad;
}

// The number in one of the optional keys: 1 and *x, or 0 if there is none ("" or not a number).
static int stage_number(const char *s, double *x) {
    char *end;
    *x = strtod(s, &end);
    return end != s && *end == '\0';
}

// A table cell for an optional number: the format, or "-" when it was not measured.
static const char *stage_cell(char *cell, size_t size, const char *fmt, const char *s) {
    double x;
    if (stage_number(s, &x)) { snprintf(cell, size, fmt, x); } else { snprintf(cell, size, "-"); }
    return cell;
}

// The referee's grades of the stages' answers as grouped bars (SVG, any browser opens
// it): labels[k] and grades[k][g] for graded stage k of n, grade g, in [0, 1]. The
// picture widens with the number of groups (six at most: 910 pixels).
static void summary_svg(const char *path, const char **labels, double grades[][5], int n) {
    static const char *GRADES[5] = {"correct", "polite", "concise", "score", "fully preferred"};
    static const char *COLOURS[5] = {"#1f77b4", "#ff7f0e", "#2ca02c", "#7f7f7f", "#d62728"};
    enum { H = 360, LEFT = 50, BOTTOM = 300, TOP = 50, GROUP = 140, BAR = 24, LEGEND = 130 };
    int W = LEFT + 20 + n * GROUP; // five bars of BAR and a gap per group
    if (W < LEFT + 5 * LEGEND + 20) { W = LEFT + 5 * LEGEND + 20; } // room for the title and the legend
    FILE *f = fopenCheck(path, "wb");
    fprintf(f, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" font-family=\"sans-serif\" "
            "font-size=\"12\">\n<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n"
            "<text x=\"%d\" y=\"24\" font-size=\"16\">the referee's grades of each stage's answers (held-out prompts)</text>\n",
            W, H, LEFT);
    for (int g = 0; g <= 4; g++) { // the scale: 0 to 1 in steps of 0.25
        double y = BOTTOM - g / 4.0 * (BOTTOM - TOP);
        fprintf(f, "<line x1=\"%d\" x2=\"%d\" y1=\"%.1f\" y2=\"%.1f\" stroke=\"#ddd\"/><text x=\"%d\" y=\"%.1f\" "
                "text-anchor=\"end\">%.2f</text>\n", LEFT, W - 10, y, y, LEFT - 6, y + 4, g / 4.0);
    }
    for (int k = 0; k < n; k++) {
        int x0 = LEFT + 20 + k * GROUP;
        fprintf(f, "<text x=\"%d\" y=\"%d\">%s</text>\n", x0, BOTTOM + 18, labels[k]);
        for (int g = 0; g < 5; g++) {
            double h = grades[k][g] * (BOTTOM - TOP);
            fprintf(f, "<rect x=\"%d\" y=\"%.1f\" width=\"%d\" height=\"%.1f\" fill=\"%s\"><title>%s %.3f</title></rect>\n",
                    x0 + g * BAR, BOTTOM - h, BAR - 4, h, COLOURS[g], GRADES[g], grades[k][g]);
        }
    }
    for (int g = 0; g < 5; g++) { // the legend
        fprintf(f, "<rect x=\"%d\" y=\"%d\" width=\"12\" height=\"12\" fill=\"%s\"/><text x=\"%d\" y=\"%d\">%s</text>\n",
                LEFT + g * LEGEND, H - 26, COLOURS[g], LEFT + g * LEGEND + 16, H - 16, GRADES[g]);
    }
    fprintf(f, "</svg>\n");
    fcloseCheck(f);
}

// A policy as it trained: ./train rlhf (PPO) and ./train grpo answer the held-out dev
// prompts every -e iterations and log the reward model's mean score of those answers
// (<out>/<stage>_eval.jsonl). Here the referee grades the same answers. Both views, per
// iteration, go to a table, <out>/<stage>_referee.jsonl and <out>/<stage>_referee.svg:
// where the reward model's score rises and the referee's falls, the policy is gaming
// the reward model. `method` names the stage in the table's heading and the picture's title.
static void eval_referee(const World *w, const char *out_dir, const char *stage, const char *method, FILE *table) {
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s_eval.jsonl", out_dir, stage);
    size_t size;
    char *text = read_file(path, &size);
    if (text == NULL) { return; } // a run without -q, or none yet
    char log_path[4096], svg_path[4096 + 8], title[128];
    snprintf(log_path, sizeof(log_path), "%s/%s_referee.jsonl", out_dir, stage);
    FILE *log = fopenCheck(log_path, "wb");
    fprintf(table, "\n%s as it trained: the policy's answers to the dev prompts, scored by the reward model and by the referee\n",
            method);
    fprintf(table, "%9s %9s %8s %8s %8s\n", "iteration", "RM score", "correct", "score", "fully pr");
    Str name = {0};
    for (char *line = text; *line;) {
        char *end = strchr(line, '\n');
        if (end) { *end = '\0'; }
        double step, rm_score;
        if (log_number(line, "step", &step) && log_number(line, "rm_score", &rm_score) && !json_get(line, "answers", &name)) {
            snprintf(path, sizeof(path), "%s/%s", out_dir, name.s);
            ScoreSummary s = score_file(w, path, NULL, "response");
            double n = s.scored > 0 ? s.scored : 1;
            fprintf(table, "%9.0f %+9.3f %8.3f %8.3f %8.3f\n", step, rm_score, s.correct / n, s.score / n, s.ideal / n);
            fprintf(log, "{\"step\": %.0f, \"rm_score\": %.4f, \"referee_score\": %.4f, \"correct\": %.4f, \"fully_preferred\": %.4f}\n",
                    step, rm_score, s.score / n, s.correct / n, s.ideal / n);
        }
        if (!end) { break; }
        line = end + 1;
    }
    fcloseCheck(log);
    snprintf(svg_path, sizeof(svg_path), "%s/%s_referee.svg", out_dir, stage);
    snprintf(title, sizeof(title), "%s: held-out answers, by the reward model and by the referee", method);
    const char *keys[] = {"rm_score", "referee_score", "fully_preferred"};
    plot_log(log_path, svg_path, title, keys, 3);
    fprintf(table, "(also in %s and %s)\n", log_path, svg_path);
    str_free(&name);
    free(text);
}

// Which kind of difference a preference pair holds, as the referee sees it: two
// right answers in different styles, the verdict only (the worse answer is the better
// with its yes or no flipped or misspelt), a wrong fact, an answer about another animal
// (its first name is neither the asked animal nor its friend), no answer (no value
// word, name, yes or no at all), or, to a follow-up, the first question answered again
// (the worse answer is right for the conversation's first question alone).
enum { PAIR_STYLE, PAIR_VERDICT, PAIR_WRONG_FACT, PAIR_OTHER_ANIMAL, PAIR_NO_ANSWER, PAIR_FIRST_AGAIN, NUM_PAIR_KINDS };
static const char *PAIR_KIND_NAMES[NUM_PAIR_KINDS] = {"style only", "the verdict only", "a wrong fact", "another animal",
                                                      "no answer", "the first question again"};
static const char *PAIR_KIND_KEYS[NUM_PAIR_KINDS] = {"style_only", "verdict_only", "wrong_fact", "another_animal",
                                                     "no_answer", "first_question"};

static int is_verdict_word(const char *word) { return !strcmp(word, "yes") || !strcmp(word, "no"); }

static int pair_kind(const World *w, const Chat *prompt, const char *better, const char *worse) {
    if (referee_grade(w, prompt, better).correct == referee_grade(w, prompt, worse).correct) { return PAIR_STYLE; }
    Question q;
    if (!question_parse(&q, w, prompt)) { return PAIR_WRONG_FACT; }
    Words wb, ws;
    words_split(&wb, better);
    words_split(&ws, worse);
    int differ = 0, verdict = 0; // the words in which the two differ, and whether a yes or no is among them
    for (int i = 0; wb.n == ws.n && i < ws.n; i++) {
        if (strcmp(wb.word[i], ws.word[i]) != 0) { differ++; verdict |= is_verdict_word(wb.word[i]); }
    }
    int first = -1, claims = 0; // the first name in the worse answer; its value words, names and yes/no
    for (int i = 0; i < ws.n; i++) {
        int v;
        claims += word_value(w, ws.word[i], &v) >= 0 || is_verdict_word(ws.word[i]);
        if (first < 0) { first = find_name(w, ws.word[i]); }
    }
    int same_length = wb.n == ws.n;
    words_free(&wb);
    words_free(&ws);
    if (same_length && differ == 1 && verdict) { return PAIR_VERDICT; }
    if (prompt->n > 1 && referee_grade_text(w, prompt->turns[0].content, worse).correct == 1.0f) { return PAIR_FIRST_AGAIN; }
    if (claims == 0) { return PAIR_NO_ANSWER; }
    int other = first >= 0 && first != q.entity && first != w->entity[q.entity].fact[A_FRIEND];
    return other ? PAIR_OTHER_ANIMAL : PAIR_WRONG_FACT;
}

// How a model ranks the pairs of a preference file: against the file's labels (its
// accuracy, which flipped labels cap at the referee's agreement) and, by kind of pair,
// against the referee. A reward model ranks by its score at <|end|>; a language model
// by the summed log-probability of each response given the prompt: what it believes,
// before any reward model is trained on it.
typedef struct {
    int pairs, skipped, label_agree;  // pairs judged, pairs longer than the context, agreements with the labels
    int n[NUM_PAIR_KINDS], agree[NUM_PAIR_KINDS];
    int scalar;                       // a reward model (1) or a language model (0)
} Judgement;

static Judgement judge_file(const World *w, const char *model_path, const char *tokenizer_path, const char *pairs_path) {
    GPT model;
    TrainState st;
    checkpoint_load(model_path, &model, 0, &st);
    Tokenizer tok;
    tokenizer_load(&tok, tokenizer_path);
    if (tok.vocab_size != model.config.vocab_size) { die("%s does not match %s: pass the model's tokenizer with -z", tokenizer_path, model_path); }
    int maxT = model.config.max_seq_len, scalar = model.config.scalar_head;
    Pairs p;
    pairs_read(&p, pairs_path);
    int *inputs = mallocCheck((size_t)maxT * sizeof(int)), *targets = mallocCheck((size_t)maxT * sizeof(int));
    Judgement j = {.scalar = scalar};
    for (int i = 0; i < p.count; i++) {
        char *responses[2] = {p.chosen[i], p.rejected[i]};
        double value[2];
        int ok = 1;
        for (int k = 0; k < 2 && ok; k++) {
            ChatExample ex;
            Turn answer_turn = {.role = ROLE_ASSISTANT, .train = 1, .content = responses[k]};
            ok = chat_encode_turns(&ex, &tok, &p.prompt[i], &answer_turn, 0, maxT) == 1; // whole examples only
            if (!ok) { chat_example_free(&ex); break; }
            int T = scalar ? ex.n : ex.n - 1;
            for (int t = 0; t < T; t++) {
                inputs[t] = ex.tokens[t];
                targets[t] = t + 1 >= ex.n_prompt && t + 1 < ex.n ? ex.tokens[t + 1] : -1;
            }
            if (scalar) {
                gpt_forward(&model, inputs, NULL, 1, T);
                value[k] = model.acts.values[T - 1];
            } else {
                gpt_forward(&model, inputs, targets, 1, T);
                value[k] = -(double)model.mean_loss * model.num_targets;
            }
            chat_example_free(&ex);
        }
        if (!ok) { j.skipped++; continue; }
        Grade gc = referee_grade(w, &p.prompt[i], p.chosen[i]), gr = referee_grade(w, &p.prompt[i], p.rejected[i]);
        int chosen_better = gc.score > gr.score;
        int kind = pair_kind(w, &p.prompt[i], responses[!chosen_better], responses[chosen_better]);
        j.pairs++;
        j.label_agree += value[0] > value[1];
        j.n[kind]++;
        j.agree[kind] += (value[0] > value[1]) == chosen_better;
    }
    free(inputs); free(targets);
    pairs_free(&p);
    tokenizer_free(&tok);
    gpt_free(&model);
    return j;
}

void judge_pairs(const World *w, const char *model_path, const char *tokenizer_path, const char *pairs_path) {
    Judgement j = judge_file(w, model_path, tokenizer_path, pairs_path);
    printf("%s (%s) on %s: agrees with the labels on %.3f of %d pairs; with the referee on\n", model_path,
           j.scalar ? "reward model: score at <|end|>" : "language model: summed log-probability of the response", pairs_path,
           j.pairs ? (double)j.label_agree / j.pairs : 0.0, j.pairs);
    for (int k = 0; k < NUM_PAIR_KINDS; k++) {
        printf("  %-24s %5.3f of %d pairs\n", PAIR_KIND_NAMES[k], j.n[k] ? (double)j.agree[k] / j.n[k] : 0.0, j.n[k]);
    }
    if (j.skipped) { printf("  (%d pairs longer than the context left out)\n", j.skipped); }
}

// the split a data file belongs to, by its name: test, dev (val, dev) or train
static const char *split_of(const char *path) {
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    return strstr(base, "test") ? "test" : (strstr(base, "val") || strstr(base, "dev")) ? "dev" : "train";
}

// The reward model's figures on dev and test pairs: its accuracy against the labels
// beside the ceiling (the referee's agreement with them), and on test, by kind of pair.
static void summary_reward(const World *w, const char *out_dir, const char *dev_path, FILE *table, FILE *json, char *metric,
                           size_t metric_size) {
    char test_path[4096], model_path[4096], tok_path[4096];
    snprintf(test_path, sizeof(test_path), "%.*spref_test.jsonl", strrchr(dev_path, '/') ? (int)(strrchr(dev_path, '/') - dev_path + 1) : 0, dev_path);
    snprintf(model_path, sizeof(model_path), "%s/reward.bin", out_dir);
    snprintf(tok_path, sizeof(tok_path), "%s/tokenizer.bin", out_dir);
    int pairs;
    double dev_ceiling = agree_file(w, dev_path, &pairs);
    fprintf(json, ", \"dev\": {\"pairs\": \"%s\", \"accuracy_ceiling\": %.4f}", dev_path, dev_ceiling);
    if (access(test_path, R_OK) != 0 || access(model_path, R_OK) != 0) {
        snprintf(metric + strlen(metric), metric_size - strlen(metric), "; ceiling %.3f", dev_ceiling);
        return;
    }
    double test_ceiling = agree_file(w, test_path, &pairs);
    Judgement j = judge_file(w, model_path, tok_path, test_path);
    double acc = j.pairs ? (double)j.label_agree / j.pairs : 0.0;
    const char *dev = strstr(metric, "accuracy ");
    double dev_acc = dev ? atof(dev + 9) : 0.0;
    snprintf(metric, metric_size, "accuracy dev %.3f, test %.3f (ceilings %.3f, %.3f)", dev_acc, acc, dev_ceiling,
             test_ceiling);
    fprintf(json, ", \"test\": {\"pairs\": \"%s\", \"accuracy\": %.4f, \"accuracy_ceiling\": %.4f, \"by_kind\": {", test_path, acc,
            test_ceiling);
    fprintf(table, "\nthe reward model on %s (test), against the referee, by kind of pair:\n ", test_path);
    for (int k = 0; k < NUM_PAIR_KINDS; k++) {
        double a = j.n[k] ? (double)j.agree[k] / j.n[k] : 0.0;
        fprintf(table, " %s %.3f (%d)%s", PAIR_KIND_NAMES[k], a, j.n[k], k + 1 < NUM_PAIR_KINDS ? ";" : "\n");
        fprintf(json, "%s\"%s\": {\"pairs\": %d, \"agree\": %.4f}", k ? ", " : "", PAIR_KIND_KEYS[k], j.n[k], a);
    }
    fprintf(json, "}}");
}

// How far a question type's correct share may fall below SFT's before the alignment
// block names it as a regression: about one answer in fifty.
#define REGRESSION 0.02

// A stage's figures in the alignment block: the referee's shares, and the record's.
typedef struct {
    double correct, ideal, top_share, rm_score, kl, seconds;
    int has_rm_score, has_kl;
} AlignFigures;

static AlignFigures align_figures(const StageRow *r) {
    AlignFigures f = {0};
    double n = r->s.scored > 0 ? r->s.scored : 1;
    f.correct = r->s.correct / n;
    f.ideal = r->s.ideal / n;
    f.top_share = r->s.top_share;
    f.seconds = atof(r->v[ST_SECONDS]);
    f.has_rm_score = stage_number(r->rm_score, &f.rm_score);
    f.has_kl = stage_number(r->kl, &f.kl);
    return f;
}

// A cell of the alignment block: "0.715 (+0.250)", the figure and its change from
// SFT's; the figure alone without SFT's; "-" without the figure.
static const char *align_cell(char *cell, size_t size, const char *fmt, double x, int has, double ref, int has_ref) {
    if (!has) { snprintf(cell, size, "-"); return cell; }
    int len = snprintf(cell, size, fmt, x);
    if (has_ref && len > 0 && (size_t)len < size) { snprintf(cell + len, size - (size_t)len, " (%+.3f)", x - ref); }
    return cell;
}

// The three ways of aligning the SFT model side by side, when at least two of them
// answered: per method the referee's correct and fully preferred shares, the reward
// model's score, KL to SFT, the time and the top template's share, each with its change
// from SFT's row, so that a reader sees at a glance which method moved what; then, per
// method, the question types whose correct share fell more than REGRESSION below SFT's.
// With SFT's answers graded, the changes also go to summary.json ("alignment_vs_sft").
static void summary_alignment(const StageRow rows[NROWS], FILE *table, FILE *json) {
    static const int METHODS[3] = {ROW_RLHF, ROW_DPO, ROW_GRPO};
    static const char *LABELS[3] = {"rlhf (PPO)", "dpo", "grpo"};
    int methods = 0;
    for (int i = 0; i < 3; i++) { methods += rows[METHODS[i]].graded; }
    if (methods < 2) { return; }
    const StageRow *sft = &rows[ROW_SFT];
    AlignFigures ref = sft->graded ? align_figures(sft) : (AlignFigures){0};
    fprintf(table, "\nalignment: rlhf (PPO), dpo and grpo each start from the SFT model; in brackets, each figure's change\n"
            "from SFT's row (KL to SFT is itself a change from SFT; time is each stage's own)\n");
    fprintf(table, "%-11s %-15s %-15s %-16s %-9s %-15s %6s\n", "method", "correct", "fully pr", "RM score", "KL to SFT",
            "top template", "time");
    char c1[32], c2[32], c3[32], c4[32], c5[32];
    if (sft->graded) {
        fprintf(table, "%-11s %-15s %-15s %-16s %-9s %-15s %5.0fs\n", "sft", align_cell(c1, 32, "%.3f", ref.correct, 1, 0, 0),
                align_cell(c2, 32, "%.3f", ref.ideal, 1, 0, 0), align_cell(c3, 32, "%+.3f", ref.rm_score, ref.has_rm_score, 0, 0),
                align_cell(c4, 32, "%.3f", ref.kl, ref.has_kl, 0, 0), align_cell(c5, 32, "%.3f", ref.top_share, 1, 0, 0),
                ref.seconds);
    }
    for (int i = 0; i < 3; i++) {
        const StageRow *r = &rows[METHODS[i]];
        if (!r->graded) { continue; }
        AlignFigures f = align_figures(r);
        int g = sft->graded;
        fprintf(table, "%-11s %-15s %-15s %-16s %-9s %-15s %5.0fs\n", LABELS[i],
                align_cell(c1, 32, "%.3f", f.correct, 1, ref.correct, g), align_cell(c2, 32, "%.3f", f.ideal, 1, ref.ideal, g),
                align_cell(c3, 32, "%+.3f", f.rm_score, f.has_rm_score, ref.rm_score, g && ref.has_rm_score),
                align_cell(c4, 32, "%.3f", f.kl, f.has_kl, 0, 0), align_cell(c5, 32, "%.3f", f.top_share, 1, ref.top_share, g),
                f.seconds);
    }
    if (!sft->graded) {
        fprintf(table, "regressions: none to name, without SFT's answers to compare with\n");
        return;
    }
    // regressions: the question types where a method answers right less often than SFT,
    // one line per method
    Str line = {0};
    int any = 0, first = 1;
    fprintf(json, ", \"alignment_vs_sft\": {");
    for (int i = 0; i < 3; i++) {
        const StageRow *r = &rows[METHODS[i]];
        if (!r->graded) { continue; }
        AlignFigures f = align_figures(r);
        fprintf(json, "%s\"%s\": {\"correct\": %.4f, \"fully_preferred\": %.4f, \"top_template_share\": %.4f", first ? "" : ", ",
                ROW_STAGES[METHODS[i]], f.correct - ref.correct, f.ideal - ref.ideal, f.top_share - ref.top_share);
        if (f.has_rm_score && ref.has_rm_score) { fprintf(json, ", \"rm_score\": %.4f", f.rm_score - ref.rm_score); }
        fprintf(json, ", \"regressions\": {");
        str_addf(&line, "  %-10s", LABELS[i]);
        first = 0;
        int found = 0;
        for (int t = 0; t < NTYPES; t++) {
            if (r->s.n_type[t] == 0 || sft->s.n_type[t] == 0) { continue; }
            double drop = r->s.correct_type[t] / r->s.n_type[t] - sft->s.correct_type[t] / sft->s.n_type[t];
            if (drop >= -REGRESSION) { continue; }
            fprintf(json, "%s\"%s\": %.4f", found ? ", " : "", TYPE_KEYS[t], drop);
            str_addf(&line, "%s %s %+.3f", found ? "," : "", TYPE_NAMES[t], drop);
            found++;
        }
        str_addf(&line, "%s\n", found ? "" : " none");
        any += found;
        fprintf(json, "}}");
    }
    fprintf(json, "}");
    if (any) {
        fprintf(table, "regressions: the question types whose correct share is more than %.2f below SFT's\n%s", REGRESSION, line.s);
    } else {
        fprintf(table, "regressions: no question type below SFT by more than %.2f\n", REGRESSION);
    }
    str_free(&line);
}

void summary(const World *w, const char *out_dir, FILE *table) {
    char path[4096], err[8192]; // err holds a path
    snprintf(path, sizeof(path), "%s/stages.jsonl", out_dir);
    JsonlRecords rec;
    StageRow rows[NROWS];
    if (stages_read(path, rows, &rec, err, sizeof(err))) { die("%s (run the stages first: make run-cpu)", err); }
    snprintf(path, sizeof(path), "%s/summary.json", out_dir);
    FILE *json = fopenCheck(path, "wb");
    fprintf(json, "{\"stages\": [");
    const char *prompts = "";
    for (int k = 0; k < NROWS; k++) { if (rows[k].v[ST_STAGE] && rows[k].v[ST_PROMPTS][0]) { prompts = rows[k].v[ST_PROMPTS]; } }
    fprintf(table, "\n== the pipeline: each stage's model, its key metric, and the referee's grades of its answers to\n"
            "   %s (%s split: animals no stage trained on; fully preferred = correct, polite and concise).\n"
            "   rlhf (PPO), dpo and grpo each align the SFT model; for them, RM score is the reward model's mean score\n"
            "   of those answers and KL the policy's KL to the SFT model per answer\n",
            prompts, split_of(prompts));
    fprintf(table, "%-8s %-54s %7s %7s %7s %7s %8s %8s %6s %7s\n", "stage", "key metric", "correct", "polite", "concise",
            "score", "fully pr", "RM score", "KL", "time");
    double total = 0.0;
    int first = 1;
    for (int k = 0; k < NROWS; k++) {
        StageRow *r = &rows[k];
        if (!r->v[ST_STAGE]) { continue; }
        char **v = r->v, metric[512], rm_cell[32], kl_cell[32];
        double seconds = atof(v[ST_SECONDS]), x;
        const char *answers = v[ST_ANSWERS];
        snprintf(metric, sizeof(metric), "%s", v[ST_METRIC]);
        total += seconds;
        Str js = {0};
        str_addf(&js, "%s\n  {\"stage\": \"%s\", \"model\": \"%s.bin\", \"trained\": ", first ? "" : ",", ROW_STAGES[k], ROW_MODELS[k]);
        json_write_string(&js, v[ST_TRAINED]);
        str_add(&js, ", \"metric\": ", 12);
        json_write_string(&js, v[ST_METRIC]);
        fprintf(json, "%s, \"seconds\": %.1f", str_cstr(&js), seconds);
        str_free(&js);
        if (stage_number(r->rm_score, &x)) { fprintf(json, ", \"rm_score\": %.4f", x); }
        if (stage_number(r->kl, &x)) { fprintf(json, ", \"kl_to_sft\": %.4f", x); }
        first = 0;
        if (k == ROW_RM && v[ST_VAL][0]) { summary_reward(w, out_dir, v[ST_VAL], table, json, metric, sizeof(metric)); }
        stage_cell(rm_cell, sizeof(rm_cell), "%+.3f", r->rm_score);
        stage_cell(kl_cell, sizeof(kl_cell), "%.3f", r->kl);
        snprintf(path, sizeof(path), "%s/%s", out_dir, answers);
        if (answers[0] && access(path, R_OK) == 0) {
            ScoreSummary s = score_file(w, path, NULL, "response");
            r->s = s;
            r->graded = 1;
            double n = s.scored > 0 ? s.scored : 1;
            fprintf(table, "%-8s %-54.54s %7.3f %7.3f %7.3f %7.3f %8.3f %8s %6s %6.0fs\n", ROW_STAGES[k], metric, s.correct / n,
                    s.polite / n, s.concise / n, s.score / n, s.ideal / n, rm_cell, kl_cell, seconds);
            fprintf(json, ", \"referee\": {\"prompts\": \"%s\", \"split\": \"%s\", \"answers\": %d, \"correct\": %.4f, "
                    "\"polite\": %.4f, \"concise\": %.4f, \"score\": %.4f, \"fully_preferred\": %.4f, \"by_type\": {",
                    v[ST_PROMPTS], split_of(v[ST_PROMPTS]), s.lines, s.correct / n, s.polite / n, s.concise / n, s.score / n,
                    s.ideal / n);
            for (int t = 0; t < NTYPES; t++) {
                double m = s.n_type[t] > 0 ? s.n_type[t] : 1;
                fprintf(json, "%s\"%s\": {\"answers\": %d, \"correct\": %.4f, \"fully_preferred\": %.4f", t ? ", " : "",
                        TYPE_KEYS[t], s.n_type[t], s.correct_type[t] / m, s.ideal_type[t] / m);
                if (t == T_YESNO) {
                    fprintf(json, ", \"states_fact\": %d, \"fact_true\": %d, \"verdict_against_fact\": %d", s.states_fact,
                            s.fact_true, s.verdict_against_fact);
                }
                fprintf(json, "}");
            }
            fprintf(json, "}, \"top_template_share\": %.4f, \"top_template\": ", s.top_share);
            Str tj = {0};
            json_write_string(&tj, s.top_template);
            fprintf(json, "%s}", str_cstr(&tj));
            str_free(&tj);
        } else {
            fprintf(table, "%-8s %-54.54s %7s %7s %7s %7s %8s %8s %6s %6.0fs\n", ROW_STAGES[k], metric, "-", "-", "-", "-", "-",
                    rm_cell, kl_cell, seconds);
        }
        fprintf(json, "}");
    }
    fprintf(table, "%-8s %-54s %7s %7s %7s %7s %8s %8s %6s %6.0fs\n", "total", "", "", "", "", "", "", "", "", total);
    fprintf(json, "\n]");
    summary_alignment(rows, table, json);
    fprintf(json, ", \"total_seconds\": %.1f}\n", total);
    fcloseCheck(json);

    // by question type, so that no aggregate hides a regression; and how uniform the answers are
    fprintf(table, "\nby question type: correct / fully preferred (answers); the four types of first questions are the\n"
            "single-turn prompts, follow-up the second turns of conversations; top template: the share of answers\n"
            "that follow the most common one (names, values and numbers as slots)\n%-8s", "stage");
    for (int t = 0; t < NTYPES; t++) { fprintf(table, " %-17s", TYPE_NAMES[t]); }
    fprintf(table, " top template\n");
    const char *labels[NROWS];
    double grades[NROWS][5];
    int bars = 0;
    for (int k = 0; k < NROWS; k++) {
        if (!rows[k].graded) { continue; }
        const ScoreSummary *s = &rows[k].s;
        fprintf(table, "%-8s", ROW_STAGES[k]);
        for (int t = 0; t < NTYPES; t++) {
            double m = s->n_type[t] > 0 ? s->n_type[t] : 1;
            char cell[32];
            snprintf(cell, sizeof(cell), "%.3f / %.3f (%d)", s->correct_type[t] / m, s->ideal_type[t] / m, s->n_type[t]);
            fprintf(table, " %-17s", cell);
        }
        char shown[41];
        snprintf(shown, sizeof(shown), "%s", s->top_template);
        for (char *c = shown; *c; c++) { if (*c == '\n') { *c = ' '; } } // one line per stage
        fprintf(table, " %.3f %s\n", s->top_share, shown);
        double n = s->scored > 0 ? s->scored : 1;
        double g[5] = {s->correct / n, s->polite / n, s->concise / n, s->score / n, s->ideal / n};
        memcpy(grades[bars], g, sizeof(g));
        labels[bars++] = k == ROW_RLHF ? "rlhf (PPO)" : ROW_STAGES[k];
    }
    // yes/no: does the verdict follow from the fact the answer itself states?
    fprintf(table, "\nyes/no answers that state the asked fact, how many of those state it truly, and how many answers\n"
            "say yes or no against their own claim about it (\"No, Bilo eats honey.\" to \"Does Bilo eat honey?\")\n");
    fprintf(table, "%-8s %-16s %-14s %s\n", "stage", "state the fact", "truly", "verdict against own claim");
    for (int k = 0; k < NROWS; k++) {
        if (!rows[k].graded) { continue; }
        const ScoreSummary *s = &rows[k].s;
        char cell[32];
        snprintf(cell, sizeof(cell), "%d of %d", s->states_fact, s->n_type[T_YESNO]);
        fprintf(table, "%-8s %-16s %-14d %d\n", ROW_STAGES[k], cell, s->fact_true, s->verdict_against_fact);
    }
    snprintf(path, sizeof(path), "%s/summary.svg", out_dir);
    summary_svg(path, labels, grades, bars);
    fprintf(table, "(also in %s/summary.json; the grades as bars in %s)\n", out_dir, path);
    jsonl_free(&rec);
    eval_referee(w, out_dir, "rlhf", "RLHF (PPO)", table);
    eval_referee(w, out_dir, "grpo", "GRPO", table);
}

// ----------------------------------------------------------------------------
// 8. command line and main

#ifndef TESTING
static void error_usage(void) {
    GenConfig d = GEN_DEFAULTS;
    fprintf(stderr,
            "usage: world gen   [-s seed] [-n entities] [-f flip] [-d dialogues] [-m MB] [-p pairs] [-o dir]\n"
            "       world score [-s seed] [-n entities] [-k key] [-o per_line.jsonl] [-t label] answers.jsonl\n"
            "       world agree [-s seed] [-n entities] pairs.jsonl   (how often the referee agrees with the labels)\n"
            "       world summary [-s seed] [-n entities] out_dir     (the table of a pipeline run, and summary.json)\n"
            "       world pairs -c model.bin [-z tokenizer.bin] pairs.jsonl  (how a model ranks pairs, by kind)\n"
            "  -s  seed of the world                       (default %llu)\n"
            "  -n  number of entities, 10 to %d           (default %d)\n"
            "  -f  fraction of preference labels flipped  (default %.2f)\n"
            "  -d  fraction made two-turn conversations   (default %.2f of the records that can be)\n"
            "  -m  pretraining train text in MB           (default %.1f; val is a tenth)\n"
            "  -p  preference pairs to train on           (default %d; val is a tenth, at most 400)\n"
            "  -o  gen: output directory                  (default %s)\n"
            "      score: write per-line scores as JSONL  (default: none)\n"
            "  -k  score: the key holding the response    (default response)\n"
            "  -t  score: print one table row with this label instead of the summary\n"
            "  -c  pairs: a reward model, or a language model (ranked by log-probability)\n"
            "  -z  pairs: its tokenizer                   (default: tokenizer.bin beside the model)\n"
            "score and gen must use the same -s and -n: the referee rebuilds the world from them.\n",
            (unsigned long long)d.seed, MAX_ENTITIES, d.entities, d.flip_per_million / 1e6, d.conv_per_million / 1e6, d.pretrain_mb, d.n_pref, d.dir);
    exit(1);
}

// a flag's number, or a clear error naming the flag
static double flag_number(const char *flag, const char *val, double lo, double hi) {
    char *end;
    double x = strtod(val, &end);
    if (end == val || *end != '\0') { die("%s %s: expected a number", flag, val); }
    if (x < lo || x > hi) { die("%s %s: must be between %g and %g", flag, val, lo, hi); }
    return x;
}

int main(int argc, char **argv) {
    if (argc < 2 || (strcmp(argv[1], "gen") && strcmp(argv[1], "score") && strcmp(argv[1], "agree") && strcmp(argv[1], "summary") &&
                     strcmp(argv[1], "pairs"))) {
        error_usage();
    }
    int scoring = strcmp(argv[1], "gen") != 0; // score and agree read a file and grade it
    GenConfig c = GEN_DEFAULTS;
    const char *per_line = NULL, *input = NULL, *key = "response", *label = NULL, *model = NULL, *tokenizer = NULL;
    for (int i = 2; i < argc; i++) {
        const char *flag = argv[i];
        if (flag[0] != '-') {
            if (!scoring || input) { error_usage(); }
            input = flag;
            continue;
        }
        if (i + 1 >= argc || strlen(flag) != 2) { error_usage(); }
        const char *val = argv[++i];
        switch (flag[1]) {
        case 's': c.seed = (uint64_t)flag_number(flag, val, 0, 1e15); break;
        case 'n': c.entities = (int)flag_number(flag, val, 10, MAX_ENTITIES); break;
        case 'f': c.flip_per_million = (int)(flag_number(flag, val, 0, 0.5) * 1e6 + 0.5); break;
        case 'd': c.conv_per_million = (int)(flag_number(flag, val, 0, 1) * 1e6 + 0.5); break;
        case 'm': c.pretrain_mb = flag_number(flag, val, 0.01, 100); break;
        case 'p': c.n_pref = (int)flag_number(flag, val, 10, 1e6); break;
        case 'o': if (scoring) { per_line = val; } else { c.dir = val; } break;
        case 'k': key = val; break;
        case 't': label = val; break;
        case 'c': model = val; break;
        case 'z': tokenizer = val; break;
        default: error_usage();
        }
    }
    if (!scoring) {
        clock_t t0 = clock();
        gen_all(&c);
        printf("world: seed %llu, %d entities, flip %.3f -> %s/ in %.2f s\n", (unsigned long long)c.seed, c.entities,
               c.flip_per_million / 1e6, c.dir, (double)(clock() - t0) / CLOCKS_PER_SEC);
        return 0;
    }
    if (input == NULL) { error_usage(); }
    World w;
    world_build(&w, c.seed, c.entities);
    if (!strcmp(argv[1], "pairs")) {
        if (model == NULL) { error_usage(); }
        char tok_path[4096];
        if (tokenizer) { snprintf(tok_path, sizeof(tok_path), "%s", tokenizer); }
        else { // tokenizer.bin in the model's directory
            const char *slash = strrchr(model, '/');
            snprintf(tok_path, sizeof(tok_path), "%.*stokenizer.bin", slash ? (int)(slash - model + 1) : 0, model);
        }
        judge_pairs(&w, model, tok_path, input);
        world_free(&w);
        return 0;
    }
    if (!strcmp(argv[1], "summary")) {
        summary(&w, input, stdout);
        world_free(&w);
        return 0;
    }
    if (!strcmp(argv[1], "agree")) {
        int pairs;
        double agree = agree_file(&w, input, &pairs);
        printf("referee: agrees with %.4f of the %d labels of %s (the accuracy ceiling of a reward model)\n", agree, pairs, input);
        world_free(&w);
        return 0;
    }
    ScoreSummary s = score_file(&w, input, per_line, key);
    if (label) {
        double m = s.scored > 0 ? s.scored : 1;
        printf("%-10s %7.3f %7.3f %7.3f %7.3f %16.3f\n", label, s.correct / m, s.polite / m, s.concise / m, s.score / m, s.ideal / m);
        world_free(&w);
        return 0;
    }
    double n = s.scored > 0 ? s.scored : 1;
    printf("referee: %s: %d answers, %d scored (%d name no entity of this world)\n", input, s.lines, s.scored,
           s.lines - s.scored);
    printf("  correct %.3f  polite %.3f  concise %.3f  score %.3f  fully preferred %.3f\n", s.correct / n,
           s.polite / n, s.concise / n, s.score / n, s.ideal / n);
    world_free(&w);
    return 0;
}
#endif
