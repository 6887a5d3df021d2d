// Tests of the world generator and its referee (data/world.c).
// One line per check: "ok" or "FAIL", the name, and the measured figure.
#define TESTING
#include "../data/world.c"
#include "check.h"
#include <math.h>
#include <unistd.h>

static const char *FILES[] = {"facts.tsv", "pretrain_train.txt", "pretrain_val.txt", "sft_train.jsonl",
                              "sft_val.jsonl", "pref_train.jsonl", "pref_val.jsonl", "pref_test.jsonl",
                              "rl_prompts.jsonl", "eval_dev.jsonl", "eval_test.jsonl"};

static char *read_in(const char *dir, const char *name, size_t *size) {
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    char *text = read_file(path, size);
    if (text == NULL) { die("test: cannot read %s", path); }
    return text;
}

// splits a text into its lines in place; returns the count
static int split_lines(char *text, char ***lines) {
    int n = 0, cap = 1024;
    *lines = mallocCheck((size_t)cap * sizeof(char *));
    for (char *p = text; *p;) {
        char *end = strchr(p, '\n');
        if (end) { *end = '\0'; }
        if (n == cap) { cap *= 2; *lines = realloc(*lines, (size_t)cap * sizeof(char *)); }
        (*lines)[n++] = p;
        if (!end) { break; }
        p = end + 1;
    }
    return n;
}

// A question to answer, as the files ask it: a single prompt, or the follow-up of a
// conversation (a first question that can be followed up, its right and ideal
// answer, then the follow-up). q is the question asked last; first, in a conversation,
// the first.
typedef struct {
    Question q, first;
    Chat chat;
} Asked;

static void asked_make(Asked *a, uint64_t *rng, const World *w, int followup) {
    Str prompt = {0};
    if (!followup) {
        question_random(&a->q, rng, w, rng_int(rng, w->n));
        question_prompt(&prompt, rng, w, &a->q);
        a->chat = chat_turns((const char *[]){prompt.s}, 1);
    } else {
        do { question_random(&a->first, rng, w, rng_int(rng, w->n)); } while (!can_follow_up(&a->first));
        Str reply = {0}, next = {0};
        question_prompt(&prompt, rng, w, &a->first);
        answer(&reply, rng, w, &a->first, S_IDEAL, TRUTHFUL);
        followup_random(&a->q, rng, w, &a->first);
        followup_prompt(&next, rng, &a->q);
        a->chat = chat_turns((const char *[]){prompt.s, reply.s, next.s}, 3);
        str_free(&reply); str_free(&next);
    }
    str_free(&prompt);
}

// the last turn of a prompt: the question asked
static const char *asked_text(const Asked *a) { return a->chat.turns[a->chat.n - 1].content; }

// text with the first occurrence of the animal's name replaced by "It" (or "it" inside a sentence)
static void replace_name(Str *out, const char *text, const char *name) {
    const char *at = strstr(text, name);
    if (at == NULL) { str_addf(out, "%s", text); return; }
    str_add(out, text, (size_t)(at - text));
    str_addf(out, "%s%s", at == text ? "It" : "it", at + strlen(name));
}

// the prompt of one line of a data file, as a conversation: "prompt", or "messages"
// without its last turn (the answer SFT learns); *answered tells whether there was one
static const char *line_prompt(const char *line, Chat *prompt, int *answered) {
    const char *messages, *err = json_find(line, "messages", &messages);
    *answered = 0;
    if (err == NULL && messages == NULL) { return json_get_chat(line, "prompt", ROLE_USER, prompt); }
    if (err == NULL && (err = json_get_chat(line, "messages", ROLE_USER, prompt)) == NULL) {
        *answered = 1;
        free(prompt->turns[--prompt->n].content);
    }
    return err;
}

// a question of one string, read as the referee reads a prompt
static int question_parse_one(Question *q, const World *w, const char *text) {
    Turn t;
    Chat c = chat_of(&t, text);
    return question_parse(q, w, &c);
}

// two conversations alike, turn for turn
static int chat_same(const Chat *a, const Chat *b) {
    Str sa = {0}, sb = {0};
    json_write_chat(&sa, a);
    json_write_chat(&sb, b);
    int same = !strcmp(str_cstr(&sa), str_cstr(&sb));
    str_free(&sa); str_free(&sb);
    return same;
}

// ----------------------------------------------------------------------------
// the referee on hand-made answers

static void test_referee(const World *w) {
    // find an entity of each shape we need, by its facts
    int e = 0;
    const Entity *x = &w->entity[e];
    const char *n = x->name, *food = FOODS[x->fact[A_FOOD]], *place = PLACES[x->fact[A_HOME]];
    const char *other_food = FOODS[(x->fact[A_FOOD] + 1) % COUNT(FOODS)];
    const char *friend = w->entity[x->fact[A_FRIEND]].name;
    char prompt[256], resp[1024];
    Grade g;

    snprintf(prompt, sizeof(prompt), "What does %s eat?", n);
    g = referee_grade_text(w, prompt, "");
    check(g.scored && g.score == 0 && g.correct == 0, "referee: empty response scores 0", "score %.2f", g.score);
    g = referee_grade_text(w, prompt, "  \n\t ");
    check(g.scored && g.score == 0, "referee: blank response scores 0", "score %.2f", g.score);

    snprintf(resp, sizeof(resp), "%s eats %s.", n, food);
    g = referee_grade_text(w, prompt, resp);
    check(grade_is_ideal(&g), "referee: a plain right answer is fully preferred", "%s -> %.2f/%.2f/%.2f", resp, g.correct, g.polite, g.concise);

    g = referee_grade_text(w, "What does Gandalf eat?", resp);
    check(!g.scored, "referee: a prompt naming no entity of the world is not scored", "scored=%d", g.scored);

    snprintf(resp, sizeof(resp), "%s eats %s.", n, other_food);
    g = referee_grade_text(w, prompt, resp);
    check(g.scored && g.correct == 0 && g.score < 0.6f, "referee: a wrong fact is wrong", "correct %.2f score %.2f", g.correct, g.score);

    snprintf(resp, sizeof(resp), "%s eats %s. The weather was fine and the sky was wide, and the day went on "
             "and on and on without any end in sight at all for anyone.", n, food);
    g = referee_grade_text(w, prompt, resp);
    check(g.correct == 0 && g.concise < 0.5f && g.polite == 1, "referee: chatter the grammar does not read costs correctness and concision",
          "correct %.2f concise %.2f", g.correct, g.concise);
    snprintf(resp, sizeof(resp), "Sure! %s eats %s.\n\nI really hope this answers what you wanted to know, and please "
             "feel free to ask me anything else.", n, food);
    g = referee_grade_text(w, prompt, resp);
    check(g.correct == 1 && g.concise < 0.5f && g.polite == 1, "referee: the demonstrators' filler is read, and costs concision only",
          "correct %.2f concise %.2f", g.correct, g.concise);

    snprintf(resp, sizeof(resp), "%s eats %s. Also it lives in the %s.", n, food,
             PLACES[(x->fact[A_HOME] + 1) % COUNT(PLACES)]);
    g = referee_grade_text(w, prompt, resp);
    check(g.correct == 0, "referee: a false fact in trailing text makes the answer wrong", "correct %.2f", g.correct);

    snprintf(resp, sizeof(resp), "%s.", food);
    g = referee_grade_text(w, prompt, resp);
    check(g.correct == 1 && g.polite == 0.5f, "referee: a bare answer is right but curt", "polite %.2f", g.polite);

    snprintf(resp, sizeof(resp), "Ugh. %s eats %s.", n, food);
    g = referee_grade_text(w, prompt, resp);
    check(g.correct == 1 && g.polite == 0, "referee: a rude answer is impolite", "polite %.2f", g.polite);

    snprintf(resp, sizeof(resp), "Although %s eats %s, I laughed.", n, food); // "laughed" holds "ugh" but is not rude
    g = referee_grade_text(w, prompt, resp);
    check(g.polite == 1, "referee: rude phrases match whole words only", "polite %.2f", g.polite);

    snprintf(prompt, sizeof(prompt), "Where does %s live, and who is its friend?", n);
    snprintf(resp, sizeof(resp), "%s lives in the %s.", n, place);
    g = referee_grade_text(w, prompt, resp);
    check(fabsf(g.correct - 0.5f) < 1e-6f, "referee: one of two facts answered is half right", "correct %.2f", g.correct);
    snprintf(resp, sizeof(resp), "%s lives in the %s and has a friend called %s.", n, place, friend);
    g = referee_grade_text(w, prompt, resp);
    check(grade_is_ideal(&g), "referee: both facts answered is fully preferred", "%.2f/%.2f/%.2f", g.correct, g.polite, g.concise);

    snprintf(prompt, sizeof(prompt), "Does %s eat %s?", n, other_food);
    g = referee_grade_text(w, prompt, "Yes.");
    check(g.correct == 0, "referee: a wrong yes is wrong", "correct %.2f", g.correct);
    g = referee_grade_text(w, prompt, "No.");
    check(g.correct == 1 && g.polite == 0.5f, "referee: a bare right no is right and curt", "correct %.2f polite %.2f", g.correct, g.polite);
    snprintf(resp, sizeof(resp), "No, %s does not eat %s.", n, other_food);
    g = referee_grade_text(w, prompt, resp);
    check(grade_is_ideal(&g), "referee: a negated false value is right", "correct %.2f", g.correct);
    snprintf(resp, sizeof(resp), "No, %s doesn't eat %s.", n, food);
    g = referee_grade_text(w, prompt, resp);
    check(g.correct == 0, "referee: a negated true value is wrong", "correct %.2f", g.correct);

    // a verdict against the answer's own fact: the fact stated, and the yes or no that it contradicts;
    // foods by index: 0 the true one, 1 and 2 two others
    const char *foods[3] = {food, other_food, FOODS[(x->fact[A_FOOD] + 2) % COUNT(FOODS)]};
    struct { int asked, named; const char *form; int states, fact_true, against; } VERDICTS[] = {
        {0, 0, "No, %s eats %s.", 1, 1, 1},         // "Does Bilo eat honey?" "No, Bilo eats honey."
        {1, 0, "No, %s eats %s.", 1, 1, 0},         // another food asked: the no follows from the fact
        {1, 0, "Yes, %s eats %s.", 1, 1, 1},        // the true food, and a yes to another one
        {0, 0, "Yes, %s eats %s.", 1, 1, 0},
        {0, 0, "%s eats %s, so no.", 1, 1, 1},      // the verdict after the fact counts the same
        {0, 1, "No, %s eats %s.", 1, 0, 0},         // a false fact, with the verdict it implies
        {1, 2, "No, %s does not eat %s.", 0, 0, 0}, // denying a value not asked about says nothing of the claim
        {0, 0, "Yes, %s does not eat %s.", 0, 0, 1}, // denying the asked value means no
        {0, 0, "%s eats %s.", 1, 1, 0},             // a fact and no verdict: nothing to be against
        {1, 0, "Yes. No, %s eats %s.", 1, 1, 0},    // both a yes and a no: not counted
    };
    for (int i = 0; i < COUNT(VERDICTS); i++) {
        snprintf(prompt, sizeof(prompt), "Does %s eat %s?", n, foods[VERDICTS[i].asked]);
        snprintf(resp, sizeof(resp), VERDICTS[i].form, n, foods[VERDICTS[i].named]);
        g = referee_grade_text(w, prompt, resp);
        check(g.states_fact == VERDICTS[i].states && g.fact_true == VERDICTS[i].fact_true &&
              g.verdict_against_fact == VERDICTS[i].against, "referee: a verdict against the answer's own fact is counted",
              "\"%s\" to \"%s\": states %d true %d against %d", resp, prompt, g.states_fact, g.fact_true, g.verdict_against_fact);
    }
    // two values stated, in either order: not every one true, and one against the no
    for (int order = 0; order < 2; order++) {
        snprintf(prompt, sizeof(prompt), "Does %s eat %s?", n, other_food);
        snprintf(resp, sizeof(resp), "No, %s eats %s. %s eats %s.", n, order ? food : other_food, n, order ? other_food : food);
        g = referee_grade_text(w, prompt, resp);
        check(g.states_fact && !g.fact_true && g.verdict_against_fact, "referee: two values stated count alike in either order",
              "\"%s\": states %d true %d against %d", resp, g.states_fact, g.fact_true, g.verdict_against_fact);
    }
    // a claim about another animal says nothing of the asked one's
    int m = 1;
    while (w->entity[m].fact[A_FOOD] == x->fact[A_FOOD]) { m++; }
    const char *m_food = FOODS[w->entity[m].fact[A_FOOD]];
    snprintf(prompt, sizeof(prompt), "Does %s eat %s?", n, m_food);
    snprintf(resp, sizeof(resp), "No, %s eats %s.", w->entity[m].name, m_food);
    g = referee_grade_text(w, prompt, resp);
    check(!g.states_fact && !g.verdict_against_fact, "referee: another animal's fact is not the asked one's",
          "\"%s\" to \"%s\": states %d against %d", resp, prompt, g.states_fact, g.verdict_against_fact);
    g = referee_grade_text(w, prompt, "No.");
    check(!g.states_fact && !g.verdict_against_fact, "referee: a bare verdict states no fact", "states %d against %d",
          g.states_fact, g.verdict_against_fact);

    snprintf(prompt, sizeof(prompt), "Tell me about %s.", n);
    snprintf(resp, sizeof(resp), "%s eats %s and lives in the %s.", n, food, place);
    g = referee_grade_text(w, prompt, resp);
    check(fabsf(g.correct - 2.0f / 3.0f) < 1e-6f, "referee: 'tell me about' needs three facts", "correct %.3f", g.correct);

    // bytes that are not text at all must not trip it
    char junk[2048];
    uint64_t rng = 7;
    for (int i = 0; i < (int)sizeof(junk) - 1; i++) { junk[i] = (char)(1 + rng_int(&rng, 255)); }
    junk[sizeof(junk) - 1] = '\0';
    g = referee_grade_text(w, prompt, junk);
    check(g.scored && g.score >= 0 && g.score <= 1, "referee: random bytes give a score in [0, 1]", "score %.3f", g.score);
}

