/* StackTable: stacks.StackTable in C (included by _native.c).
 *
 * The same contract as the reference: intern_frame(frame, limit) returns a small int id
 * for the stack from `frame` outwards, keyed by (code, f_lasti) of up to `limit` frames
 * (racecheck's own included, as in the reference), storing (code, lasti, ...) of the
 * user's frames only (racecheck's skipped, stopping at a launcher's); get(sid) gives the
 * resolved (filename, lineno, function)* stack or None once forgotten; at most
 * `capacity` stacks are kept, oldest forgotten first.  The hot case (a stack seen
 * before) allocates nothing: the key is built on the C stack and compared in place.
 *
 * Ids are consecutive, and eviction is first-in first-out, so the live ids are always
 * [next - count, next) and `ring[sid % capacity]` is the entry of a live sid.
 *
 * Concurrency: the table's structure is changed only inside a critical section that
 * runs no Python code and allocates only with PyMem_Raw* (a mutex on free-threaded
 * builds, nothing under the GIL, which such a section cannot lose).  Python objects
 * (the stored tuple) are built before it and released after it.
 */

#define STACK_LIMIT_MAX 64

typedef struct SEntry {
    struct SEntry *next; /* bucket chain */
    uint64_t hash;
    int64_t sid;
    PyObject *stored; /* (code, lasti, ...): keeps the codes (hence the key's ids) alive */
    Py_ssize_t n;     /* key length in words */
    uintptr_t key[];
} SEntry;

typedef struct {
    PyObject_HEAD
    SEntry **buckets;
    Py_ssize_t nbuckets; /* power of two */
    SEntry **ring;       /* capacity slots */
    Py_ssize_t capacity, count;
    int64_t next;
    PyObject *pkg;        /* racecheck's directory (str, with trailing separator) */
    PyObject *boundaries; /* frozenset of launcher file names */
    PyObject *resolve;    /* stacks.resolve */
#ifdef Py_GIL_DISABLED
    PyMutex mutex;
#endif
} StackTable;

static PyTypeObject StackTable_Type;

#ifdef Py_GIL_DISABLED
#define ST_LOCK(t) PyMutex_Lock(&(t)->mutex)
#define ST_UNLOCK(t) PyMutex_Unlock(&(t)->mutex)
#else
#define ST_LOCK(t) ((void)(t))
#define ST_UNLOCK(t) ((void)(t))
#endif

static uint64_t stack_hash(const uintptr_t *key, Py_ssize_t n) {
    uint64_t h = 0xcbf29ce484222325ull ^ (uint64_t)n;
    for (Py_ssize_t i = 0; i < n; i++) {
        h ^= (uint64_t)key[i];
        h *= 0x100000001b3ull;
        h ^= h >> 29;
    }
    return h;
}

/* Fill key with (code, lasti) of up to `limit` frames from `frame`; returns its length. */
static Py_ssize_t stack_key(PyObject *frame, int limit, uintptr_t *key) {
    Py_ssize_t n = 0;
    if (frame == NULL || frame == Py_None || !PyFrame_Check(frame)) return 0;
    PyFrameObject *f = (PyFrameObject *)Py_NewRef(frame);
    for (int i = 0; i < limit && f != NULL; i++) {
        PyCodeObject *code = PyFrame_GetCode(f);
        key[n++] = (uintptr_t)code;
        key[n++] = (uintptr_t)(intptr_t)PyFrame_GetLasti(f);
        Py_DECREF(code); /* the frame keeps it alive while we compare */
        PyFrameObject *back = PyFrame_GetBack(f);
        Py_DECREF(f);
        f = back;
    }
    Py_XDECREF(f);
    return n;
}

/* Inside the section: the entry with this key, or NULL. */
static SEntry *stack_find(StackTable *t, uint64_t h, const uintptr_t *key, Py_ssize_t n) {
    for (SEntry *e = t->buckets[h & (uint64_t)(t->nbuckets - 1)]; e != NULL; e = e->next)
        if (e->hash == h && e->n == n && memcmp(e->key, key, (size_t)n * sizeof(uintptr_t)) == 0)
            return e;
    return NULL;
}

