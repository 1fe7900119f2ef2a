/* The content scan's memory of text pieces, in C: see proxy_addons/core/content/piece_memo.py.
 *
 * A page is split at whitespace into pieces, as str.split() does. The matcher (phrases.py)
 * decides, once per distinct piece, whether it holds a word that starts a phrase ("hot") or
 * not ("cold"), and remembers runs of 2 to MAX_RUN pieces after which every walk died having
 * found nothing ("dead"). Looking a page's ten thousand pieces up in Python costs a string
 * object and a dictionary look-up each; here they are hashed and compared where they lie in
 * the text, and no object is made except for the few pieces Python must still look at.
 *
 * Given the matcher's index (index()), it also judges plain pieces itself: cold ones that
 * start nothing, and hot one-word ones whose walks die at the next word. Those judgements
 * are supersets of the matcher's: a word the index might make hot is left to the matcher.
 * Lines (pieces between line breaks) found settled are looked up whole.
 *
 * No matching rules beyond that: piece_memo.py has the same memory in Python, used when this
 * is not compiled, and tests/core/test_piece_memo.py holds the two to the same answers and the
 * judgements here to the matcher's.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#define SMALL 16 /* keys this long, all Latin-1, are kept in the slot itself */

enum { WIDE = 0, INLINE = 1, NARROW = 2 }; /* where a slot's key is: see Slot.store */

typedef struct {
    uint64_t hash; /* 0: an empty slot */
    int32_t len;
    unsigned char hot;
    unsigned char store; /* INLINE: in key.latin1; NARROW: Latin-1 at key.narrow; WIDE */
    union {
        Py_UCS4 *wide;
        unsigned char *narrow;
        unsigned char latin1[SMALL];
    } key;
} Slot; /* 32 bytes: a look-up that finds its key reads one cache line */

static inline Py_UCS4
key_char(const Slot *s, Py_ssize_t k)
{
    switch (s->store) {
    case INLINE:
        return s->key.latin1[k];
    case NARROW:
        return s->key.narrow[k];
    default:
        return s->key.wide[k];
    }
}

static inline const unsigned char *
latin1_key(const Slot *s)
{
    return s->store == INLINE ? s->key.latin1 : s->store == NARROW ? s->key.narrow : NULL;
}
_Static_assert(sizeof(Slot) == 32, "a slot is half a cache line");

typedef struct {
    Slot *slots;
    size_t mask; /* capacity - 1; capacity a power of two */
    size_t used;
    size_t chars; /* code points in the keys kept */
} Table;

typedef struct {
    PyObject_HEAD
    Table pieces; /* piece -> hot or cold */
    Table dead;   /* "piece next" -> present */
    Table lines;  /* lines of text (pieces between line breaks) found settled: see scan */
    uint64_t seed; /* keys the hash: a page can't be made of colliding pieces */
    /* What the matcher's indexes start with (index()), to judge plain words without it. */
    int indexed;
    Py_ssize_t fuzzy_min;
    Table paths;   /* every path from the letter trie's root, i and l as "|" */
    Table starts;  /* first words of phrases and innocent phrases */
    Table near;    /* first words that may be misspelt, and each with a letter left out */
    Table special; /* text-speak: read as other words, so left to the matcher */
    Table firsts;  /* first words of phrases (not innocent ones) */
    Table ends;    /* first words that are a whole phrase themselves */
    Table second;  /* "first second": the second words of phrases after each first word */
    Table second_near; /* "first second" for second words that may be misspelt, and each with
                        * a letter left out */
} MemoObject;

/* A text's code points, read whatever its storage width. */
typedef struct {
    int kind;
    const void *data;
} Text;

/* FNV-1a per code point, from a per-process seed; `finish` mixes the bits before use. A
 * page of colliding pieces would only cost time: keys are always compared whole. */
static inline uint64_t
mix(uint64_t h, Py_UCS4 ch)
{
    return (h ^ ch) * 0x100000001b3ULL;
}

/* Latin-1 code points str.split() splits at (Py_UNICODE_ISSPACE), looked up by table. */
static unsigned char latin1_space[256];

static inline uint64_t
finish(uint64_t h)
{
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    return h ? h : 1;
}

static uint64_t
hash_run(uint64_t h, Text t, Py_ssize_t start, Py_ssize_t end)
{
    for (Py_ssize_t i = start; i < end; i++)
        h = mix(h, PyUnicode_READ(t.kind, t.data, i));
    return h;
}