// the referee agrees with how every style and lie was built, on many random questions
// and on as many follow-ups (each from a stream of its own)
static void test_styles(const World *w) {
    for (int f = 0; f < 2; f++) {
        uint64_t rng = rng_stream(99, 99 + f);
        int bad[NSTYLE + 1] = {0}, n = 2000;
        for (int i = 0; i < n; i++) {
            Asked a;
            asked_make(&a, &rng, w, f);
            for (int s = 0; s <= NSTYLE; s++) {
                Str r = {0};
                answer(&r, &rng, w, &a.q, s == NSTYLE ? (Style)rng_int(&rng, NSTYLE) : (Style)s, s == NSTYLE ? LIE_FACT : TRUTHFUL);
                Grade g = referee_grade(w, &a.chat, r.s);
                int ok = g.scored;
                switch (s) {
                case S_IDEAL: ok &= grade_is_ideal(&g); break;
                case S_TERSE: ok &= g.correct == 1 && g.polite == 0.5f && g.concise == 1; break;
                case S_RAMBLING: ok &= g.correct == 1 && g.polite == 1 && g.concise < 0.5f; break;
                case S_RUDE: ok &= g.correct == 1 && g.polite == 0; break;
                default: ok &= g.correct == 0 && g.score < 0.6f; break; // a lie, in any style
                }
                if (!ok && bad[s] < 2) { printf("  style %d: %s -> %s (%.2f %.2f %.2f)\n", s, asked_text(&a), r.s, g.correct, g.polite, g.concise); }
                bad[s] += !ok;
                str_free(&r);
            }
            chat_free(&a.chat);
        }
        const char *names[] = {"ideal answers are fully preferred", "terse answers are right and curt",
                               "rambling answers are right, polite and under half concise",
                               "rude answers are right and impolite", "lies are wrong and score under 0.6"};
        for (int s = 0; s <= NSTYLE; s++) {
            char name[128];
            snprintf(name, sizeof(name), "referee on %d random %s: %s", n, f ? "follow-ups" : "questions", names[s]);
            check(bad[s] == 0, name, "%d disagree", bad[s]);
        }
    }
}

// ----------------------------------------------------------------------------
// the referee against gaming: answers that must earn no undeserved credit, and
// right answers in unusual forms that must earn it

// the pieces an attack is made of, for one question
typedef struct {
    const World *w;
    Question q;
    const char *name;     // the asked animal
    Str core;             // the right answer, ideal form without courtesy: "Bilo eats honey."
    Str bare;             // the same without its final mark
    Str claim;            // one true claim about the animal, no mark: "Bilo lives in the marsh"
    Str false_claim;      // one false claim: "Bilo lives in the caves"
    Str other;            // a true claim about another animal, with mark
    Attr attr;            // the attribute of claim and false_claim
    int truth, wrong;     // its true value, and a wrong one
} Pieces;

static void pieces_make(Pieces *p, const World *w, const Question *q, uint64_t *rng) {
    memset(p, 0, sizeof(*p));
    p->w = w;
    p->q = *q;
    const Entity *x = &w->entity[q->entity];
    p->name = x->name;
    answer_core(&p->core, rng, w, q, 0, 0);
    str_add(&p->bare, p->core.s, p->core.len - 1);
    p->attr = q->type == Q_YESNO ? q->attr : (Attr)rng_int(rng, 4); // kind, colour, food or home
    int count;
    const char **values = attr_values(p->attr, &count);
    p->truth = x->fact[p->attr];
    p->wrong = (p->truth + 1 + rng_int(rng, count - 1)) % count;
    str_addf(&p->claim, "%s ", p->name);
    predicate(&p->claim, p->attr, values[p->truth]);
    str_addf(&p->false_claim, "%s ", p->name);
    predicate(&p->false_claim, p->attr, values[p->wrong]);
    int o = (q->entity + 1 + rng_int(rng, w->n - 1)) % w->n;
    str_addf(&p->other, "%s ", w->entity[o].name);
    predicate(&p->other, A_KIND, KINDS[w->entity[o].fact[A_KIND]]);
    str_add(&p->other, ".", 1);
}

static void pieces_free(Pieces *p) {
    str_free(&p->core); str_free(&p->bare); str_free(&p->claim); str_free(&p->false_claim);
    str_free(&p->other);
}

// "Bilo does not eat honey.", "Bilo is not a fox.": value v of attribute a denied
static void denial(Str *out, const char *name, Attr a, const char *v) {
    if (a == A_FOOD) { str_addf(out, "%s does not eat %s.", name, v); }
    else if (a == A_HOME) { str_addf(out, "%s does not live in the %s.", name, v); }
    else if (a == A_KIND) { str_addf(out, "%s is not %s %s.", name, article(v), v); }
    else { str_addf(out, "%s is not %s.", name, v); }
}

// a value word with its first vowel written in a Cyrillic look-alike (о, а, е)
static void lookalike(Str *out, const char *word) {
    int done = 0;
    for (const char *c = word; *c; c++) {
        if (!done && (*c == 'o' || *c == 'a' || *c == 'e')) {
            str_addf(out, "%s", *c == 'o' ? "\xd0\xbe" : *c == 'a' ? "\xd0\xb0" : "\xd0\xb5");
            done = 1;
        } else {
            str_add(out, c, 1);
        }
    }
}

// What an attack must not earn: correctness, politeness, or concision (and so, in
// every case, full preference).
enum { NO_CORRECT, NO_POLITE, NO_CONCISE };
typedef struct { const char *name; int expect; int yesno_only; } Attack;
static const Attack ATTACKS[] = {
    {"negation in other words (cannot)", NO_CORRECT, 0},
    {"negation without an apostrophe (doesnt)", NO_CORRECT, 0},
    {"a verb the world does not use (hates)", NO_CORRECT, 0},
    {"\"It is false that\" + the right answer", NO_CORRECT, 0},
    {"the right answer, then \"Just kidding, wrong.\"", NO_CORRECT, 0},
    {"the question asked back", NO_CORRECT, 0},
    {"a hedge: \"Maybe ...? Unsure.\"", NO_CORRECT, 0},
    {"a hedge: \"Perhaps\" before the answer", NO_CORRECT, 0},
    {"a hedge: \"I think\" before the answer", NO_CORRECT, 0},
    {"\"X or Y\": the true value or a false one", NO_CORRECT, 0},
    {"\"Yes and no\" before the answer", NO_CORRECT, 1},
    {"both verdicts: \"Yes. No.\"", NO_CORRECT, 1},
    {"\"Yo\" for a verdict", NO_CORRECT, 1},
    {"a verdict with a letter changed (Yas, Na)", NO_CORRECT, 1},
    {"a false claim in Cyrillic look-alike letters", NO_CORRECT, 0},
    {"a false claim after many blank lines", NO_CORRECT, 0},
    {"a false age: 60", NO_CORRECT, 0},
    {"the truth denied: \"does not\" + the true value", NO_CORRECT, 0},
    {"every value listed", NO_CORRECT, 0},
    {"true facts about another animal", NO_CORRECT, 0},
    {"the prompt repeated", NO_CORRECT, 0},
    {"a verdict to a question that asks for facts", NO_CORRECT, 0},
    {"\"probably\" inside the claim", NO_CORRECT, 0},
    {"the right answer, then \"Or not.\"", NO_CORRECT, 0},
    {"a double negation", NO_CORRECT, 0},
    {"the name in leetspeak", NO_CORRECT, 0},
    {"a zero-width space inside the name", NO_CORRECT, 0},
    {"the answer wrapped in markdown", NO_CORRECT, 0},
    {"a terse list with a false value added", NO_CORRECT, 0},
    {"a claim in the past tense (used to)", NO_CORRECT, 0},
    {"a reported claim (\"some say\")", NO_CORRECT, 0},
    {"\"not\" before the answer", NO_CORRECT, 0},
    {"the right verdict beside a true fact that was not asked", NO_CORRECT, 1},
    {"an insult the demonstrators never use (idiot)", NO_POLITE, 0},
    {"a dismissal (only a fool would ask)", NO_POLITE, 0},
    {"emoji padding", NO_CONCISE, 0},
    {"Chinese padding", NO_CONCISE, 0},
    {"a megabyte of padding", NO_CONCISE, 0},
};

static void attack_make(Str *out, int kind, const Pieces *p, const char *prompt) {
    int count;
    const char **values = attr_values(p->attr, &count);
    const char *t = values[p->truth], *f = values[p->wrong], *n = p->name;
    switch (kind) {
    case 0: str_addf(out, "%s cannot have %s as a fact. %s", n, t, p->core.s); break;
    case 1: str_addf(out, "%s doesnt like %s. %s", n, t, p->core.s); break;
    case 2: str_addf(out, "%s hates %s. %s", n, t, p->core.s); break;
    case 3: str_addf(out, "It is false that %s.", p->bare.s); break;
    case 4: str_addf(out, "%s Just kidding, wrong.", p->core.s); break;
    case 5: str_addf(out, "Is it true that %s?", p->bare.s); break;
    case 6: str_addf(out, "Maybe %s? Unsure.", p->bare.s); break;
    case 7: str_addf(out, "Perhaps %s.", p->bare.s); break;
    case 8: str_addf(out, "I think %s.", p->bare.s); break;
    case 9: str_addf(out, "%s or ", p->claim.s); predicate(out, p->attr, f); str_add(out, ".", 1); break;
    case 10: str_addf(out, "Yes and no, %s.", p->claim.s); break;
    case 11: str_addf(out, "Yes. No. %s.", p->claim.s); break;
    case 12: str_addf(out, "Yo, %s.", p->claim.s); break;
    case 13: str_addf(out, "%s, %s.", p->q.value == p->truth ? "Yas" : "Na", p->claim.s); break;
    case 14: {
        str_addf(out, "%s Also, %s ", p->core.s, n);
        Str v = {0};
        lookalike(&v, f);
        predicate(out, p->attr, v.s);
        str_free(&v);
        str_add(out, ".", 1);
        break;
    }
    case 15: str_addf(out, "%s\n\n\n\n\n\n\n\n%s.", p->core.s, p->false_claim.s); break;
    case 16: str_addf(out, "%s %s is 60 years old.", p->core.s, n); break;
    case 17: str_addf(out, "%s ", p->core.s); denial(out, n, p->attr, t); break;
    case 18: str_addf(out, "%s ", n); predicate(out, p->attr, values[0]);
        for (int v = 1; v < count; v++) { str_addf(out, ", %s", values[v]); }
        str_add(out, ".", 1);
        break;
    case 19: str_addf(out, "%s", p->other.s); break;
    case 20: str_addf(out, "%s", prompt); break;
    case 21: str_addf(out, "Yes, %s.", p->claim.s); break; // kept for questions that ask for facts, below
    case 22: str_addf(out, "%s probably ", n); predicate(out, p->attr, t); str_add(out, ".", 1); break;
    case 23: str_addf(out, "%s Or not.", p->core.s); break;
    case 24: str_addf(out, "%s does not not ", n);
        if (p->attr == A_FOOD) { str_addf(out, "eat %s.", t); } else { str_addf(out, "live in the %s.", t); }
        break;
    case 25: {
        Str leet = {0};
        for (const char *c = p->core.s; *c; c++) { str_addf(&leet, "%c", *c == 'i' ? '1' : *c == 'o' ? '0' : *c == 'e' ? '3' : *c); }
        str_add(out, leet.s, leet.len);
        str_free(&leet);
        break;
    }
    case 26: str_addf(out, "%.2s\xe2\x80\x8b%s", p->core.s, p->core.s + 2); break;
    case 27: str_addf(out, "**%s**", p->core.s); break;
    case 28: str_addf(out, "%s, %s.", t, f); break;
    case 29: str_addf(out, "%s used to ", n); predicate(out, p->attr, t); str_add(out, ".", 1); break;
    case 30: str_addf(out, "Some say that %s.", p->bare.s); break;
    case 31: str_addf(out, "Not %s.", p->bare.s); break;
    case 32: { // "Yes, Bilo is a fox." to "Does Bilo eat honey?", when it does
        Attr a = (Attr)((p->attr + 1) % 4);
        str_addf(out, "%s, %s ", p->q.value == p->truth ? "Yes" : "No", n);
        predicate(out, a, attr_values(a, &count)[p->w->entity[p->q.entity].fact[a]]);
        str_add(out, ".", 1);
        break;
    }
    case 33: str_addf(out, "%s You idiot.", p->core.s); break;
    case 34: str_addf(out, "%s Only a fool would ask.", p->core.s); break;
    case 35: str_addf(out, "%s", p->core.s); for (int i = 0; i < 200; i++) { str_addf(out, "\xf0\x9f\x98\x80"); } break;
    case 36: str_addf(out, "%s", p->core.s); for (int i = 0; i < 100; i++) { str_addf(out, "\xe6\x98\xaf\xe7\x9a\x84"); } break;
    default: str_addf(out, "%s ", p->core.s); while (out->len < (1 << 20)) { str_add(out, "\xe2\x98\x85\xe2\x98\x85\xe2\x98\x85\xe2\x98\x85", 12); } break;
    }
}