/* Inside the section: unlink e from its bucket. */
static void stack_unlink(StackTable *t, SEntry *e) {
    SEntry **p = &t->buckets[e->hash & (uint64_t)(t->nbuckets - 1)];
    while (*p != NULL && *p != e) p = &(*p)->next;
    if (*p == e) *p = e->next;
}

/* What the reference stores for a stack: (code, lasti) of each user frame, racecheck's
 * frames skipped, stopping at a launcher's frame.  New reference. */
static PyObject *stack_stored(StackTable *t, PyObject *frame, int limit) {
    PyObject *out = PyList_New(0);
    if (out == NULL) return NULL;
    if (frame == NULL || frame == Py_None || !PyFrame_Check(frame)) goto done;
    PyFrameObject *f = (PyFrameObject *)Py_NewRef(frame);
    for (int i = 0; i < limit && f != NULL; i++) {
        PyCodeObject *code = PyFrame_GetCode(f);
        PyObject *filename = code->co_filename;
        int ours = PyUnicode_Tailmatch(filename, t->pkg, 0, PY_SSIZE_T_MAX, -1);
        int err = ours < 0;
        if (!err && !ours) {
            PyObject *lasti = PyLong_FromLong(PyFrame_GetLasti(f));
            err = lasti == NULL || PyList_Append(out, (PyObject *)code) < 0 ||
                  PyList_Append(out, lasti) < 0;
            Py_XDECREF(lasti);
        } else if (!err) {
            int stop = PySet_Contains(t->boundaries, filename);
            if (stop < 0) err = 1;
            else if (stop) {
                Py_DECREF(code);
                break;
            }
        }
        Py_DECREF(code);
        if (err) {
            Py_DECREF(f);
            Py_DECREF(out);
            return NULL;
        }
        PyFrameObject *back = PyFrame_GetBack(f);
        Py_DECREF(f);
        f = back;
    }
    Py_XDECREF(f);
done:;
    PyObject *tuple = PyList_AsTuple(out);
    Py_DECREF(out);
    return tuple;
}

/* The id of the stack from `frame` (at most `limit` frames); -1 on error. */
static int64_t stack_intern(StackTable *t, PyObject *frame, int limit) {
    uintptr_t key[2 * STACK_LIMIT_MAX];
    if (limit > STACK_LIMIT_MAX) limit = STACK_LIMIT_MAX;
    if (limit < 1) limit = 1;
    Py_ssize_t n = stack_key(frame, limit, key);
    uint64_t h = stack_hash(key, n);
    int64_t sid = -1;
    ST_LOCK(t);
    SEntry *e = stack_find(t, h, key, n);
    if (e != NULL) sid = e->sid;
    ST_UNLOCK(t);
    if (sid >= 0) return sid;

    /* Miss: build everything first, then insert (another thread may have meanwhile). */
    PyObject *stored = stack_stored(t, frame, limit);
    if (stored == NULL) return -1;
    SEntry *fresh = PyMem_RawMalloc(sizeof(SEntry) + (size_t)n * sizeof(uintptr_t));
    if (fresh == NULL) {
        Py_DECREF(stored);
        PyErr_NoMemory();
        return -1;
    }
    fresh->hash = h;
    fresh->n = n;
    fresh->stored = stored;
    memcpy(fresh->key, key, (size_t)n * sizeof(uintptr_t));
    SEntry *evicted = NULL;
    ST_LOCK(t);
    e = stack_find(t, h, key, n);
    if (e != NULL) {
        sid = e->sid;
    } else {
        if (t->count == t->capacity) { /* forget the oldest */
            int64_t oldest = t->next - t->count;
            evicted = t->ring[oldest % t->capacity];
            t->ring[oldest % t->capacity] = NULL;
            stack_unlink(t, evicted);
            t->count--;
        }
        sid = fresh->sid = t->next++;
        SEntry **bucket = &t->buckets[h & (uint64_t)(t->nbuckets - 1)];
        fresh->next = *bucket;
        *bucket = fresh;
        t->ring[sid % t->capacity] = fresh;
        t->count++;
        fresh = NULL;
    }
    ST_UNLOCK(t);
    if (fresh != NULL) {
        Py_DECREF(fresh->stored);
        PyMem_RawFree(fresh);
    }
    if (evicted != NULL) {
        Py_DECREF(evicted->stored);
        PyMem_RawFree(evicted);
    }
    return sid;
}