static int
table_init(Table *t, size_t capacity)
{
    t->slots = PyMem_Calloc(capacity, sizeof(Slot));
    if (t->slots == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    t->mask = capacity - 1;
    t->used = 0;
    t->chars = 0;
    return 0;
}

static void
table_free(Table *t)
{
    if (t->slots == NULL)
        return;
    for (size_t i = 0; i <= t->mask; i++) {
        Slot *s = &t->slots[i];
        if (s->hash != 0 && s->store == WIDE)
            PyMem_Free(s->key.wide);
        else if (s->hash != 0 && s->store == NARROW)
            PyMem_Free(s->key.narrow);
    }
    PyMem_Free(t->slots);
    t->slots = NULL;
}

static int
table_clear(Table *t)
{
    table_free(t);
    return table_init(t, 1024);
}

/* The slot holding the key made of `parts` runs of `t` (joined by a space), or NULL. */
static Slot *
table_find(Table *tab, uint64_t hash, Text t, const Py_ssize_t *runs, int parts)
{
    Py_ssize_t len = parts - 1;
    for (int p = 0; p < parts; p++)
        len += runs[2 * p + 1] - runs[2 * p];
    for (size_t i = hash & tab->mask;; i = (i + 1) & tab->mask) {
        Slot *s = &tab->slots[i];
        if (s->hash == 0)
            return NULL;
        if (s->hash != hash || s->len != len)
            continue;
        const unsigned char *narrow = latin1_key(s);
        if (parts == 1 && narrow != NULL && t.kind == PyUnicode_1BYTE_KIND) {
            if (memcmp(narrow, (const Py_UCS1 *)t.data + runs[0], (size_t)len) == 0)
                return s;
            continue;
        }
        Py_ssize_t k = 0;
        int same = 1;
        for (int p = 0; p < parts && same; p++) {
            if (p && key_char(s, k++) != ' ') {
                same = 0;
                break;
            }
            for (Py_ssize_t j = runs[2 * p]; j < runs[2 * p + 1]; j++) {
                if (key_char(s, k++) != PyUnicode_READ(t.kind, t.data, j)) {
                    same = 0;
                    break;
                }
            }
        }
        if (same)
            return s;
    }
}

static int
table_grow(Table *tab)
{
    size_t capacity = 2 * (tab->mask + 1);
    Slot *slots = PyMem_Calloc(capacity, sizeof(Slot));
    if (slots == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    for (size_t i = 0; i <= tab->mask; i++) {
        Slot s = tab->slots[i];
        if (s.hash == 0)
            continue;
        size_t j = s.hash & (capacity - 1);
        while (slots[j].hash != 0)
            j = (j + 1) & (capacity - 1);
        slots[j] = s;
    }
    PyMem_Free(tab->slots);
    tab->slots = slots;
    tab->mask = capacity - 1;
    return 0;
}

/* Remember the key made of `parts` runs of `t`; `hot` is stored (or updated) with it. */
static int
table_put(Table *tab, uint64_t hash, Text t, const Py_ssize_t *runs, int parts, int hot)
{
    Slot *found = table_find(tab, hash, t, runs, parts);
    if (found != NULL) {
        found->hot = (unsigned char)hot;
        return 0;
    }
    if (2 * (tab->used + 1) > tab->mask + 1 && table_grow(tab) < 0)
        return -1;
    Py_ssize_t len = parts - 1;
    for (int p = 0; p < parts; p++)
        len += runs[2 * p + 1] - runs[2 * p];
    if (len > INT32_MAX) {
        PyErr_SetString(PyExc_ValueError, "piece too long to remember");
        return -1;
    }
    Slot slot = {.hash = hash, .len = (int32_t)len, .hot = (unsigned char)hot, .store = NARROW};
    for (int p = 0; p < parts && slot.store == NARROW; p++)
        for (Py_ssize_t j = runs[2 * p]; j < runs[2 * p + 1]; j++)
            if (PyUnicode_READ(t.kind, t.data, j) > 0xff) {
                slot.store = WIDE;
                break;
            }
    if (slot.store == NARROW && len <= SMALL)
        slot.store = INLINE;
    unsigned char *narrow = slot.store == INLINE ? slot.key.latin1 : NULL;
    Py_UCS4 *wide = NULL;
    if (slot.store == NARROW) {
        narrow = slot.key.narrow = PyMem_Malloc((size_t)(len ? len : 1));
        if (narrow == NULL) {
            PyErr_NoMemory();
            return -1;
        }
    }
    else if (slot.store == WIDE) {
        wide = slot.key.wide = PyMem_Malloc(sizeof(Py_UCS4) * (size_t)(len ? len : 1));
        if (wide == NULL) {
            PyErr_NoMemory();
            return -1;
        }
    }
    Py_ssize_t k = 0;
    for (int p = 0; p < parts; p++) {
        if (p) {
            if (wide)
                wide[k++] = ' ';
            else
                narrow[k++] = ' ';
        }
        for (Py_ssize_t j = runs[2 * p]; j < runs[2 * p + 1]; j++) {
            Py_UCS4 ch = PyUnicode_READ(t.kind, t.data, j);
            if (wide)
                wide[k++] = ch;
            else
                narrow[k++] = (unsigned char)ch;
        }
    }
    size_t i = hash & tab->mask;
    while (tab->slots[i].hash != 0)
        i = (i + 1) & tab->mask;
    tab->slots[i] = slot;
    tab->used++;
    tab->chars += (size_t)len;
    return 0;
}

static Text
text_of(PyObject *s)
{
    return (Text){PyUnicode_KIND(s), PyUnicode_DATA(s)};
}

/* A piece is a whole string with no whitespace in it, as str.split() makes. */
static int
check_piece(PyObject *s, const char *what)
{
    if (!PyUnicode_Check(s)) {
        PyErr_Format(PyExc_TypeError, "%s must be a str", what);
        return -1;
    }
    Text t = text_of(s);
    Py_ssize_t n = PyUnicode_GET_LENGTH(s);
    if (n == 0) {
        PyErr_Format(PyExc_ValueError, "%s is empty", what);
        return -1;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        if (Py_UNICODE_ISSPACE(PyUnicode_READ(t.kind, t.data, i))) {
            PyErr_Format(PyExc_ValueError, "%s has whitespace in it", what);
            return -1;
        }
    }
    return 0;
}

static PyObject *
memo_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "", kwlist))
        return NULL;
    MemoObject *self = (MemoObject *)type->tp_alloc(type, 0);
    if (self == NULL)
        return NULL;
    /* The hash key: str's own per-process random hash of a fixed string. */
    PyObject *probe = PyUnicode_FromString("schoolgate piece memo");
    if (probe == NULL) {
        Py_DECREF(self);
        return NULL;
    }
    self->seed = (uint64_t)PyObject_Hash(probe) ^ 0xcbf29ce484222325ULL;
    Py_DECREF(probe);
    if (table_init(&self->pieces, 1024) < 0 || table_init(&self->dead, 1024) < 0 ||
        table_init(&self->lines, 1024) < 0 ||
        table_init(&self->paths, 64) < 0 || table_init(&self->starts, 64) < 0 ||
        table_init(&self->near, 64) < 0 || table_init(&self->special, 64) < 0 ||
        table_init(&self->firsts, 64) < 0 || table_init(&self->ends, 64) < 0 ||
        table_init(&self->second, 64) < 0 || table_init(&self->second_near, 64) < 0) {
        Py_DECREF(self);
        return NULL;
    }
    return (PyObject *)self;
}