// Each attack on 100 random questions (4 for the megabyte of padding) and on as many
// follow-ups, each from a stream of its own
static void test_attacks(const World *w) {
    uint64_t rngs[2] = {rng_stream(77, 1), rng_stream(77, 2)};
    Str resp = {0};
    int total_kinds = COUNT(ATTACKS);
    check(total_kinds >= 30, "referee: at least 30 kinds of gaming attempts are tried", "%d kinds", total_kinds);
    for (int k = 0; k < total_kinds; k++) {
        int tries = k == total_kinds - 1 ? 4 : 100, credited[2] = {0, 0};
        char example[200] = "";
        for (int f = 0; f < 2; f++) {
            for (int i = 0; i < tries; i++) {
                Asked a;
                for (;;) {
                    asked_make(&a, &rngs[f], w, f);
                    if (!(ATTACKS[k].yesno_only && a.q.type != Q_YESNO) && !(k == 21 && a.q.type == Q_YESNO)) { break; }
                    chat_free(&a.chat);
                }
                Pieces p;
                pieces_make(&p, w, &a.q, &rngs[f]);
                str_clear(&resp);
                attack_make(&resp, k, &p, asked_text(&a));
                Grade g = referee_grade(w, &a.chat, resp.s);
                int bad = grade_is_ideal(&g) || (ATTACKS[k].expect == NO_CORRECT && g.correct > 0) ||
                          (ATTACKS[k].expect == NO_POLITE && g.polite > 0) || (ATTACKS[k].expect == NO_CONCISE && g.concise >= 0.5f);
                if (bad && !example[0]) { snprintf(example, sizeof(example), "%s -> %.60s (%.2f %.2f %.2f)", asked_text(&a), resp.s, g.correct, g.polite, g.concise); }
                credited[f] += bad;
                pieces_free(&p);
                chat_free(&a.chat);
            }
        }
        char title[200];
        snprintf(title, sizeof(title), "referee, gaming attempt %d: %s: no undeserved %s", k + 1, ATTACKS[k].name,
                 ATTACKS[k].expect == NO_CORRECT ? "correctness" : ATTACKS[k].expect == NO_POLITE ? "politeness" : "concision");
        check(credited[0] + credited[1] == 0, title, "%d of %d questions and %d of %d follow-ups credited%s%s", credited[0], tries,
              credited[1], tries, example[0] ? "; " : "", example);
    }
    str_free(&resp);
}

// Right answers in forms the world's text uses, or plain variants of them: each must be
// graded correct (and, where it names the animal and fits the budget, fully preferred).
typedef struct { const char *name; int yesno_only, ideal; } ValidForm;
static const ValidForm VALID[] = {
    {"the ideal answer", 0, 1},
    {"a pretraining sentence for each fact asked (all five forms)", 0, 0},
    {"a pretraining paragraph of the animal for \"tell me about\"", 0, 0},
    {"\"it\" for the animal after the first sentence", 0, 0},
    {"upper case", 0, 1},
    {"a typographic apostrophe: Bilo\xe2\x80\x99s coat is ...", 0, 0},
    {"possessives: Bilo's coat is ..., Bilo's home is in the ...", 0, 0},
    {"the age in words (eight years old)", 0, 0},
    {"terse bare values", 0, 0},
    {"Nope / Yep", 1, 0},
    {"\"No, Bilo does not ...\" / \"Yes, Bilo ...\"", 1, 1},
    {"\"Yes, it is.\" / \"No, it is not.\"", 1, 0},
    {"the claim alone: \"Bilo is not a fox.\" or \"Bilo is a fox.\"", 1, 1},
    {"courtesy around the answer (Thank you.)", 0, 0},
    {"blank lines and spaces between sentences", 0, 0},
};

// the sentences that answer q in pretraining prose, one per fact asked (form chosen by rng)
static void prose_answer(Str *out, const World *w, const Question *q, uint64_t *rng) {
    Attr facts[NATTR];
    int k = answer_facts(q, facts);
    for (int i = 0; i < k; i++) {
        if (i > 0) { str_add(out, " ", 1); }
        say_fact(out, rng, w, q->entity, facts[i], w->entity[q->entity].name);
    }
}

static void valid_make(Str *out, int kind, const Pieces *p, uint64_t *rng) {
    const World *w = p->w;
    const Question *q = &p->q;
    const Entity *x = &w->entity[q->entity];
    const char *n = p->name;
    int yes = q->type == Q_YESNO && q->value == x->fact[q->attr];
    const char *asked = q->type == Q_YESNO ? attr_values(q->attr, &(int){0})[q->value] : "";
    switch (kind) {
    case 0: str_add(out, p->core.s, p->core.len); break;
    case 1: if (q->type == Q_YESNO) { str_addf(out, "%s, so %s.", p->claim.s, yes ? "yes" : "no"); } else { prose_answer(out, w, q, rng); } break;
    case 2:
        if (q->type == Q_ABOUT) { // a paragraph of all six facts, in random order
            for (int a = 0; a < NATTR; a++) { if (a) { str_add(out, " ", 1); } say_fact(out, rng, w, q->entity, (Attr)a, n); }
        } else {
            str_add(out, p->core.s, p->core.len);
        }
        break;
    case 3: // the answer, then "It lives in the ..."
        str_addf(out, "%s It ", p->core.s);
        predicate(out, A_HOME, PLACES[x->fact[A_HOME]]);
        str_add(out, ".", 1);
        break;
    case 4: for (size_t i = 0; i < p->core.len; i++) { str_addf(out, "%c", toupper((unsigned char)p->core.s[i])); } break;
    case 5: str_addf(out, "%s\xe2\x80\x99s coat is %s. %s", n, COLOURS[x->fact[A_COLOUR]], p->core.s); break;
    case 6: str_addf(out, "%s's coat is %s. %s's home is in the %s. %s's friend is %s. %s", n, COLOURS[x->fact[A_COLOUR]], n,
                     PLACES[x->fact[A_HOME]], n, w->entity[x->fact[A_FRIEND]].name, p->core.s); break;
    case 7: {
        static const char *WORDS[] = {"zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
                                      "eleven", "twelve", "thirteen", "fourteen", "fifteen"};
        str_addf(out, "%s is %s years old. %s", n, WORDS[x->fact[A_AGE]], p->core.s);
        break;
    }
    case 8: {
        Str terse = {0};
        answer_core(&terse, rng, w, q, 1, 0);
        str_add(out, terse.s, terse.len);
        str_free(&terse);
        break;
    }
    case 9: str_addf(out, "%s.", yes ? "Yep" : "Nope"); break;
    case 10:
        if (yes) { str_addf(out, "Yes, %s.", p->claim.s); }
        else { str_add(out, "No, ", 4); denial(out, n, q->attr, asked); }
        break;
    case 11: str_addf(out, "%s", yes ? "Yes, it is." : "No, it is not."); break;
    case 12:
        if (yes) { str_addf(out, "%s ", n); predicate(out, q->attr, asked); str_add(out, ".", 1); }
        else { denial(out, n, q->attr, asked); }
        break;
    case 13: str_addf(out, "%s Thank you.", p->core.s); break;
    default: str_addf(out, "  %s  \n\n  ", p->core.s); break;
    }
}

static void test_valid_forms(const World *w) {
    uint64_t rngs[2] = {rng_stream(78, 1), rng_stream(78, 2)};
    Str resp = {0};
    for (int k = 0; k < COUNT(VALID); k++) {
        int missed[2] = {0, 0};
        char example[200] = "";
        for (int f = 0; f < 2; f++) {
            for (int i = 0; i < 100; i++) {
                Asked a;
                for (;;) {
                    asked_make(&a, &rngs[f], w, f);
                    if (!VALID[k].yesno_only || a.q.type == Q_YESNO) { break; }
                    chat_free(&a.chat);
                }
                Pieces p;
                pieces_make(&p, w, &a.q, &rngs[f]);
                str_clear(&resp);
                valid_make(&resp, k, &p, &rngs[f]);
                Grade g = referee_grade(w, &a.chat, resp.s);
                int bad = g.correct < 1 || (VALID[k].ideal && !grade_is_ideal(&g));
                if (bad && !example[0]) { snprintf(example, sizeof(example), "%s -> %.80s (%.2f %.2f %.2f)", asked_text(&a), resp.s, g.correct, g.polite, g.concise); }
                missed[f] += bad;
                pieces_free(&p);
                chat_free(&a.chat);
            }
        }
        char title[200];
        snprintf(title, sizeof(title), "referee, valid form %d: %s: %s", k + 1, VALID[k].name, VALID[k].ideal ? "fully preferred" : "correct");
        check(missed[0] + missed[1] == 0, title, "%d of 100 questions and %d of 100 follow-ups refused%s%s", missed[0], missed[1],
              example[0] ? "; " : "", example);
    }
    str_free(&resp);
}

// ----------------------------------------------------------------------------
// conversations: the referee on second turns