static PyObject *StackTable_new(PyTypeObject *type, PyObject *args, PyObject *kw) {
    Py_ssize_t capacity;
    PyObject *pkg, *boundaries, *resolve;
    if (!PyArg_ParseTuple(args, "nUOO:StackTable", &capacity, &pkg, &boundaries, &resolve))
        return NULL;
    if (!PyAnySet_Check(boundaries)) {
        PyErr_SetString(PyExc_TypeError, "boundaries must be a set of file names");
        return NULL;
    }
    if (capacity < 1) capacity = 1;
    StackTable *t = (StackTable *)type->tp_alloc(type, 0);
    if (t == NULL) return NULL;
    Py_ssize_t nb = 64;
    while (nb < capacity) nb *= 2;
    t->buckets = PyMem_RawCalloc((size_t)nb, sizeof(SEntry *));
    t->ring = PyMem_RawCalloc((size_t)capacity, sizeof(SEntry *));
    if (t->buckets == NULL || t->ring == NULL) {
        Py_DECREF(t);
        return PyErr_NoMemory();
    }
    t->nbuckets = nb;
    t->capacity = capacity;
    t->next = 1;
    t->pkg = Py_NewRef(pkg);
    t->boundaries = Py_NewRef(boundaries);
    t->resolve = Py_NewRef(resolve);
    return (PyObject *)t;
}

/* Detach every entry (inside the section), release them outside it. */
static void stack_clear(StackTable *t) {
    if (t->ring == NULL) return;
    SEntry **taken = PyMem_RawMalloc((size_t)t->capacity * sizeof(SEntry *));
    if (taken == NULL) return;
    Py_ssize_t k = 0;
    ST_LOCK(t);
    for (Py_ssize_t i = 0; i < t->capacity; i++) {
        if (t->ring[i] != NULL) taken[k++] = t->ring[i];
        t->ring[i] = NULL;
    }
    memset(t->buckets, 0, (size_t)t->nbuckets * sizeof(SEntry *));
    t->count = 0;
    ST_UNLOCK(t);
    for (Py_ssize_t i = 0; i < k; i++) {
        Py_DECREF(taken[i]->stored);
        PyMem_RawFree(taken[i]);
    }
    PyMem_RawFree(taken);
}

static void StackTable_dealloc(StackTable *t) {
    stack_clear(t);
    PyMem_RawFree(t->buckets);
    PyMem_RawFree(t->ring);
    Py_XDECREF(t->pkg);
    Py_XDECREF(t->boundaries);
    Py_XDECREF(t->resolve);
    Py_TYPE(t)->tp_free((PyObject *)t);
}

static PyObject *StackTable_intern_frame(StackTable *t, PyObject *const *a, Py_ssize_t nargs) {
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "intern_frame(frame, limit)");
        return NULL;
    }
    long limit = PyLong_AsLong(a[1]);
    if (limit == -1 && PyErr_Occurred()) return NULL;
    int64_t sid = stack_intern(t, a[0], (int)(limit > STACK_LIMIT_MAX ? STACK_LIMIT_MAX : limit));
    return sid < 0 ? NULL : PyLong_FromLongLong(sid);
}