static void
memo_dealloc(MemoObject *self)
{
    table_free(&self->pieces);
    table_free(&self->dead);
    table_free(&self->lines);
    table_free(&self->paths);
    table_free(&self->starts);
    table_free(&self->near);
    table_free(&self->special);
    table_free(&self->firsts);
    table_free(&self->ends);
    table_free(&self->second);
    table_free(&self->second_near);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* ------------------------------------------------------------------ plain words
 * A plain piece is ASCII with no digits, no leet symbols (@ $ | !) and no apostrophes or
 * backticks: phrases.py then reads its words as its runs of letters, lower-cased, and a
 * word's spellings are its letters with repeats collapsed (its skeleton) and that with i
 * and l made one letter (merged). Anything else is left to the matcher. */

#define LONGEST_WORD 64 /* phrases.py's _LONGEST_WORD: longer runs are no word */
#define MAX_RUN 6       /* phrases.py's MAX_RUN: pieces in a row remembered as dead */

static int
is_plain(Text t, Py_ssize_t start, Py_ssize_t end)
{
    for (Py_ssize_t i = start; i < end; i++) {
        Py_UCS4 ch = PyUnicode_READ(t.kind, t.data, i);
        if (ch >= 128 || (ch >= '0' && ch <= '9') || ch == '@' || ch == '$' || ch == '|' ||
            ch == '!' || ch == '\'' || ch == '`')
            return 0;
    }
    return 1;
}

static inline int
is_letter(Py_UCS4 ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z');
}

/* The next run of letters at or after *i, before end; 0 if none. */
static int
next_word(Text t, Py_ssize_t *i, Py_ssize_t end, Py_ssize_t *ws, Py_ssize_t *we)
{
    Py_ssize_t k = *i;
    while (k < end && !is_letter(PyUnicode_READ(t.kind, t.data, k)))
        k++;
    if (k == end)
        return 0;
    *ws = k;
    while (k < end && is_letter(PyUnicode_READ(t.kind, t.data, k)))
        k++;
    *we = k;
    *i = k;
    return 1;
}

static int
has(MemoObject *self, Table *tab, const unsigned char *chars, Py_ssize_t n)
{
    Text t = {PyUnicode_1BYTE_KIND, chars};
    Py_ssize_t run[2] = {0, n};
    return table_find(tab, finish(hash_run(self->seed, t, 0, n)), t, run, 1) != NULL;
}

/* Is the skeleton a first word that may be misspelt, or one letter off one? A word within
 * one letter (wrong, missing, extra or swapped) of a key is, or has a letter whose removal
 * makes it, a key or a key with a letter left out. */
static int
near_start(MemoObject *self, const unsigned char *skel, Py_ssize_t n)
{
    if (has(self, &self->near, skel, n))
        return 1;
    unsigned char less[LONGEST_WORD];
    for (Py_ssize_t p = 0; p < n; p++) {
        memcpy(less, skel, (size_t)p);
        memcpy(less + p, skel + p + 1, (size_t)(n - p - 1));
        if (has(self, &self->near, less, n - 1))
            return 1;
    }
    return 0;
}

/* A plain word's skeleton and merged spelling (as phrases.py's _token makes them); 0 if it
 * is text-speak, read as other words too, or too long to be a word. */
static int
spell(MemoObject *self, Text t, Py_ssize_t start, Py_ssize_t end, unsigned char *skel,
      Py_ssize_t *skel_len, unsigned char *merged, Py_ssize_t *merged_len)
{
    Py_ssize_t n = end - start;
    if (n <= 0 || n > LONGEST_WORD)
        return 0;
    unsigned char low[LONGEST_WORD];
    for (Py_ssize_t k = 0; k < n; k++)
        low[k] = (unsigned char)(PyUnicode_READ(t.kind, t.data, start + k) | 0x20);
    if (has(self, &self->special, low, n))
        return 0;
    Py_ssize_t sn = 0, mn = 0;
    for (Py_ssize_t k = 0; k < n; k++)
        if (sn == 0 || skel[sn - 1] != low[k])
            skel[sn++] = low[k];
    for (Py_ssize_t k = 0; k < sn; k++) {
        unsigned char ch = skel[k] == 'i' || skel[k] == 'l' ? '|' : skel[k];
        if (mn == 0 || merged[mn - 1] != ch)
            merged[mn++] = ch;
    }
    *skel_len = sn;
    *merged_len = mn;
    return 1;
}

/* Does a plain word start nothing in the matcher's indexes (a superset of its own test)? */
static int
starts_nothing(MemoObject *self, Text t, Py_ssize_t start, Py_ssize_t end)
{
    if (end - start > LONGEST_WORD)
        return 1; /* no word: phrases.py's _NOT_A_WORD */
    unsigned char skel[LONGEST_WORD], merged[LONGEST_WORD];
    Py_ssize_t sn, mn;
    if (!spell(self, t, start, end, skel, &sn, merged, &mn))
        return 0; /* text-speak: read as other words too */
    return !has(self, &self->starts, skel, sn) &&
           !(sn >= self->fuzzy_min && near_start(self, skel, sn)) &&
           !has(self, &self->paths, merged, mn);
}

/* A piece never learnt: cold if plain and every word of it starts nothing. */
static int
plain_and_cold(MemoObject *self, Text t, Py_ssize_t start, Py_ssize_t end)
{
    if (!self->indexed || !is_plain(t, start, end))
        return 0;
    Py_ssize_t ws, we, i = start;
    while (next_word(t, &i, end, &ws, &we))
        if (!starts_nothing(self, t, ws, we))
            return 0;
    return 1;
}

/* Is "first second" a first word and a second word of a phrase, the second maybe one
 * letter off (as near_start)? `buf` holds the first word and a space; the second goes on. */
static int
second_word(MemoObject *self, unsigned char *buf, Py_ssize_t at, const unsigned char *word,
            Py_ssize_t n)
{
    memcpy(buf + at, word, (size_t)n);
    if (has(self, &self->second, buf, at + n))
        return 1;
    if (n < self->fuzzy_min)
        return 0;
    if (has(self, &self->second_near, buf, at + n))
        return 1;
    for (Py_ssize_t p = 0; p < n; p++) {
        memcpy(buf + at, word, (size_t)p);
        memcpy(buf + at + p, word + p + 1, (size_t)(n - p - 1));
        if (has(self, &self->second_near, buf, at + n - 1))
            return 1;
    }
    return 0;
}

/* A hot piece of one plain word, before a plain piece: do all the walks from that word die
 * at the next piece's first word, having found nothing? Word walks go on if the next word
 * is a second word after it, or after a first word it may be a misspelling of (or one
 * letter off one); letter walks if the letters of both (the first of the next skipped when
 * it repeats the last) are a path of the trie. Words that are, or may be a misspelling of,
 * a phrase by themselves are the matcher's. */
static int
dies_at_next(MemoObject *self, Text t, const int *bounds, size_t c, size_t count)
{
    if (!self->indexed || c + 1 >= count)
        return 0;
    Py_ssize_t start = bounds[2 * c], end = bounds[2 * c + 1];
    Py_ssize_t nstart = bounds[2 * c + 2], nend = bounds[2 * c + 3];
    if (!is_plain(t, start, end) || !is_plain(t, nstart, nend))
        return 0;
    Py_ssize_t ws, we, xs, xe, i = start, j = nstart;
    if (!next_word(t, &i, end, &ws, &we) || next_word(t, &i, end, &xs, &xe))
        return 0; /* not one word */
    if (!next_word(t, &j, nend, &xs, &xe))
        return 0; /* the next piece has no word: the walks reach further */
    unsigned char wskel[LONGEST_WORD], xskel[LONGEST_WORD], next[LONGEST_WORD];
    unsigned char path[2 * LONGEST_WORD + 1];
    Py_ssize_t wsn, pn, xsn, xn;
    if (!spell(self, t, ws, we, wskel, &wsn, path, &pn) ||
        !spell(self, t, xs, xe, xskel, &xsn, next, &xn))
        return 0; /* text-speak or no word */
    unsigned char buf[2 * LONGEST_WORD + 8];
    if (has(self, &self->firsts, wskel, wsn)) {
        if (has(self, &self->ends, wskel, wsn))
            return 0;
        memcpy(buf, wskel, (size_t)wsn);
        buf[wsn] = ' ';
        if (second_word(self, buf, wsn + 1, xskel, xsn))
            return 0;
    }
    if (wsn >= self->fuzzy_min && near_start(self, wskel, wsn)) {
        /* Maybe a misspelt first word: it keeps its first letter and is one letter longer,
         * shorter or as long. The matcher tags such words' phrases by both ("o6*"). */
        for (Py_ssize_t len = wsn - 1; len <= wsn + 1; len++) {
            int at = snprintf((char *)buf, 16, "%c%zd*", wskel[0], len);
            if (has(self, &self->ends, buf, at))
                return 0;
            buf[at] = ' ';
            if (second_word(self, buf, at + 1, xskel, xsn))
                return 0;
        }
    }
    if (has(self, &self->paths, path, pn)) {
        Py_ssize_t from = next[0] == path[pn - 1] ? 1 : 0;
        if (from == xn)
            return 0; /* the next word only repeats the last letter: the walks go on */
        memcpy(path + pn, next + from, (size_t)(xn - from));
        if (has(self, &self->paths, path, pn + xn - from))
            return 0;
    }
    return 1;
}

/* ------------------------------------------------------------------ settled lines
 * A line of text (its pieces between line breaks) whose pieces are all known, and whose hot
 * pieces but the last each die with the next piece, is settled: pages repeat their lines
 * (navigation, footers, a site's paragraphs), and a settled line is looked up whole. Its
 * last piece pairs with the next line's first, so it is kept with the line and checked as
 * any piece is. */

#define LINE_START 1 /* mark: the piece starts a line */
#define SETTLED 2    /* mark on a line's first piece: the line was found settled */
#define PAIR_DEAD 4  /* mark: the piece's pair with the next is dead */
#define MAX_LINES 50000
#define MAX_LINE_CHARS (8u << 20)

static uint64_t
line_hash(MemoObject *self, const uint64_t *hashes, size_t first, size_t last)
{
    uint64_t h = self->seed ^ 0x9e3779b97f4a7c15ULL;
    for (size_t c = first; c <= last; c++)
        h = (h ^ finish(hashes[c])) * 0x100000001b3ULL;
    return finish(h ^ (last - first));
}

static Slot *
find_line(MemoObject *self, Text t, const int *bounds, const uint64_t *hashes, size_t first,
          size_t last)
{
    Py_ssize_t run[2] = {bounds[2 * first], bounds[2 * last + 1]};
    return table_find(&self->lines, line_hash(self, hashes, first, last), t, run, 1);
}

static int
remember_lines(MemoObject *self, Text t, const int *bounds, const uint64_t *hashes,
               const unsigned char *state, const unsigned char *mark, size_t count)
{
    for (size_t first = 0, last; first < count; first = last + 1) {
        last = first;
        while (last + 1 < count && !(mark[last + 1] & LINE_START))
            last++;
        if (last == first || (mark[first] & SETTLED))
            continue;
        int settled = 1;
        for (size_t c = first; c < last && settled; c++)
            settled = state[c] == 0 || (mark[c] & PAIR_DEAD);
        if (!settled)
            continue;
        if (self->lines.used >= MAX_LINES || self->lines.chars >= MAX_LINE_CHARS)
            if (table_clear(&self->lines) < 0)
                return -1;
        Py_ssize_t run[2] = {bounds[2 * first], bounds[2 * last + 1]};
        uint64_t h = line_hash(self, hashes, first, last);
        if (table_put(&self->lines, h, t, run, 1, state[last] == 1) < 0)
            return -1;
    }
    return 0;
}

static int
grow(size_t *cap, int **bounds, unsigned char **state, uint64_t **hashes, unsigned char **mark)
{
    size_t more = 2 * *cap;
    unsigned char *mk = PyMem_Realloc(*mark, more);
    if (mk == NULL)
        goto fail;
    *mark = mk;
    int *b = PyMem_Realloc(*bounds, more * 2 * sizeof(int));
    if (b == NULL)
        goto fail;
    *bounds = b;
    unsigned char *st = PyMem_Realloc(*state, more);
    if (st == NULL)
        goto fail;
    *state = st;
    uint64_t *hs = PyMem_Realloc(*hashes, more * sizeof(uint64_t));
    if (hs == NULL)
        goto fail;
    *hashes = hs;
    *cap = more;
    return 0;
fail:
    PyErr_NoMemory();
    return -1;
}

PyDoc_STRVAR(scan_doc,
"scan(text) -> (unknown, alive, bounds)\n\n"
"Split `text` at whitespace as str.split() does and look each piece up.\n"
"unknown: the distinct pieces not learnt (nor judged cold here); then alive is empty:\n"
"learn them, scan again.\n"
"alive: the indices of hot pieces not dead with the pieces after them (as a pair or a\n"
"run up to MAX_RUN; the last piece pairs with nothing, never dead).\n"
"bounds: bytes of native ints, the start and end of every piece in turn.");

static PyObject *
memo_scan(MemoObject *self, PyObject *text)
{
    if (!PyUnicode_Check(text))
        return PyErr_Format(PyExc_TypeError, "scan() takes a str");
    Py_ssize_t n = PyUnicode_GET_LENGTH(text);
    if (n > INT_MAX)
        return PyErr_Format(PyExc_ValueError, "text too long to scan");
    Text t = text_of(text);
    size_t cap = 256, count = 0;
    int *bounds = PyMem_Malloc(cap * 2 * sizeof(int));
    unsigned char *state = PyMem_Malloc(cap);   /* 0 cold, 1 hot, 2 unknown */
    uint64_t *hashes = PyMem_Malloc(cap * sizeof(uint64_t));
    unsigned char *mark = PyMem_Malloc(cap); /* LINE_START, then PAIR_DEAD */
    PyObject *unknown = PySet_New(NULL);
    PyObject *alive = PyList_New(0);
    PyObject *result = NULL;
    if (bounds == NULL || state == NULL || hashes == NULL || mark == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    if (unknown == NULL || alive == NULL)
        goto done;
    /* First the pieces' bounds and hashes, in a loop made for the text's storage width; a
     * piece after a line break starts a line. */
#define FIND_PIECES(TYPE, IS_SPACE)                                                       \
    do {                                                                                \
        const TYPE *p = (const TYPE *)t.data;                                           \
        Py_ssize_t i = 0;                                                               \
        while (i < n) {                                                                 \
            int line = count == 0;                                                      \
            while (i < n && IS_SPACE(p[i]))                                             \
                line |= p[i++] == '\n';                                                 \
            if (i == n)                                                                 \
                break;                                                                  \
            Py_ssize_t start = i;                                                       \
            uint64_t h = self->seed;                                                    \
            while (i < n && !IS_SPACE(p[i]))                                            \
                h = mix(h, p[i++]);                                                     \
            if (count == cap && grow(&cap, &bounds, &state, &hashes, &mark) < 0)        \
                goto done;                                                              \
            bounds[2 * count] = (int)start;                                             \
            bounds[2 * count + 1] = (int)i;                                             \
            mark[count] = line ? LINE_START : 0;                                        \
            hashes[count++] = h; /* unfinished: a pair's hash goes on from it */        \
        }                                                                               \
    } while (0)
#define LATIN1_SPACE(ch) latin1_space[(ch)]
    if (t.kind == PyUnicode_1BYTE_KIND)
        FIND_PIECES(Py_UCS1, LATIN1_SPACE);
    else if (t.kind == PyUnicode_2BYTE_KIND)
        FIND_PIECES(Py_UCS2, Py_UNICODE_ISSPACE);
    else
        FIND_PIECES(Py_UCS4, Py_UNICODE_ISSPACE);
#undef FIND_PIECES
#undef LATIN1_SPACE
    /* Then each line looked up: a line found settled before (its pieces known, and every
     * hot one but the last dead with the next) is one look-up; only its last piece is
     * looked at, as it pairs with the next line. Other lines' pieces are looked up each:
     * hot, cold, or new (handed back to be learnt). */
    for (size_t first = 0, last; first < count; first = last + 1) {
        last = first;
        while (last + 1 < count && !(mark[last + 1] & LINE_START))
            last++;
        Slot *line = last > first ? find_line(self, t, bounds, hashes, first, last) : NULL;
        if (line != NULL) {
            memset(state + first, 0, last - first);
            state[last] = line->hot;
            mark[first] |= SETTLED;
            continue;
        }
        for (size_t c = first; c <= last; c++) {
            Py_ssize_t run[2] = {bounds[2 * c], bounds[2 * c + 1]};
            Slot *s = table_find(&self->pieces, finish(hashes[c]), t, run, 1);
            if (s != NULL) {
                state[c] = s->hot;
                continue;
            }
            if (plain_and_cold(self, t, run[0], run[1])) {
                state[c] = 0; /* remembered: next time one look-up */
                if (table_put(&self->pieces, finish(hashes[c]), t, run, 1, 0) < 0)
                    goto done;
                continue;
            }
            state[c] = 2;
            PyObject *piece = PyUnicode_Substring(text, run[0], run[1]);
            if (piece == NULL || PySet_Add(unknown, piece) < 0) {
                Py_XDECREF(piece);
                goto done;
            }
            Py_DECREF(piece);
        }
    }
    if (PySet_GET_SIZE(unknown) == 0) {
        for (size_t c = 0; c < count; c++) {
            if (!state[c])
                continue;
            /* Dead as a pair with the next piece, or found dead here (then remembered as a
             * pair: next time one look-up), or dead as a run of up to MAX_RUN pieces. */
            int is_dead = 0;
            if (c + 1 < count) {
                Py_ssize_t runs[2 * MAX_RUN];
                size_t most = count - c < MAX_RUN ? count - c : MAX_RUN;
                for (size_t k = 0; k < 2 * most; k++)
                    runs[k] = bounds[2 * c + k];
                uint64_t h = hash_run(mix(hashes[c], ' '), t, runs[2], runs[3]);
                uint64_t pair = finish(h);
                is_dead = table_find(&self->dead, pair, t, runs, 2) != NULL;
                if (!is_dead && dies_at_next(self, t, bounds, c, count)) {
                    is_dead = 1;
                    if (table_put(&self->dead, pair, t, runs, 2, 1) < 0)
                        goto done;
                }
                if (is_dead)
                    mark[c] |= PAIR_DEAD;
                for (size_t k = 2; k < most && !is_dead; k++) {
                    h = hash_run(mix(h, ' '), t, runs[2 * k], runs[2 * k + 1]);
                    is_dead = table_find(&self->dead, finish(h), t, runs, (int)k + 1) != NULL;
                }
            }
            if (!is_dead) {
                PyObject *k = PyLong_FromSize_t(c);
                if (k == NULL || PyList_Append(alive, k) < 0) {
                    Py_XDECREF(k);
                    goto done;
                }
                Py_DECREF(k);
            }
        }
        if (remember_lines(self, t, bounds, hashes, state, mark, count) < 0)
            goto done;
    }
    PyObject *unknown_list = PySequence_List(unknown);
    if (unknown_list == NULL)
        goto done;
    PyObject *bytes = PyBytes_FromStringAndSize((const char *)bounds,
                                                (Py_ssize_t)(count * 2 * sizeof(int)));
    if (bytes == NULL) {
        Py_DECREF(unknown_list);
        goto done;
    }
    result = PyTuple_Pack(3, unknown_list, alive, bytes);
    Py_DECREF(unknown_list);
    Py_DECREF(bytes);
done:
    PyMem_Free(bounds);
    PyMem_Free(state);
    PyMem_Free(hashes);
    PyMem_Free(mark);
    Py_XDECREF(unknown);
    Py_XDECREF(alive);
    return result;
}

/* A whole string's hash, as its run in a text would have (scan), and that run. */
static uint64_t
str_hash(MemoObject *self, PyObject *str, Py_ssize_t *run, Text *t)
{
    *t = text_of(str);
    run[0] = 0;
    run[1] = PyUnicode_GET_LENGTH(str);
    return finish(hash_run(self->seed, *t, 0, run[1]));
}

static int
fill(MemoObject *self, Table *tab, PyObject *items, const char *what)
{
    if (table_clear(tab) < 0)
        return -1;
    PyObject *it = PyObject_GetIter(items), *item;
    if (it == NULL)
        return -1;
    while ((item = PyIter_Next(it)) != NULL) {
        if (!PyUnicode_Check(item) || PyUnicode_GET_LENGTH(item) == 0) {
            PyErr_Format(PyExc_ValueError, "index: %s holds %R, not a word", what, item);
            Py_DECREF(item);
            Py_DECREF(it);
            return -1;
        }
        Py_ssize_t runs[2];
        Text t;
        uint64_t h = str_hash(self, item, runs, &t);
        int rc = table_put(tab, h, t, runs, 1, 1);
        Py_DECREF(item);
        if (rc < 0) {
            Py_DECREF(it);
            return -1;
        }
    }
    Py_DECREF(it);
    return PyErr_Occurred() ? -1 : 0;
}

PyDoc_STRVAR(index_doc,
"index(*, paths, starts, near, special, firsts, ends, second, second_near, fuzzy_min):\n"
"what the matcher's indexes start with. With it, a plain piece (ASCII, no digits, leet\n"
"symbols or apostrophes) whose words start nothing is judged cold here, and a plain\n"
"one-word piece whose walks all die at the next piece's first word is not handed back.\n"
"Every piece and pair learnt is forgotten. paths: every path from the letter trie's root\n"
"(i and l as |); starts: first words of phrases and innocent phrases; near: first words\n"
"that may be misspelt, and each with a letter left out; special: text-speak words;\n"
"firsts: first words of phrases; ends: those that are a phrase themselves; second:\n"
"'first second' for each phrase's first two words; second_near: the same for second words\n"
"that may be misspelt, and each with a letter left out; fuzzy_min: the shortest word\n"
"read as misspelt.");

static PyObject *
memo_index(MemoObject *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"paths", "starts", "near", "special", "firsts", "ends",
                             "second", "second_near", "fuzzy_min", NULL};
    PyObject *items[8];
    Table *tables[8] = {&self->paths, &self->starts, &self->near, &self->special,
                        &self->firsts, &self->ends, &self->second, &self->second_near};
    Py_ssize_t fuzzy_min;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "$OOOOOOOOn:index", kwlist, &items[0],
                                     &items[1], &items[2], &items[3], &items[4], &items[5],
                                     &items[6], &items[7], &fuzzy_min))
        return NULL;
    self->indexed = 0;
    for (int k = 0; k < 8; k++)
        if (fill(self, tables[k], items[k], kwlist[k]) < 0)
            return NULL;
    if (table_clear(&self->pieces) < 0 || table_clear(&self->dead) < 0 ||
        table_clear(&self->lines) < 0)
        return NULL;
    self->fuzzy_min = fuzzy_min;
    self->indexed = 1;
    Py_RETURN_NONE;
}