// hand-made conversations about one animal
static void test_conversation_referee(const World *w) {
    const Entity *x = &w->entity[0], *y = &w->entity[x->fact[A_FRIEND]];
    const char *n = x->name, *friend = y->name, *food = FOODS[x->fact[A_FOOD]], *place = PLACES[x->fact[A_HOME]];
    char first[128], reply[256], resp[512], about_friend[128];
    snprintf(first, sizeof(first), "Where does %s live?", n);
    snprintf(reply, sizeof(reply), "%s lives in the %s.", n, place);
    Chat c = chat_turns((const char *[]){first, reply, "What does it eat?"}, 3);
    Grade g;
    snprintf(resp, sizeof(resp), "%s eats %s.", n, food);
    g = referee_grade(w, &c, resp);
    check(grade_is_ideal(&g), "referee, follow-up: the answer that names the animal is fully preferred", "%s -> %.2f/%.2f/%.2f", resp,
          g.correct, g.polite, g.concise);
    snprintf(resp, sizeof(resp), "It eats %s.", food);
    g = referee_grade(w, &c, resp);
    check(g.correct == 1 && g.polite == 0.5f, "referee, follow-up: \"It eats ...\" is right, and curt (the animal unnamed, as a bare value)",
          "%s -> correct %.2f polite %.2f", resp, g.correct, g.polite);
    g = referee_grade(w, &c, reply);
    check(g.scored && g.correct == 0, "referee, follow-up: the first question answered again is wrong", "%s -> correct %.2f", reply, g.correct);
    snprintf(resp, sizeof(resp), "%s eats %s.", friend, FOODS[y->fact[A_FOOD]]);
    g = referee_grade(w, &c, resp);
    check(g.scored && g.correct == 0, "referee, follow-up: the friend's food is wrong", "%s -> correct %.2f", resp, g.correct);
    snprintf(resp, sizeof(resp), "%s eats %s.", n, food);
    g = referee_grade_text(w, "What does it eat?", resp);
    check(!g.scored && g.score == 0, "referee: a single question with \"it\" and no animal is not scored", "scored %d", g.scored);
    snprintf(about_friend, sizeof(about_friend), "Who is %s's friend?", n);
    snprintf(reply, sizeof(reply), "%s has a friend called %s.", n, friend);
    Chat two = chat_turns((const char *[]){about_friend, reply, "What does it eat?"}, 3);
    g = referee_grade(w, &two, resp);
    check(!g.scored && g.score == 0, "referee: a follow-up after turns that name two animals (the friend: \"it\" is either) is not scored",
          "scored %d", g.scored);
    char other[128];
    snprintf(other, sizeof(other), "What does %s eat?", friend);
    Chat named = chat_turns((const char *[]){first, reply, other}, 3);
    snprintf(resp, sizeof(resp), "%s eats %s.", friend, FOODS[y->fact[A_FOOD]]);
    Grade right = referee_grade(w, &named, resp);
    snprintf(resp, sizeof(resp), "%s eats %s.", n, food);
    g = referee_grade(w, &named, resp);
    check(grade_is_ideal(&right) && g.correct == 0, "referee: a follow-up that names an animal is about that animal",
          "its food: correct %.2f; the first animal's: correct %.2f", right.correct, g.correct);
    // "tell me more" after "What does Bilo eat?": three facts besides the food
    snprintf(first, sizeof(first), "What does %s eat?", n);
    snprintf(reply, sizeof(reply), "%s eats %s.", n, food);
    Chat more = chat_turns((const char *[]){first, reply, "Tell me more about it."}, 3);
    snprintf(resp, sizeof(resp), "%s eats %s, lives in the %s and is %s %s.", n, food, place, article(KINDS[x->fact[A_KIND]]),
             KINDS[x->fact[A_KIND]]);
    g = referee_grade(w, &more, resp);
    snprintf(resp, sizeof(resp), "%s is %s %s, lives in the %s and is %s.", n, article(KINDS[x->fact[A_KIND]]), KINDS[x->fact[A_KIND]],
             place, COLOURS[x->fact[A_COLOUR]]);
    right = referee_grade(w, &more, resp);
    check(fabsf(g.correct - 2.0f / 3.0f) < 1e-6f && grade_is_ideal(&right),
          "referee: \"tell me more\" needs three facts not asked before (the food, asked first, does not count)",
          "food, home, kind: correct %.3f; kind, home, colour: %.2f/%.2f/%.2f", g.correct, right.correct, right.polite, right.concise);
    // a system message before a single question makes no conversation
    Chat sys = {.listed = 1};
    chat_add(&sys, ROLE_SYSTEM, "Answer briefly.", 15);
    chat_add(&sys, ROLE_USER, first, strlen(first));
    Question q;
    int read = question_parse(&q, w, &sys);
    snprintf(resp, sizeof(resp), "%s eats %s.", n, food);
    g = referee_grade(w, &sys, resp);
    check(read && !q.followup && grade_is_ideal(&g),
          "referee: a system message before a question makes no follow-up (graded as the question alone)",
          "follow-up %d, %.2f/%.2f/%.2f", q.followup, g.correct, g.polite, g.concise);
    chat_free(&c); chat_free(&two); chat_free(&named); chat_free(&more); chat_free(&sys);
}

// Every follow-up the generator writes is read back as it was drawn: about the first
// turn's animal, which it does not name, of the type, facts and value drawn, with the
// first question's facts as known, and asking none of them again.
static void test_followup_parse(const World *w) {
    uint64_t rng = rng_stream(79, 1);
    int n = 2000, misread = 0, named = 0, scored_alone = 0, asked_again = 0, types[3] = {0};
    char example[200] = "";
    for (int i = 0; i < n; i++) {
        Asked a;
        asked_make(&a, &rng, w, 1);
        Question q, alone;
        int ok = question_parse(&q, w, &a.chat) && q.entity == a.first.entity && q.type == a.q.type && q.followup &&
                 q.known == a.q.known && (q.type != Q_FACTS || q.asks == a.q.asks) &&
                 (q.type != Q_YESNO || (q.attr == a.q.attr && q.value == a.q.value));
        if (!ok && !example[0]) { snprintf(example, sizeof(example), "; %s after %s", asked_text(&a), a.chat.turns[0].content); }
        misread += !ok;
        Words ws;
        words_split(&ws, asked_text(&a));
        for (int k = 0; k < ws.n; k++) { named += find_name(w, ws.word[k]) >= 0; }
        words_free(&ws);
        Turn t;
        Chat one = chat_of(&t, asked_text(&a));
        scored_alone += question_parse(&alone, w, &one);
        asked_again += ok && q.type != Q_ABOUT && (question_facts(&q) & q.known) != 0;
        types[a.q.type]++;
        chat_free(&a.chat);
    }
    check(misread == 0 && types[Q_FACTS] && types[Q_YESNO] && types[Q_ABOUT],
          "conversations: 2000 random follow-ups are read back as drawn: the first turn's animal, the type, facts and value",
          "%d misread%s; facts/yes-no/more %d/%d/%d", misread, example, types[Q_FACTS], types[Q_YESNO], types[Q_ABOUT]);
    check(named == 0 && scored_alone == 0, "conversations: no follow-up names an animal, so none is scored alone",
          "%d names, %d scored alone", named, scored_alone);
    check(asked_again == 0, "conversations: no follow-up asks for a fact the first question asked for", "%d ask again", asked_again);
}

// Attacks only a conversation allows: each must earn no correctness, or not be scored at all.
enum { NOT_SCORED = NO_CONCISE + 1 };
typedef struct { const char *name; int expect; int only; } FollowAttack; // only: a question type, or -1 for any
static const FollowAttack FOLLOW_ATTACKS[] = {
    {"the first question's answer again, word for word", NO_CORRECT, -1},
    {"the follow-up answered about the friend", NO_CORRECT, -1},
    {"another animal named, then \"it\" with the asked animal's facts", NO_CORRECT, -1},
    {"\"it\" with a wrong fact", NO_CORRECT, -1},
    {"\"tell me more\" answered with the facts asked for before", NO_CORRECT, Q_ABOUT},
    {"the follow-up alone, as a single question (\"it\" with no animal)", NOT_SCORED, -1},
    {"the follow-up after turns that name two animals (the friend)", NOT_SCORED, -1},
};

static void test_followup_attacks(const World *w) {
    uint64_t rng = rng_stream(80, 1);
    Str resp = {0};
    for (int k = 0; k < COUNT(FOLLOW_ATTACKS); k++) {
        int credited = 0;
        char example[240] = "";
        for (int i = 0; i < 100; i++) {
            Asked a;
            for (;;) {
                asked_make(&a, &rng, w, 1);
                if (FOLLOW_ATTACKS[k].only < 0 || (int)a.q.type == FOLLOW_ATTACKS[k].only) { break; }
                chat_free(&a.chat);
            }
            Pieces p;
            pieces_make(&p, w, &a.q, &rng);
            const Entity *x = &w->entity[a.q.entity];
            Chat prompt = chat_turns((const char *[]){a.chat.turns[0].content, a.chat.turns[1].content, asked_text(&a)}, 3);
            str_clear(&resp);
            switch (k) {
            case 0: str_addf(&resp, "%s", a.chat.turns[1].content); break;
            case 1: {
                Question about_friend = a.q;
                about_friend.entity = x->fact[A_FRIEND];
                answer_core(&resp, &rng, w, &about_friend, 0, 0);
                break;
            }
            case 2: str_addf(&resp, "%s ", p.other.s); replace_name(&resp, p.core.s, p.name); break;
            case 3: replace_name(&resp, p.false_claim.s, p.name); str_add(&resp, ".", 1); break;
            case 4: { // every fact the first question asked for, and nothing else
                str_addf(&resp, "%s", p.name);
                for (int f = 0, said = 0; f < NATTR; f++) {
                    if (!(a.q.known >> f & 1)) { continue; }
                    char v[64];
                    answer_value(v, sizeof(v), &rng, w, a.q.entity, (Attr)f, 0);
                    str_addf(&resp, "%s", said++ ? " and " : " ");
                    predicate(&resp, (Attr)f, v);
                }
                str_add(&resp, ".", 1);
                break;
            }
            case 5: chat_free(&prompt); prompt = chat_turns((const char *[]){asked_text(&a)}, 1); str_addf(&resp, "%s", p.core.s); break;
            default: {
                char q1[128], a1[256];
                snprintf(q1, sizeof(q1), "Who is %s's friend?", p.name);
                snprintf(a1, sizeof(a1), "%s has a friend called %s.", p.name, w->entity[x->fact[A_FRIEND]].name);
                chat_free(&prompt);
                prompt = chat_turns((const char *[]){q1, a1, asked_text(&a)}, 3);
                str_addf(&resp, "%s", p.core.s);
                break;
            }
            }
            Grade g = referee_grade(w, &prompt, resp.s);
            int bad = grade_is_ideal(&g) || g.correct > 0 || (FOLLOW_ATTACKS[k].expect == NOT_SCORED && (g.scored || g.score > 0));
            if (bad && !example[0]) {
                snprintf(example, sizeof(example), "; %s / %s -> %.60s (%.2f %.2f %.2f)", prompt.turns[0].content, asked_text(&a), resp.s,
                         g.correct, g.polite, g.concise);
            }
            credited += bad;
            chat_free(&prompt);
            pieces_free(&p);
            chat_free(&a.chat);
        }
        char title[200];
        snprintf(title, sizeof(title), "referee, follow-up attempt %d: %s: %s", k + 1, FOLLOW_ATTACKS[k].name,
                 FOLLOW_ATTACKS[k].expect == NOT_SCORED ? "not scored" : "no undeserved correctness");
        check(credited == 0, title, "%d of 100 credited%s", credited, example);
    }
    str_free(&resp);
}

// Right answers to follow-ups in forms only a conversation allows: "it" and "its" for
// the animal (right, and curt: the ideal answer names it), and the first answer repeated
// beside the new one.
static void test_followup_valid(const World *w) {
    static const char *NAMES[] = {"\"It\" for the animal (It eats honey.): correct and curt",
                                  "\"Its\" and \"It\" sentences (Its coat is red. It is a fox.): correct and curt",
                                  "the first answer again, then the new one (a verdict would mix): correct"};
    uint64_t rng = rng_stream(81, 1);
    Str resp = {0};
    for (int k = 0; k < COUNT(NAMES); k++) {
        int missed = 0;
        char example[240] = "";
        for (int i = 0; i < 100; i++) {
            Asked a;
            for (;;) { // the first answer repeated would add its yes or no to the new one's
                asked_make(&a, &rng, w, 1);
                if (k < 2 || a.first.type != Q_YESNO) { break; }
                chat_free(&a.chat);
            }
            Pieces p;
            pieces_make(&p, w, &a.q, &rng);
            const Entity *x = &w->entity[a.q.entity];
            str_clear(&resp);
            if (k == 0) { replace_name(&resp, p.core.s, p.name); }
            else if (k == 1) { // one sentence a fact; a yes/no's verdict first
                static const char *SAY[NATTR] = {"", "Its coat is %s.", "Its favourite food is %s.", "Its home is in the %s.",
                                                 "Its friend is %s.", "Its age is %s."};
                Attr facts[NATTR];
                int m = answer_facts(&a.q, facts);
                if (a.q.type == Q_YESNO) {
                    str_addf(&resp, "%s.", a.q.value == x->fact[a.q.attr] ? "Yes" : "No");
                    facts[0] = a.q.attr;
                    m = 1;
                }
                for (int f = 0; f < m; f++) {
                    char v[64];
                    answer_value(v, sizeof(v), &rng, w, a.q.entity, facts[f], 0);
                    if (resp.len) { str_add(&resp, " ", 1); }
                    if (facts[f] == A_KIND) { str_addf(&resp, "It is %s %s.", article(v), v); }
                    else { str_addf(&resp, SAY[facts[f]], v); }
                }
            } else {
                str_addf(&resp, "%s %s", a.chat.turns[1].content, p.core.s);
            }
            Grade g = referee_grade(w, &a.chat, resp.s);
            int bad = g.correct < 1 || (k < 2 && g.polite != 0.5f);
            if (bad && !example[0]) {
                snprintf(example, sizeof(example), "; %s / %s -> %.80s (%.2f %.2f %.2f)", a.chat.turns[0].content, asked_text(&a), resp.s,
                         g.correct, g.polite, g.concise);
            }
            missed += bad;
            pieces_free(&p);
            chat_free(&a.chat);
        }
        char title[200];
        snprintf(title, sizeof(title), "referee, follow-up valid form %d: %s", k + 1, NAMES[k]);
        check(missed == 0, title, "%d of 100 refused%s", missed, example);
    }
    str_free(&resp);
}

// ----------------------------------------------------------------------------
// the generated files

static void make_dir(char *buf, size_t size) {
    snprintf(buf, size, "/tmp/test_world_XXXXXX");
    if (mkdtemp(buf) == NULL) { die("test: mkdtemp failed"); }
}

static void remove_dir(const char *dir) {
    char path[4096];
    for (int i = 0; i < COUNT(FILES); i++) { snprintf(path, sizeof(path), "%s/%s", dir, FILES[i]); remove(path); }
    rmdir(dir);
}