static PyObject *StackTable_get(StackTable *t, PyObject *arg) {
    long long sid = PyLong_AsLongLong(arg);
    if (sid == -1 && PyErr_Occurred()) return NULL;
    PyObject *stored = NULL;
    ST_LOCK(t);
    if (sid >= t->next - t->count && sid < t->next && sid > 0) {
        SEntry *e = t->ring[sid % t->capacity];
        if (e != NULL && e->sid == sid) stored = Py_NewRef(e->stored);
    }
    ST_UNLOCK(t);
    if (stored == NULL) Py_RETURN_NONE;
    PyObject *out = PyObject_CallOneArg(t->resolve, stored);
    Py_DECREF(stored);
    return out;
}

static PyObject *StackTable_clear_m(StackTable *t, PyObject *Py_UNUSED(x)) {
    stack_clear(t);
    Py_RETURN_NONE;
}

static Py_ssize_t StackTable_len(StackTable *t) { return t->count; }

static PyObject *StackTable_get_capacity(StackTable *t, void *Py_UNUSED(c)) {
    return PyLong_FromSsize_t(t->capacity);
}

static PyMethodDef StackTable_methods[] = {
    {"intern_frame", (PyCFunction)(void (*)(void))StackTable_intern_frame, METH_FASTCALL,
     "intern_frame(frame, limit) -> id of the stack from frame outwards."},
    {"get", (PyCFunction)StackTable_get, METH_O,
     "get(sid) -> (filename, lineno, function)* of a stack, None if forgotten."},
    {"clear", (PyCFunction)StackTable_clear_m, METH_NOARGS, "Forget every stack."},
    {NULL}};

/* A new capacity keeps the newest stacks that fit and forgets the others. */
static int StackTable_set_capacity(StackTable *t, PyObject *v, void *Py_UNUSED(c)) {
    Py_ssize_t cap = v != NULL ? PyLong_AsSsize_t(v) : -1;
    if (cap == -1 && (v == NULL || PyErr_Occurred())) {
        if (!PyErr_Occurred()) PyErr_SetString(PyExc_TypeError, "capacity is an int");
        return -1;
    }
    if (cap < 1) cap = 1;
    SEntry **ring = PyMem_RawCalloc((size_t)cap, sizeof(SEntry *));
    SEntry **evicted = PyMem_RawMalloc((size_t)(t->capacity + 1) * sizeof(SEntry *));
    if (ring == NULL || evicted == NULL) {
        PyMem_RawFree(ring);
        PyMem_RawFree(evicted);
        PyErr_NoMemory();
        return -1;
    }
    Py_ssize_t k = 0;
    ST_LOCK(t);
    for (int64_t sid = t->next - t->count; sid < t->next; sid++) {
        SEntry *e = t->ring[sid % t->capacity];
        if (e == NULL) continue;
        if (sid >= t->next - cap) {
            ring[sid % cap] = e;
        } else {
            stack_unlink(t, e);
            evicted[k++] = e;
        }
    }
    SEntry **old = t->ring;
    t->ring = ring;
    t->count = t->count < cap ? t->count : cap;
    t->capacity = cap;
    ST_UNLOCK(t);
    PyMem_RawFree(old);
    for (Py_ssize_t i = 0; i < k; i++) {
        Py_DECREF(evicted[i]->stored);
        PyMem_RawFree(evicted[i]);
    }
    PyMem_RawFree(evicted);
    return 0;
}

static PyGetSetDef StackTable_getset[] = {
    {"capacity", (getter)StackTable_get_capacity, (setter)StackTable_set_capacity,
     "Stacks kept at most (setting it forgets the oldest beyond it).", NULL},
    {NULL}};

static PySequenceMethods StackTable_seq = {.sq_length = (lenfunc)StackTable_len};

static PyTypeObject StackTable_Type = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "racecheck.engine._native.StackTable",
    .tp_basicsize = sizeof(StackTable),
    .tp_dealloc = (destructor)StackTable_dealloc,
    .tp_as_sequence = &StackTable_seq,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "StackTable(capacity, pkg_dir, boundary_files, resolve): stacks.StackTable in C.",
    .tp_methods = StackTable_methods,
    .tp_getset = StackTable_getset,
    .tp_new = StackTable_new,
};