PyDoc_STRVAR(learn_doc, "learn(piece, hot): remember whether a piece holds a hot word.");

static PyObject *
memo_learn(MemoObject *self, PyObject *args)
{
    PyObject *piece;
    int hot;
    if (!PyArg_ParseTuple(args, "Up:learn", &piece, &hot) || check_piece(piece, "piece") < 0)
        return NULL;
    Py_ssize_t runs[2];
    Text t;
    uint64_t h = str_hash(self, piece, runs, &t);
    Slot *known = table_find(&self->pieces, h, t, runs, 1);
    if (known != NULL && known->hot != (hot != 0) && table_clear(&self->lines) < 0)
        return NULL; /* settled lines took it for what it was */
    if (table_put(&self->pieces, h, t, runs, 1, hot) < 0)
        return NULL;
    Py_RETURN_NONE;
}

PyDoc_STRVAR(bury_doc,
"bury(piece, next, ...): remember that every walk from piece dies by the last one given\n"
"(2 to MAX_RUN pieces in a row).");

/* A dead run's key is its pieces' code points with a space between each, one text: the
 * pieces are joined into one string first so that table_find reads a single text. */
static PyObject *
memo_bury(MemoObject *self, PyObject *args)
{
    Py_ssize_t parts = PyTuple_GET_SIZE(args);
    if (parts < 2 || parts > MAX_RUN)
        return PyErr_Format(PyExc_TypeError, "bury() takes 2 to %d pieces", MAX_RUN);
    Py_ssize_t runs[2 * MAX_RUN], at = 0;
    for (Py_ssize_t k = 0; k < parts; k++) {
        PyObject *piece = PyTuple_GET_ITEM(args, k);
        if (check_piece(piece, k == 0 ? "piece" : "next") < 0)
            return NULL;
        runs[2 * k] = at;
        at += PyUnicode_GET_LENGTH(piece);
        runs[2 * k + 1] = at;
        at++;
    }
    PyObject *space = PyUnicode_FromString(" ");
    if (space == NULL)
        return NULL;
    PyObject *joined = PyUnicode_Join(space, args);
    Py_DECREF(space);
    if (joined == NULL)
        return NULL;
    Text t = text_of(joined);
    uint64_t h = hash_run(self->seed, t, runs[0], runs[1]);
    for (Py_ssize_t k = 1; k < parts; k++)
        h = hash_run(mix(h, ' '), t, runs[2 * k], runs[2 * k + 1]);
    int rc = table_put(&self->dead, finish(h), t, runs, (int)parts, 1);
    Py_DECREF(joined);
    if (rc < 0)
        return NULL;
    Py_RETURN_NONE;
}