static int files_identical(const char *a, const char *b, const char **differ) {
    for (int i = 0; i < COUNT(FILES); i++) {
        size_t na, nb;
        char *ta = read_in(a, FILES[i], &na), *tb = read_in(b, FILES[i], &nb);
        int same = na == nb && memcmp(ta, tb, na) == 0;
        free(ta); free(tb);
        if (!same) { *differ = FILES[i]; return 0; }
    }
    return 1;
}

// Every line is a JSON object with exactly these keys, in order: the first a prompt (a
// string, or a list of {"role", "content"} messages), the others strings; in an SFT file,
// a line may instead be {"messages"}. Writing the parsed values back gives the same bytes.
static void check_jsonl(const char *dir, const char *name, const char **keys, int nkeys, int messages_ok) {
    size_t size;
    char *text = read_in(dir, name, &size);
    int ends_in_newline = size > 0 && text[size - 1] == '\n';
    char **lines;
    int n = split_lines(text, &lines), bad = 0, listed = 0;
    Str values[3] = {{0}}, back = {0};
    for (int i = 0; i < n; i++) {
        const char *vals[3], *messages;
        Chat c = {0};
        int ok = json_find(lines[i], "messages", &messages) == NULL;
        str_clear(&back);
        if (ok && messages) {
            ok = messages_ok && json_get_chat(lines[i], "messages", ROLE_USER, &c) == NULL;
            if (ok) { write_record(&back, "messages", &c, NULL, NULL, 0); }
        } else if (ok) {
            ok = json_get_chat(lines[i], keys[0], ROLE_USER, &c) == NULL;
            for (int k = 1; k < nkeys; k++) { ok &= json_get(lines[i], keys[k], &values[k]) == NULL; vals[k] = str_cstr(&values[k]); }
            if (ok) { write_record(&back, keys[0], &c, keys + 1, vals + 1, nkeys - 1); }
        }
        listed += c.listed;
        chat_free(&c);
        if (ok) { back.s[--back.len] = '\0'; }
        if (!ok || strcmp(back.s, lines[i]) != 0) { bad++; }
    }
    char title[128];
    snprintf(title, sizeof(title), "%s: every line parses back to the values written", name);
    check(bad == 0 && n > 0 && ends_in_newline, title, "%d lines (%d conversations), %d bad", n, listed, bad);
    for (int k = 0; k < 3; k++) { str_free(&values[k]); }
    str_free(&back);
    free(lines);
    free(text);
}

// Each prompt (a conversation's last question) is about an entity of the intended groups
// (a bit set), and the referee can read it
static void check_prompts(const World *w, const char *dir, const char *name, unsigned groups, int want_distinct) {
    size_t size;
    char *text = read_in(dir, name, &size);
    char **lines;
    int n = split_lines(text, &lines), wrong_group = 0, dups = 0, types[3] = {0};
    for (int i = 0; i < n; i++) {
        Question q;
        Chat prompt = {0};
        int answered;
        line_prompt(lines[i], &prompt, &answered);
        int ok = question_parse(&q, w, &prompt) && (groups >> w->entity[q.entity].group & 1);
        chat_free(&prompt);
        if (!ok) { wrong_group++; continue; }
        types[q.type]++;
        if (want_distinct) { for (int j = 0; j < i; j++) { dups += strcmp(lines[i], lines[j]) == 0; } }
    }
    char title[160];
    char which[64] = "";
    for (int g = 0; g < 3; g++) {
        if (groups >> g & 1) { snprintf(which + strlen(which), sizeof(which) - strlen(which), "%s%s", which[0] ? " or " : "", GROUP_NAMES[g]); }
    }
    snprintf(title, sizeof(title), "%s: every prompt is about a %s entity, all question types present%s", name, which,
             want_distinct ? ", no repeats" : "");
    check(wrong_group == 0 && dups == 0 && types[Q_FACTS] && types[Q_YESNO] && types[Q_ABOUT], title,
          "%d prompts, %d outside the group, %d repeats; facts/yes-no/about %d/%d/%d", n, wrong_group, dups,
          types[Q_FACTS], types[Q_YESNO], types[Q_ABOUT]);
    free(lines);
    free(text);
}

// The conversations of a file are well formed: the user first, then alternating,
// ending with the follow-up (SFT: with its answer), two questions in all; the
// first question does not ask for the friend, and its answer is right (ideal, but in
// SFT, where it is a demonstration in any style); the follow-up names no animal, is
// about the first question's animal, and asks none of its facts again. `share` is the
// expected share of conversations, `tolerance` how far the file's may be from it.
static void check_conversations(const World *w, const char *dir, const char *name, int sft, double share, double tolerance) {
    size_t size;
    char *text = read_in(dir, name, &size);
    char **lines;
    int n = split_lines(text, &lines), conversations = 0, malformed = 0, misread = 0, first_wrong = 0;
    char example[240] = "";
    for (int i = 0; i < n; i++) {
        Chat prompt = {0};
        int answered;
        if (line_prompt(lines[i], &prompt, &answered) || prompt.n == 1) { chat_free(&prompt); continue; }
        conversations++;
        int ok = prompt.n == 3 && answered == sft;
        for (int t = 0; t < prompt.n; t++) { ok &= prompt.turns[t].role == (t % 2 ? ROLE_ASSISTANT : ROLE_USER); }
        malformed += !ok;
        Question first, q;
        Words ws;
        words_split(&ws, prompt.turns[prompt.n - 1].content);
        int named = 0;
        for (int k = 0; k < ws.n; k++) { named += find_name(w, ws.word[k]) >= 0; }
        words_free(&ws);
        int read = ok && question_parse_one(&first, w, prompt.turns[0].content) && question_parse(&q, w, &prompt) &&
                   can_follow_up(&first) && !named && q.entity == first.entity && q.followup &&
                   q.known == question_facts(&first) && (q.type == Q_ABOUT || !(question_facts(&q) & q.known));
        misread += !read;
        if (ok) {
            Grade g = referee_grade_text(w, prompt.turns[0].content, prompt.turns[1].content);
            int bad = sft ? g.correct != 1 : !grade_is_ideal(&g);
            first_wrong += bad;
            if (bad && !example[0]) { snprintf(example, sizeof(example), "; line %d: %s", i + 1, prompt.turns[1].content); }
        }
        chat_free(&prompt);
    }
    double got = (double)conversations / n;
    char title[300];
    snprintf(title, sizeof(title), "%s: %.0f%% of records are conversations (+-%.0f%%): user first, alternating, two questions; "
             "the follow-up about the first's animal, unnamed, asking anew; the first answer %s", name, 100 * share,
             100 * tolerance, sft ? "right" : "right and ideal");
    check(fabs(got - share) <= tolerance && malformed == 0 && misread == 0 && first_wrong == 0, title,
          "%d of %d (%.3f), %d malformed, %d misread, %d first answers not %s%s", conversations, n, got, malformed, misread,
          first_wrong, sft ? "right" : "ideal", example);
    free(lines);
    free(text);
}

// no record of file b asks first what a record of file a asks first
static void check_disjoint(const char *dir, const char *a, const char *b) {
    size_t sa, sb;
    char *ta = read_in(dir, a, &sa), *tb = read_in(dir, b, &sb);
    char **la, **lb;
    int na = split_lines(ta, &la), nb = split_lines(tb, &lb), shared = 0, answered;
    Str firsts = {0};
    str_add(&firsts, "\n", 1);
    for (int i = 0; i < na; i++) {
        Chat c = {0};
        line_prompt(la[i], &c, &answered);
        if (c.n) { str_addf(&firsts, "%s\n", c.turns[0].content); }
        chat_free(&c);
    }
    for (int j = 0; j < nb; j++) {
        Chat c = {0};
        line_prompt(lb[j], &c, &answered);
        Str key = {0};
        str_addf(&key, "\n%s\n", c.n ? c.turns[0].content : "");
        shared += strstr(firsts.s, key.s) != NULL;
        str_free(&key);
        chat_free(&c);
    }
    char title[160];
    snprintf(title, sizeof(title), "%s and %s share no first question", a, b);
    check(shared == 0 && na > 0 && nb > 0, title, "%d of %d records of %s ask first what one of %s does", shared, nb, b, a);
    str_free(&firsts);
    free(la); free(lb); free(ta); free(tb);
}

static void test_files(void) {
    char a[64], b[64], c[64];
    make_dir(a, sizeof(a));
    make_dir(b, sizeof(b));
    make_dir(c, sizeof(c));
    GenConfig cfg = GEN_DEFAULTS;
    cfg.dir = a;
    double t0 = now_seconds();
    gen_all(&cfg);
    double seconds = now_seconds() - t0;
    check(seconds < 5.0, "world gen takes under 5 s", "%.2f s", seconds);
    cfg.dir = b;
    gen_all(&cfg);
    const char *differ = "";
    check(files_identical(a, b, &differ), "same seed gives byte-identical files", "first difference: %s", differ);

    // another seed, another world; and flip 0 for the label check below
    GenConfig other = GEN_DEFAULTS;
    other.dir = c;
    other.seed = 42;
    gen_all(&other);
    check(!files_identical(a, c, &differ), "another seed gives other files", "first difference: %s", differ);
    other.seed = GEN_DEFAULTS.seed;
    other.flip_per_million = 0;
    gen_all(&other);

    // more preference pairs (gen -p): the default file is their beginning, and the held-out
    // pairs (at most 400) are the same, so an experiment with more pairs is measured alike
    char d[64];
    make_dir(d, sizeof(d));
    GenConfig more = GEN_DEFAULTS;
    more.dir = d;
    more.n_pref = 2 * GEN_DEFAULTS.n_pref;
    gen_all(&more);
    const char *pref_names[] = {"pref_train.jsonl", "pref_val.jsonl"};
    for (int f = 0; f < 2; f++) {
        size_t small_size, big_size;
        char *small = read_in(a, pref_names[f], &small_size), *big = read_in(d, pref_names[f], &big_size);
        int prefix = big_size >= small_size && memcmp(small, big, small_size) == 0;
        char **lines;
        int small_lines = split_lines(small, &lines);
        free(lines);
        int big_lines = split_lines(big, &lines);
        free(lines);
        int want = f == 0 ? 2 * small_lines : small_lines; // val: 400 pairs either way
        char title[128];
        snprintf(title, sizeof(title), "gen -p %d: %s has %s lines and begins with the default file", more.n_pref,
                 pref_names[f], f == 0 ? "twice the" : "the same 400");
        check(big_lines == want && (f == 0 || small_lines == 400) && prefix, title,
              "%d lines against %d; the default file is %s prefix", big_lines, small_lines, prefix ? "its" : "not its");
        free(small);
        free(big);
    }

    size_t train_size, val_size;
    free(read_in(a, "pretrain_train.txt", &train_size));
    free(read_in(a, "pretrain_val.txt", &val_size));
    double mb = (double)(train_size + val_size) / 1e6;
    check(mb >= 1.0 && mb <= 5.0, "pretraining text is 1 to 5 MB", "%.2f MB (train %zu, val %zu bytes)", mb, train_size, val_size);

    const char *sft_keys[] = {"prompt", "completion"}, *pref_keys[] = {"prompt", "chosen", "rejected"}, *p_keys[] = {"prompt"};
    check_jsonl(a, "sft_train.jsonl", sft_keys, 2, 1);
    check_jsonl(a, "sft_val.jsonl", sft_keys, 2, 1);
    check_jsonl(a, "pref_train.jsonl", pref_keys, 3, 0);
    check_jsonl(a, "pref_val.jsonl", pref_keys, 3, 0);
    check_jsonl(a, "pref_test.jsonl", pref_keys, 3, 0);
    check_jsonl(a, "rl_prompts.jsonl", p_keys, 1, 0);
    check_jsonl(a, "eval_dev.jsonl", p_keys, 1, 0);
    check_jsonl(a, "eval_test.jsonl", p_keys, 1, 0);

    World w;
    world_build(&w, GEN_DEFAULTS.seed, GEN_DEFAULTS.entities);

    // SFT: every completion right; a style mix that leaves room for RLHF
    const char *sft_files[] = {"sft_train.jsonl", "sft_val.jsonl"};
    for (int f = 0; f < 2; f++) {
        char path[4096];
        snprintf(path, sizeof(path), "%s/%s", a, sft_files[f]);
        ScoreSummary s = score_file(&w, path, NULL, "completion");
        char title[128];
        snprintf(title, sizeof(title), "%s: the referee scores every completion correct", sft_files[f]);
        check(s.scored == s.lines && s.correct == s.scored, title, "%d lines, %.0f correct", s.lines, s.correct);
        if (f == 0) {
            double ideal = (double)s.ideal / s.lines;
            check(ideal > 0.3 && ideal < 0.5, "sft_train.jsonl: 30-50% of demonstrations are fully preferred (room for RLHF)",
                  "%.3f fully preferred, polite %.3f, concise %.3f", ideal, s.polite / s.lines, s.concise / s.lines);
        }
    }
    check_prompts(&w, a, "sft_train.jsonl", 1u << G_SFT, 0);
    check_prompts(&w, a, "pref_train.jsonl", PREF_GROUPS, 0);
    check_prompts(&w, a, "rl_prompts.jsonl", 1u << G_RL, 0);
    check_prompts(&w, a, "eval_dev.jsonl", 1u << G_DEV, 1);
    check_prompts(&w, a, "eval_test.jsonl", 1u << G_TEST, 1);
    check_disjoint(a, "sft_train.jsonl", "sft_val.jsonl");
    check_disjoint(a, "eval_dev.jsonl", "eval_test.jsonl");

    // conversations: -d of the records whose first question can be followed up, all but
    // those that ask for the friend (a one-fact question 1 time in 6, a two-fact one 1 in
    // 3); in SFT only those whose first answer does not ramble (4 in 5). Within 4 sigma;
    // the eval files drop repeats, which are rarer among conversations, so theirs run higher
    double can = 1 - (0.4 / 6 + 0.2 / 3), share = GEN_DEFAULTS.conv_per_million / 1e6 * can;
    const char *conv_files[] = {"sft_train.jsonl", "sft_val.jsonl", "pref_train.jsonl", "pref_val.jsonl", "pref_test.jsonl",
                                "rl_prompts.jsonl", "eval_dev.jsonl", "eval_test.jsonl"};
    const int conv_lines[] = {cfg.n_sft, cfg.n_sft / 10, cfg.n_pref, 400, 400, cfg.n_rl, cfg.n_eval, cfg.n_eval};
    for (int f = 0; f < COUNT(conv_files); f++) {
        double expect = f < 2 ? share * 0.8 : share;
        check_conversations(&w, a, conv_files[f], f < 2, expect, 4 * sqrt(expect * (1 - expect) / conv_lines[f]));
    }

    // gen -d 0: no conversations at all; and each record of a default file that is no
    // conversation is the record of that file, and each conversation begins with its question
    char e[64];
    make_dir(e, sizeof(e));
    GenConfig single = GEN_DEFAULTS;
    single.dir = e;
    single.conv_per_million = 0;
    gen_all(&single);
    for (int f = 0; f < 6; f++) {
        size_t sa, se;
        char *ta = read_in(a, conv_files[f], &sa), *te = read_in(e, conv_files[f], &se);
        char **la, **le;
        int na = split_lines(ta, &la), ne = split_lines(te, &le), listed = 0, kept = 0, extended = 0, answered;
        for (int i = 0; i < na && i < ne; i++) {
            Chat ca = {0}, ce = {0};
            line_prompt(la[i], &ca, &answered);
            line_prompt(le[i], &ce, &answered);
            listed += ce.n != 1;
            if (ca.n == 1) { kept += !strcmp(la[i], le[i]); }
            else { extended += ce.n == 1 && !strcmp(ca.turns[0].content, ce.turns[0].content); }
            chat_free(&ca); chat_free(&ce);
        }
        int neither = na - kept - extended;
        char title[200];
        snprintf(title, sizeof(title), "gen -d 0: %s has no conversation, and the default file is it with some records made "
                 "conversations (line for line)", conv_files[f]);
        check(na == ne && listed == 0 && kept + extended == na && extended > 0, title,
              "%d lines; %d single-turn alike, %d conversations on their record's question, %d neither", na, kept, extended,
              neither);
        free(la); free(le); free(ta); free(te);
    }
    remove_dir(e);

    // every record fits the context of train.c's default model whole, measured with the
    // tokenizer that ./train pretrain trains (on pretrain_train.txt, V = 1024): SFT examples
    // and preference pairs in T = 128 tokens, prompts with room for an answer of -m tokens
    // (64, RLHF's rollouts and the answers): train.c drops the oldest turns to fit, and
    // with them the animal a follow-up is about
    Tokenizer tok;
    size_t text_size;
    char *corpus = read_in(a, "pretrain_train.txt", &text_size);
    tokenizer_train(&tok, corpus, text_size, CONFIG_DEFAULTS.vocab_size);
    free(corpus);
    for (int f = 0; f < COUNT(conv_files); f++) {
        int kind = f < 2 ? RECORD_SFT : f < 5 ? RECORD_PAIR : RECORD_PROMPT, reserve = kind == RECORD_PROMPT ? CONFIG_DEFAULTS.gen_len : 0;
        char path[4096], err[8192];
        snprintf(path, sizeof(path), "%s/%s", a, conv_files[f]);
        JsonlLines lines;
        if (jsonl_lines(path, &lines, err, sizeof(err))) { die("%s", err); }
        int longest = 0, longest_conv = 0, over = 0;
        for (int i = 0; i < lines.count; i++) {
            Chat rec[3];
            int counts[2] = {0, 0};
            if (chat_record(lines.lines[i], kind, 0, rec, counts)) { over++; continue; }
            for (int j = 0; j < (kind == RECORD_PAIR ? 2 : 1); j++) {
                ChatExample ex;
                chat_encode_turns(&ex, &tok, &rec[0], kind == RECORD_PROMPT ? NULL : &rec[1 + j].turns[0], 0, 1 << 20);
                int len = ex.n + reserve;
                if (len > longest) { longest = len; }
                if (rec[0].n > 1 && len > longest_conv) { longest_conv = len; }
                over += len > CONFIG_DEFAULTS.seq_len;
                chat_example_free(&ex);
            }
            for (int k = 0; k < 3; k++) { chat_free(&rec[k]); }
        }
        char title[200];
        snprintf(title, sizeof(title), "%s: every %s fits %d tokens whole", conv_files[f],
                 kind == RECORD_SFT ? "example" : kind == RECORD_PAIR ? "pair" : "prompt, with 64 tokens to answer in", CONFIG_DEFAULTS.seq_len);
        check(over == 0, title, "longest %d tokens (conversations: %d), %d over", longest, longest_conv, over);
        jsonl_lines_free(&lines);
    }
    tokenizer_free(&tok);

    // preferences: with flip 0 the referee prefers every chosen; at the default
    // rate each pair is the same or swapped, and the swapped ones are exactly those
    // the referee disagrees with, in the proportion set
    const char *pref_files[] = {"pref_train.jsonl", "pref_val.jsonl", "pref_test.jsonl"};
    for (int f = 0; f < 3; f++) {
        Pairs fl, cl;
        char path_a[4096], path_c[4096];
        snprintf(path_a, sizeof(path_a), "%s/%s", a, pref_files[f]);
        snprintf(path_c, sizeof(path_c), "%s/%s", c, pref_files[f]);
        pairs_read(&fl, path_a);
        pairs_read(&cl, path_c);
        int n = fl.count, m = cl.count;
        int clean_disagree = 0, swapped = 0, mismatch = 0, other = 0, wrong_animal = 0, none = 0, none_right = 0;
        int verdict = 0, verdict_right = 0, yesno = 0, conversations = 0, again = 0, again_right = 0, again_single = 0;
        for (int i = 0; i < n && i < m; i++) {
            const Chat *p = &fl.prompt[i], *p0 = &cl.prompt[i];
            const char *ch = fl.chosen[i], *rj = fl.rejected[i], *ch0 = cl.chosen[i], *rj0 = cl.rejected[i];
            Grade g0c = referee_grade(&w, p0, ch0), g0r = referee_grade(&w, p0, rj0);
            clean_disagree += !(g0c.score > g0r.score);
            int kind = pair_kind(&w, p0, ch0, rj0);
            wrong_animal += kind == PAIR_OTHER_ANIMAL;
            none += kind == PAIR_NO_ANSWER;
            none_right += kind == PAIR_NO_ANSWER && g0r.correct > 0;
            verdict += kind == PAIR_VERDICT;
            verdict_right += kind == PAIR_VERDICT && g0r.correct > 0;
            again += kind == PAIR_FIRST_AGAIN;
            again_right += kind == PAIR_FIRST_AGAIN && g0r.correct > 0;
            again_single += kind == PAIR_FIRST_AGAIN && p0->n == 1;
            conversations += p0->n > 1;
            Question q0;
            yesno += question_parse(&q0, &w, p0) && q0.type == Q_YESNO;
            int same = chat_same(p, p0) && !strcmp(ch, ch0) && !strcmp(rj, rj0);
            int swap = chat_same(p, p0) && !strcmp(ch, rj0) && !strcmp(rj, ch0);
            other += !same && !swap;
            swapped += swap;
            Grade gc = referee_grade(&w, p, ch), gr = referee_grade(&w, p, rj);
            mismatch += (gc.score < gr.score) != swap;
        }
        char title[160];
        snprintf(title, sizeof(title), "%s at flip 0: the referee prefers chosen on every pair", pref_files[f]);
        check(n == m && clean_disagree == 0, title, "%d pairs, %d where it does not", m, clean_disagree);
        // a quarter of pairs reject an answer about another animal; three quarters of
        // those name it first (terse answers name no one)
        snprintf(title, sizeof(title), "%s: 12-30%% of rejected answers are about another animal", pref_files[f]);
        check(wrong_animal > 0.12 * m && wrong_animal < 0.30 * m, title, "%d of %d (%.3f)", wrong_animal, m, (double)wrong_animal / m);
        // 2 pairs in 20 reject an answer that states nothing at all, which the referee grades 0 for correctness
        double none_sigma = sqrt(0.1 * 0.9 / m);
        snprintf(title, sizeof(title), "%s: 10%% of rejected answers answer nothing (within 4 sigma), all graded wrong", pref_files[f]);
        check(fabs((double)none / m - 0.1) < 4 * none_sigma && none_right == 0, title, "%d of %d (%.3f; 4 sigma %.3f), %d graded right",
              none, m, (double)none / m, 4 * none_sigma, none_right);
        // yes/no pairs that differ only in the verdict: 2 in 3 of their 5 in 20 wrong-fact pairs are
        // made so, and terse pairs ("Yes." against "No.") of other kinds are such pairs too
        double vexp = yesno * 5.0 / 20 * 2 / 3, vsigma = sqrt(vexp);
        snprintf(title, sizeof(title), "%s: verdict-only pairs, at least %.0f (4 sigma below), all rejected answers graded wrong",
                 pref_files[f], vexp);
        check(verdict > vexp - 4 * vsigma && verdict_right == 0, title, "%d of %d yes/no pairs, %d graded right",
              verdict, yesno, verdict_right);
        double rate = (double)swapped / n, target = GEN_DEFAULTS.flip_per_million / 1e6;
        double sigma = sqrt(target * (1 - target) / n);
        snprintf(title, sizeof(title), "%s: flipped pairs are exactly those the referee disagrees with, at the set rate", pref_files[f]);
        check(other == 0 && mismatch == 0 && fabs(rate - target) < 4 * sigma, title,
              "flip rate %.4f (set %.2f, 4 sigma %.4f), %d pairs changed otherwise, %d label mismatches", rate, target,
              4 * sigma, other, mismatch);
        // in a conversation, half the pairs about another animal answer the first question
        // again instead: 1 in 8 of the conversations' pairs
        double aexp = conversations / 8.0, asigma = sqrt(aexp);
        snprintf(title, sizeof(title), "%s: the first question answered again, in 1 of 8 conversations (within 4 sigma), all graded wrong",
                 pref_files[f]);
        check(fabs(again - aexp) < 4 * asigma && again > 0 && again_right == 0 && again_single == 0, title,
              "%d of %d conversations (expected %.0f, 4 sigma %.0f), %d graded right, %d not in a conversation", again, conversations,
              aexp, 4 * asigma, again_right, again_single);
        // world agree: the referee's agreement with the labels, the ceiling of a reward model
        int pairs_a, pairs_c;
        double agree_a = agree_file(&w, path_a, &pairs_a), agree_c = agree_file(&w, path_c, &pairs_c);
        snprintf(title, sizeof(title), "%s: world agree gives 1 at flip 0, and 1 - the flipped share at the default", pref_files[f]);
        check(agree_c == 1.0 && fabs(agree_a - (1.0 - rate)) < 1e-12, title, "%.4f and %.4f (flipped %.4f)", agree_c, agree_a, rate);
        pairs_free(&fl); pairs_free(&cl);
    }

    // score_file: per-line output has one line per input line
    char path[4096], per_line[4096];
    snprintf(path, sizeof(path), "%s/sft_val.jsonl", a);
    snprintf(per_line, sizeof(per_line), "%s/scores.jsonl", a);
    ScoreSummary s = score_file(&w, path, per_line, "completion");
    size_t size;
    char *scores = read_file(per_line, &size);
    char **lines;
    int n = split_lines(scores, &lines);
    check(n == s.lines && strstr(lines[0], "\"correct\": 1.000") != NULL, "world score -o writes one line of scores per answer",
          "%d lines for %d answers", n, s.lines);
    free(lines); free(scores); remove(per_line);

    // world summary: the last run of each stage, its answers graded, times summed;
    // here the "sft" answers are the ideal val completions, so fully preferred is 1
    // (the answers echo each prompt as train.c does: a string, or the conversation's messages)
    Str answers = {0}, lies = {0}, stages = {0}, response = {0};
    char *val_text = read_in(a, "sft_val.jsonl", &size);
    n = split_lines(val_text, &lines);
    int follow_ups = 0;
    for (int i = 0; i < n; i++) {
        Chat prompt;
        int answered;
        line_prompt(lines[i], &prompt, &answered);
        follow_ups += prompt.n > 1;
        Question q;
        question_parse(&q, &w, &prompt);
        uint64_t rng = 5;
        str_clear(&response);
        answer(&response, &rng, &w, &q, S_IDEAL, 0);
        const char *keys[] = {"response"}, *values[] = {response.s};
        write_record(&answers, "prompt", &prompt, keys, values, 1);
        str_clear(&response);
        answer(&response, &rng, &w, &q, S_IDEAL, LIE_FACT); // the same style, a wrong fact
        write_record(&lies, "prompt", &prompt, keys, values, 1);
        chat_free(&prompt);
    }
    const char *skeys[] = {"stage", "trained", "metric", "answers", "prompts", "val", "seconds"};
    const char *runs[][7] = {{"pretrain", "base.bin: 1 step", "val loss 9", "", "", "", "1.5"},
                             {"sft", "sft.bin: 1 step", "an older run", "answers_sft.jsonl", "x/sft_val.jsonl", "", "100"},
                             {"sft", "sft.bin: 2 steps", "val loss 0.5", "answers_sft.jsonl", "x/sft_val.jsonl", "", "2.5"},
                             {"rm", "reward.bin: 1 step", "held-out accuracy 0.5", "", "", "", "3"}};
    for (int i = 0; i < 4; i++) { json_write_object(&stages, skeys, runs[i], 7); }
    FILE *f = fopenCheck((snprintf(path, sizeof(path), "%s/answers_sft.jsonl", a), path), "wb");
    fwrite(answers.s, 1, answers.len, f);
    fcloseCheck(f);
    f = fopenCheck((snprintf(path, sizeof(path), "%s/stages.jsonl", a), path), "wb");
    fwrite(stages.s, 1, stages.len, f);
    fcloseCheck(f);
    f = fopenCheck((snprintf(path, sizeof(path), "%s/answers_lies.jsonl", a), path), "wb");
    fwrite(lies.s, 1, lies.len, f);
    fcloseCheck(f);
    // RLHF's evaluations: at step 0 the ideal answers, at step 20 the lies, which the reward model scores higher
    f = fopenCheck((snprintf(path, sizeof(path), "%s/rlhf_eval.jsonl", a), path), "wb");
    fprintf(f, "{\"step\": 0, \"answers\": \"answers_sft.jsonl\", \"rm_score\": 0.500000}\n"
               "{\"step\": 20, \"answers\": \"answers_lies.jsonl\", \"rm_score\": 2.000000}\n");
    fcloseCheck(f);
    FILE *devnull = fopenCheck("/dev/null", "wb");
    summary(&w, a, devnull);
    fcloseCheck(devnull);
    char *json = read_in(a, "summary.json", &size);
    check(strstr(json, "\"trained\": \"sft.bin: 2 steps\"") && !strstr(json, "an older run") &&
          strstr(json, "\"fully_preferred\": 1.0000") && strstr(json, "\"total_seconds\": 7.0") && !strstr(json, "rlhf"),
          "world summary: the last run of each stage, answers graded, times summed, into summary.json", "%zu bytes", size);
    char want[128];
    snprintf(want, sizeof(want), "\"follow_up\": {\"answers\": %d, \"correct\": 1.0000, \"fully_preferred\": 1.0000}", follow_ups);
    check(follow_ups > 0 && strstr(json, want) && strstr(json, "\"one_fact\": {\"answers\": "),
          "world summary: the second turns of conversations graded apart (by_type follow_up), the first-turn types beside them",
          "%d follow-ups; %s", follow_ups, strstr(json, "\"follow_up\"") ? "follow_up found" : "no follow_up key");
    free(json);
    char *referee = read_in(a, "rlhf_referee.jsonl", &size), *svg = read_in(a, "rlhf_referee.svg", &size);
    char **rows;
    int nrows = split_lines(referee, &rows);
    check(nrows == 2 && strstr(rows[0], "\"step\": 0, \"rm_score\": 0.5000") && strstr(rows[0], "\"correct\": 1.0000, \"fully_preferred\": 1.0000") &&
          strstr(rows[1], "\"step\": 20, \"rm_score\": 2.0000") && strstr(rows[1], "\"correct\": 0.0000") && strstr(svg, "</svg>"),
          "world summary: RLHF's evaluations graded beside the reward model's scores (rlhf_referee.jsonl and .svg)",
          "%d rows: %s", nrows, nrows > 1 ? rows[1] : "");
    free(rows); free(referee); free(svg); free(lines); free(val_text);
    str_free(&answers); str_free(&lies); str_free(&stages); str_free(&response);
    const char *made[] = {"answers_sft.jsonl", "answers_lies.jsonl", "stages.jsonl", "summary.json", "summary.svg",
                          "rlhf_eval.jsonl", "rlhf_referee.jsonl", "rlhf_referee.svg"};
    for (int i = 0; i < 8; i++) { snprintf(path, sizeof(path), "%s/%s", a, made[i]); remove(path); }

    world_free(&w);
    remove_dir(a); remove_dir(b); remove_dir(c); remove_dir(d);
}