PyDoc_STRVAR(knows_doc, "knows(piece) -> True (hot), False (cold) or None (not learnt).");

static PyObject *
memo_knows(MemoObject *self, PyObject *piece)
{
    if (check_piece(piece, "piece") < 0)
        return NULL;
    Py_ssize_t runs[2];
    Text t;
    uint64_t h = str_hash(self, piece, runs, &t);
    Slot *s = table_find(&self->pieces, h, t, runs, 1);
    if (s == NULL)
        Py_RETURN_NONE;
    return PyBool_FromLong(s->hot);
}

PyDoc_STRVAR(clear_doc, "clear(): forget every piece and pair.");

static PyObject *
memo_clear(MemoObject *self, PyObject *Py_UNUSED(ignored))
{
    if (table_clear(&self->pieces) < 0 || table_clear(&self->dead) < 0 ||
        table_clear(&self->lines) < 0)
        return NULL;
    Py_RETURN_NONE;
}

PyDoc_STRVAR(clear_dead_doc, "clear_dead(): forget every dead pair.");

static PyObject *
memo_clear_dead(MemoObject *self, PyObject *Py_UNUSED(ignored))
{
    if (table_clear(&self->dead) < 0 || table_clear(&self->lines) < 0)
        return NULL; /* settled lines relied on dead pairs */
    Py_RETURN_NONE;
}