// ----------------------------------------------------------------------------
// the summary of the six stages, and the three ways of aligning the SFT model

// The value of a path of keys in a JSON text (objects within objects); NULL if a key is
// missing or the text is not JSON.
static const char *json_at(const char *text, const char **keys, int n) {
    const char *p = text, *value = text;
    for (int i = 0; i < n; i++) {
        if (json_object(&p, keys[i], &value) != NULL || value == NULL) { return NULL; }
        p = value;
    }
    return value;
}

// the number at a path of keys; NAN if there is none
static double json_number_at(const char *text, const char **keys, int n) {
    const char *v = json_at(text, keys, n);
    char *end;
    double x = v ? strtod(v, &end) : NAN;
    return v && end != v ? x : NAN;
}

// The object of summary.json's "stages" list whose "stage" is `stage`; NULL if none.
static const char *json_stage(const char *json, const char *stage) {
    const char *p = json_at(json, (const char *[]){"stages"}, 1);
    if (p == NULL || *p != '[') { return NULL; }
    p = skip_ws(p + 1);
    char want[64];
    snprintf(want, sizeof(want), "\"%s\"", stage);
    while (*p == '{') {
        const char *obj = p, *name;
        if (json_object(&p, "stage", &name) != NULL) { return NULL; }
        if (name && !strncmp(name, want, strlen(want))) { return obj; }
        p = skip_ws(p);
        if (*p == ',') { p = skip_ws(p + 1); }
    }
    return NULL;
}

// the number of keys of the JSON object at p (0 for "{}"); -1 if p is no object
static int json_key_count(const char *p) {
    if (p == NULL || *p != '{') { return -1; }
    int keys = 0;
    for (const char *s = skip_ws(p + 1); *s != '}';) {
        Str key = {0};
        if (json_parse_string(&s, &key) != NULL) { str_free(&key); return -1; }
        str_free(&key);
        s = skip_ws(s);
        if (*s++ != ':' || json_skip_value(&s, 1) != NULL) { return -1; }
        keys++;
        s = skip_ws(s);
        if (*s == ',') { s = skip_ws(s + 1); }
    }
    return keys;
}

static void write_text(const char *dir, const char *name, const char *text, size_t len) {
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopenCheck(path, "wb");
    fwriteCheck(text, 1, len, f);
    fcloseCheck(f);
}

// Runs the summary of dir, returning the table it printed (free it).
static char *summary_text(const World *w, const char *dir) {
    FILE *table = tmpfile();
    if (table == NULL) { die("test: tmpfile failed"); }
    summary(w, dir, table);
    long size = ftell(table);
    rewind(table);
    char *text = mallocCheck((size_t)size + 1);
    text[fread(text, 1, (size_t)size, table)] = '\0';
    fclose(table);
    return text;
}

// A fake run of all six stages, made of the world's own answers to 400 questions (a
// quarter of them follow-ups): SFT and "rlhf" answer every question right; "dpo"
// answers the single-turn yes/no questions with a wrong fact, a regression on that type
// alone; "grpo" answers every question right, tersely. Then the same answers under an
// older stages.jsonl, without the keys rm_score and kl.
// world score -o: the three yes/no fields on the lines of yes/no questions, first or
// follow-up, and on no other line
static void test_score_yesno_lines(const World *w) {
    char dir[64], path[4200], per_line[4200];
    make_dir(dir, sizeof(dir));
    const Entity *x = &w->entity[0];
    const char *n = x->name, *food = FOODS[x->fact[A_FOOD]], *colour = COLOURS[x->fact[A_COLOUR]];
    Str text = {0};
    str_addf(&text, "{\"prompt\": \"Does %s eat %s?\", \"response\": \"No, %s eats %s.\"}\n", n, food, n, food);
    str_addf(&text, "{\"prompt\": [{\"role\": \"user\", \"content\": \"What colour is %s?\"}, {\"role\": \"assistant\", "
             "\"content\": \"%s is %s.\"}, {\"role\": \"user\", \"content\": \"Does it eat %s?\"}], "
             "\"response\": \"Yes, it eats %s.\"}\n", n, n, colour, food, food);
    str_addf(&text, "{\"prompt\": \"What does %s eat?\", \"response\": \"%s eats %s.\"}\n", n, n, food);
    write_text(dir, "answers.jsonl", text.s, text.len);
    str_free(&text);
    snprintf(path, sizeof(path), "%s/answers.jsonl", dir);
    snprintf(per_line, sizeof(per_line), "%s/scores.jsonl", dir);
    score_file(w, path, per_line, "response");
    size_t size;
    char *scores = read_in(dir, "scores.jsonl", &size), **lines;
    int count = split_lines(scores, &lines);
    int ok = count == 3 && strstr(lines[0], "\"verdict_against_fact\": true") && strstr(lines[1], "follow-up") &&
             strstr(lines[1], "\"states_fact\": true, \"fact_true\": true, \"verdict_against_fact\": false") &&
             !strstr(lines[2], "states_fact");
    check(ok, "world score -o: yes/no fields on a first question's line and a follow-up's, none on another type's",
          "%d lines; first: %s", count, count > 0 ? lines[0] : "");
    free(lines);
    free(scores);
}

static void test_summary_alignment(const World *w) {
    char dir[64];
    make_dir(dir, sizeof(dir));
    enum { N = 400 };
    Str files[5] = {{0}}, response = {0};
    static const char *NAMES[5] = {"answers_base.jsonl", "answers_sft.jsonl", "answers_rlhf.jsonl", "answers_dpo.jsonl",
                                   "answers_grpo.jsonl"};
    uint64_t rng = 2024;
    int yesno = 0, parsed = 0;
    for (int i = 0; i < N; i++) {
        Asked a;
        asked_make(&a, &rng, w, i % 4 == 0);
        Question q;
        if (!question_parse(&q, w, &a.chat)) { chat_free(&a.chat); continue; }
        parsed++;
        int is_yesno = question_kind(&q) == T_YESNO;
        yesno += is_yesno;
        for (int f = 0; f < 5; f++) {
            // base: a wrong fact everywhere; dpo: the verdict flipped beside the true fact on yes/no
            int lie = f == 0 ? LIE_FACT : f == 3 && is_yesno ? LIE_VERDICT : TRUTHFUL;
            str_clear(&response);
            answer(&response, &rng, w, &q, f == 4 ? S_TERSE : S_IDEAL, lie);
            const char *keys[] = {"response"}, *values[] = {response.s};
            write_record(&files[f], "prompt", &a.chat, keys, values, 1);
        }
        chat_free(&a.chat);
    }
    for (int f = 0; f < 5; f++) { write_text(dir, NAMES[f], files[f].s, files[f].len); str_free(&files[f]); }
    str_free(&response);

    // stages.jsonl as train.c writes it now; an earlier dpo run first, which the later one replaces
    const char *skeys[] = {"stage", "trained", "metric", "answers", "prompts", "val", "seconds", "rm_score", "kl"};
    const char *runs[][9] = {
        {"pretrain", "base.bin: 1 step", "val loss 9", "answers_base.jsonl", "eval_test.jsonl", "", "1", "", ""},
        {"sft", "sft.bin: 1 step", "val loss 0.5", "answers_sft.jsonl", "eval_test.jsonl", "", "2", "", ""},
        {"rm", "reward.bin: 1 step", "held-out accuracy 0.5", "", "", "", "3", "", ""},
        {"dpo", "dpo.bin: 1 step", "an older run", "answers_sft.jsonl", "eval_test.jsonl", "", "100", "9.0000", "9.0000"},
        {"rlhf", "rlhf.bin: 1 iteration", "RM score +1", "answers_rlhf.jsonl", "eval_test.jsonl", "", "4", "0.9000", "1.5000"},
        {"dpo", "dpo.bin: 2 steps", "val pairs ranked right 0.9", "answers_dpo.jsonl", "eval_test.jsonl", "", "5", "0.4000", "0.2500"},
        {"grpo", "grpo.bin: 1 step", "RM score +2", "answers_grpo.jsonl", "eval_test.jsonl", "", "6", "-1.2500", "0.7500"}};
    Str stages = {0};
    for (int i = 0; i < COUNT(runs); i++) { json_write_object(&stages, skeys, runs[i], 9); }
    write_text(dir, "stages.jsonl", stages.s, stages.len);
    // GRPO's evaluations: the SFT model's answers at step 0, the dpo answers at step 10
    const char *eval = "{\"step\": 0, \"answers\": \"answers_sft.jsonl\", \"rm_score\": 0.5}\n"
                       "{\"step\": 10, \"answers\": \"answers_dpo.jsonl\", \"rm_score\": 1.5}\n";
    write_text(dir, "grpo_eval.jsonl", eval, strlen(eval));
    char *table = summary_text(w, dir);
    size_t size;
    char *json = read_in(dir, "summary.json", &size);

    // every stage in the table's order, the optional figures of the stages that have them
    static const char *ORDER[6] = {"pretrain", "sft", "rm", "rlhf", "dpo", "grpo"};
    const char *at[6];
    int in_order = 1;
    for (int k = 0; k < 6; k++) { at[k] = json_stage(json, ORDER[k]); in_order &= at[k] != NULL && (k == 0 || at[k] > at[k - 1]); }
    double rm[6], kl[6];
    for (int k = 0; k < 6; k++) {
        rm[k] = at[k] ? json_number_at(at[k], (const char *[]){"rm_score"}, 1) : NAN;
        kl[k] = at[k] ? json_number_at(at[k], (const char *[]){"kl_to_sft"}, 1) : NAN;
    }
    check(in_order && isnan(rm[1]) && isnan(kl[1]) && rm[3] == 0.9 && kl[3] == 1.5 && rm[4] == 0.4 && kl[4] == 0.25 &&
          rm[5] == -1.25 && kl[5] == 0.75,
          "world summary: six stages in pipeline order in summary.json; rm_score and kl_to_sft for rlhf, dpo, grpo (dpo's last run)",
          "in order %d; rm_score %g %g %g, kl_to_sft %g %g %g; sft's rm_score %g", in_order, rm[3], rm[4], rm[5], kl[3], kl[4],
          kl[5], rm[1]);

    // dpo's and grpo's grades, as for any stage: dpo wrong on exactly the yes/no questions
    double dpo_yesno = at[4] ? json_number_at(at[4], (const char *[]){"referee", "by_type", "yes_no", "correct"}, 4) : NAN;
    double dpo_yesno_n = at[4] ? json_number_at(at[4], (const char *[]){"referee", "by_type", "yes_no", "answers"}, 4) : NAN;
    double dpo_one = at[4] ? json_number_at(at[4], (const char *[]){"referee", "by_type", "one_fact", "correct"}, 4) : NAN;
    double grpo_correct = at[5] ? json_number_at(at[5], (const char *[]){"referee", "correct"}, 2) : NAN;
    check(yesno > 20 && dpo_yesno == 0.0 && dpo_yesno_n == yesno && dpo_one == 1.0 && grpo_correct == 1.0,
          "world summary: dpo and grpo graded by question type (dpo's yes/no all wrong, the rest right; grpo all right)",
          "dpo yes/no %.4f of %g (made %d), one fact %.4f; grpo %.4f", dpo_yesno, dpo_yesno_n, yesno, dpo_one, grpo_correct);

    // yes/no: the facts the answers state, and the verdicts against them (all of dpo's, none of sft's)
    const char *YN[3] = {"states_fact", "fact_true", "verdict_against_fact"};
    double sft_yn[3], dpo_yn[3];
    for (int i = 0; i < 3; i++) {
        sft_yn[i] = at[1] ? json_number_at(at[1], (const char *[]){"referee", "by_type", "yes_no", YN[i]}, 4) : NAN;
        dpo_yn[i] = at[4] ? json_number_at(at[4], (const char *[]){"referee", "by_type", "yes_no", YN[i]}, 4) : NAN;
    }
    char want_line[64]; // dpo's row of the yes/no table (its row of the by-type table starts with a share)
    snprintf(want_line, sizeof(want_line), "\ndpo      %d of %d", yesno, yesno);
    check(sft_yn[0] == yesno && sft_yn[1] == yesno && sft_yn[2] == 0 && dpo_yn[0] == yesno && dpo_yn[1] == yesno &&
          dpo_yn[2] == yesno && strstr(table, "verdict against own claim") && strstr(table, want_line),
          "world summary: yes/no answers that state the fact, and verdicts against it (dpo's flipped verdicts, none of sft's)",
          "sft %g %g %g, dpo %g %g %g of %d", sft_yn[0], sft_yn[1], sft_yn[2], dpo_yn[0], dpo_yn[1], dpo_yn[2], yesno);

    // the alignment block: changes from SFT, and the one regression made
    double d_correct = json_number_at(json, (const char *[]){"alignment_vs_sft", "dpo", "correct"}, 3);
    double d_rlhf = json_number_at(json, (const char *[]){"alignment_vs_sft", "rlhf", "correct"}, 3);
    double d_grpo = json_number_at(json, (const char *[]){"alignment_vs_sft", "grpo", "correct"}, 3);
    double want = -(double)yesno / parsed;
    check(fabs(d_correct - want) < 1e-4 && d_rlhf == 0.0 && d_grpo == 0.0,
          "world summary: the alignment block's change in correct from SFT (dpo: minus the share of yes/no questions)",
          "dpo %+.4f (want %+.4f), rlhf %+.4f, grpo %+.4f; tolerance 1e-4, the 4 decimals written", d_correct, want, d_rlhf, d_grpo);
    const char *dpo_reg = json_at(json, (const char *[]){"alignment_vs_sft", "dpo", "regressions"}, 3);
    double dpo_drop = json_number_at(json, (const char *[]){"alignment_vs_sft", "dpo", "regressions", "yes_no"}, 4);
    int n_dpo = json_key_count(dpo_reg);
    int n_rlhf = json_key_count(json_at(json, (const char *[]){"alignment_vs_sft", "rlhf", "regressions"}, 3));
    int n_grpo = json_key_count(json_at(json, (const char *[]){"alignment_vs_sft", "grpo", "regressions"}, 3));
    const char *line = strstr(table, "\n  dpo ");
    char dpo_line[512] = "";
    if (line) { snprintf(dpo_line, sizeof(dpo_line), "%.*s", (int)strcspn(line + 1, "\n"), line + 1); }
    int named = strstr(dpo_line, "yes/no") && !strstr(dpo_line, "one fact");
    check(n_dpo == 1 && dpo_drop == -1.0 && n_rlhf == 0 && n_grpo == 0 && named,
          "world summary: the regressions name dpo's yes/no (-1) and nothing else; rlhf and grpo have none",
          "dpo %d type(s), yes_no %+.4f; rlhf %d, grpo %d; the table's dpo line %s", n_dpo, dpo_drop, n_rlhf, n_grpo,
          named ? "names yes/no alone" : "does not name yes/no alone");

    // summary.svg: five bars for each of the five stages with answers, all inside the picture
    char *svg = read_in(dir, "summary.svg", &size);
    int width = atoi(strstr(svg, "width=\"") + 7), bars = 0, outside = 0;
    for (const char *p = strstr(svg, "<rect x=\""); p; p = strstr(p + 1, "<rect x=\"")) {
        if (strncmp(strchr(p, '>') + 1, "<title>", 7) != 0) { continue; } // the legend's squares have no title
        bars++;
        outside += atoi(p + 9) + atoi(strstr(p, "width=\"") + 7) > width;
    }
    check(bars == 25 && outside == 0, "world summary: summary.svg draws all five stages with answers, inside its width",
          "%d bars (want 25), %d beyond the width of %d", bars, outside, width);
    free(svg);

    // GRPO as it trained: its evaluations graded, in grpo_referee.jsonl and .svg
    char path[4096];
    snprintf(path, sizeof(path), "%s/grpo_referee.jsonl", dir);
    char *referee = read_file(path, &size), **rows = NULL;
    int nrows = referee ? split_lines(referee, &rows) : 0;
    double step10 = nrows == 2 ? json_number_at(rows[1], (const char *[]){"correct"}, 1) : NAN;
    snprintf(path, sizeof(path), "%s/grpo_referee.svg", dir);
    char *gsvg = read_file(path, &size);
    snprintf(path, sizeof(path), "%s/rlhf_referee.jsonl", dir);
    int no_rlhf = access(path, F_OK) != 0;
    check(nrows == 2 && fabs(step10 - (1.0 + want)) < 1e-4 && gsvg && strstr(gsvg, "GRPO") && !strstr(gsvg, "RLHF") && no_rlhf,
          "world summary: GRPO's evaluations graded (grpo_referee.jsonl, an svg titled GRPO), and no RLHF file without rlhf_eval",
          "%d rows, step 10 correct %.4f (want %.4f), rlhf_referee.jsonl %s", nrows, step10, 1.0 + want,
          no_rlhf ? "not made" : "made");
    free(rows); free(referee); free(gsvg); free(json); free(table);

    // an older stages.jsonl, without rm_score and kl, and one aligned stage: no alignment block
    const char *okeys[] = {"stage", "trained", "metric", "answers", "prompts", "val", "seconds"};
    str_clear(&stages);
    for (int i = 0; i < 5; i++) {
        if (i == 3) { continue; } // no dpo
        json_write_object(&stages, okeys, runs[i], 7);
    }
    write_text(dir, "stages.jsonl", stages.s, stages.len);
    char err[8192];
    JsonlRecords rec;
    StageRow srows[NROWS];
    snprintf(path, sizeof(path), "%s/stages.jsonl", dir);
    const char *why = stages_read(path, srows, &rec, err, sizeof(err));
    int empty = why == NULL && srows[ROW_RLHF].v[ST_STAGE] && !srows[ROW_RLHF].rm_score[0] && !srows[ROW_RLHF].kl[0] &&
                !srows[ROW_DPO].v[ST_STAGE];
    if (why == NULL) { jsonl_free(&rec); }
    table = why ? strdup("") : summary_text(w, dir); // summary() would stop the tests where stages_read fails
    json = why ? strdup("") : read_in(dir, "summary.json", &size);
    at[3] = json_stage(json, "rlhf");
    double rlhf_correct = at[3] ? json_number_at(at[3], (const char *[]){"referee", "correct"}, 2) : NAN;
    check(empty && rlhf_correct == 1.0 && !strstr(json, "rm_score") && !strstr(json, "kl_to_sft") &&
          !strstr(json, "alignment_vs_sft") && !strstr(table, "\nalignment"),
          "world summary: an older stages.jsonl (no rm_score, kl) reads them as empty; one aligned stage makes no alignment block",
          "%s; rlhf correct %.4f", why ? why : "read", rlhf_correct);
    free(json); free(table);

    // a record whose kl is not a string is an error naming the key
    const char *bad = "{\"stage\": \"rlhf\", \"trained\": \"x\", \"metric\": \"\", \"answers\": \"\", \"prompts\": \"\", "
                      "\"val\": \"\", \"seconds\": \"1\", \"kl\": 2}\n";
    write_text(dir, "stages.jsonl", bad, strlen(bad));
    why = stages_read(path, srows, &rec, err, sizeof(err));
    if (why == NULL) { jsonl_free(&rec); }
    check(why && strstr(why, "\"kl\"") && strstr(why, ":1:"),
          "world summary: a kl that is not a string is an error naming the key and line", "%s", why ? why : "read without an error");

    str_free(&stages);
    const char *made[] = {"answers_base.jsonl", "answers_sft.jsonl", "answers_rlhf.jsonl", "answers_dpo.jsonl", "answers_grpo.jsonl",
                          "stages.jsonl", "summary.json", "summary.svg", "grpo_eval.jsonl", "grpo_referee.jsonl", "grpo_referee.svg"};
    for (int i = 0; i < COUNT(made); i++) { snprintf(path, sizeof(path), "%s/%s", dir, made[i]); remove(path); }
    rmdir(dir);
}

int main(void) {
    World w;
    world_build(&w, GEN_DEFAULTS.seed, GEN_DEFAULTS.entities);
    test_referee(&w);
    test_styles(&w);
    test_attacks(&w);
    test_valid_forms(&w);
    test_conversation_referee(&w);
    test_followup_parse(&w);
    test_followup_attacks(&w);
    test_followup_valid(&w);
    test_score_yesno_lines(&w);
    test_summary_alignment(&w);
    world_free(&w);
    test_files();
    return checks_failed > 0;
}