static PyObject *
memo_get_pieces(MemoObject *self, void *Py_UNUSED(closure))
{
    return PyLong_FromSize_t(self->pieces.used);
}

static PyObject *
memo_get_pairs(MemoObject *self, void *Py_UNUSED(closure))
{
    return PyLong_FromSize_t(self->dead.used);
}

static PyMethodDef memo_methods[] = {
    {"scan", (PyCFunction)memo_scan, METH_O, scan_doc},
    {"learn", (PyCFunction)memo_learn, METH_VARARGS, learn_doc},
    {"index", (PyCFunction)(void (*)(void))memo_index, METH_VARARGS | METH_KEYWORDS, index_doc},
    {"bury", (PyCFunction)memo_bury, METH_VARARGS, bury_doc},
    {"knows", (PyCFunction)memo_knows, METH_O, knows_doc},
    {"clear", (PyCFunction)memo_clear, METH_NOARGS, clear_doc},
    {"clear_dead", (PyCFunction)memo_clear_dead, METH_NOARGS, clear_dead_doc},
    {NULL, NULL, 0, NULL},
};

static PyObject *
memo_get_lines(MemoObject *self, void *Py_UNUSED(closure))
{
    return PyLong_FromSize_t(self->lines.used);
}

static PyGetSetDef memo_getset[] = {
    {"lines", (getter)memo_get_lines, NULL, "settled lines remembered", NULL},
    {"pieces", (getter)memo_get_pieces, NULL, "pieces learnt", NULL},
    {"pairs", (getter)memo_get_pairs, NULL, "dead pairs remembered", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject MemoType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "proxy_addons.core.content._piece_memo.PieceMemo",
    .tp_doc = PyDoc_STR("Text pieces known hot or cold, and pairs of pieces known dead."),
    .tp_basicsize = sizeof(MemoObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = memo_new,
    .tp_dealloc = (destructor)memo_dealloc,
    .tp_methods = memo_methods,
    .tp_getset = memo_getset,
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "proxy_addons.core.content._piece_memo",
    .m_doc = PyDoc_STR("The content scan's memory of text pieces, in C (see piece_memo.py)."),
    .m_size = -1,
};

PyMODINIT_FUNC
PyInit__piece_memo(void)
{
    for (int ch = 0; ch < 256; ch++)
        latin1_space[ch] = (unsigned char)Py_UNICODE_ISSPACE((Py_UCS4)ch);
    if (PyType_Ready(&MemoType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    if (PyModule_AddObjectRef(m, "PieceMemo", (PyObject *)&MemoType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
