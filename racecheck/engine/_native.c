/* racecheck's native core: the detector's per-access hot path in C.
 *
 * The pure-Python engine (detector.py) stays the reference; this module replaces only
 * the parts every access touches, with the same FastTrack rules and the same data
 * layout seen from Python:
 *
 *   Cell     one location's FastTrack state with C int64 epochs (no int objects), and
 *            the read-shared / concurrent-mutator sets as slot-indexed C arrays that
 *            remember insertion order (so reports come out in the reference order).
 *   Shadow   one object's cells (same attributes as shadow.ObjShadow, C fields so the
 *            hot path reads them without attribute lookups).
 *   VClock   a thread's vector clock as an int64 array (sequence protocol for Python).
 *   TState   a thread's state: clock, slot, cached epoch, record, lease.
 *   Core     the six AccessSink methods: thread state from a C thread-local cache,
 *            shadow lookup, same-epoch fast path; anything else calls the detector's
 *            Python slow path, which records the stack and then calls apply() here.
 *   apply()  FastTrack's rules for one access on a Cell, under a striped C lock.
 *
 * Thread safety without the GIL: epochs are read lock-free with atomic loads and
 * written with atomic stores under the cell's stripe lock; read-shared arrays (which
 * may be reallocated) are read only under that lock.  No Python code runs while a
 * stripe lock is held (metas dropped there are tuples of str/int/ThreadRecord, whose
 * deallocation runs no user code), so on GIL builds a stripe is never contended across
 * a GIL switch.  Stripes are PyMutex on 3.13+, PyThread locks before.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <stdint.h>
#include <string.h>

#define SHIFT 20
#define SLOT_MASK ((((int64_t)1) << SHIFT) - 1)
#define SHARED ((int64_t)-1) /* r/m value meaning "see the shared set" */

#define LOAD(x) __atomic_load_n(&(x), __ATOMIC_ACQUIRE)
#define STORE(x, v) __atomic_store_n(&(x), (v), __ATOMIC_RELEASE)

enum { READ = 0, WRITE = 1, MUTATE = 2 };
enum { NS_ATTR = 0, NS_ITEM = 1, NS_WHOLE = 2 };

/* ---- striped locks ------------------------------------------------------------ */

#define NSTRIPES 64
#if PY_VERSION_HEX >= 0x030D0000
static PyMutex stripes[NSTRIPES];
#define STRIPE_LOCK(i) PyMutex_Lock(&stripes[i])
#define STRIPE_UNLOCK(i) PyMutex_Unlock(&stripes[i])
static int stripes_init(void) { return 0; }
#else
static PyThread_type_lock stripes[NSTRIPES];
#define STRIPE_LOCK(i) PyThread_acquire_lock(stripes[i], WAIT_LOCK)
#define STRIPE_UNLOCK(i) PyThread_release_lock(stripes[i])
static int stripes_init(void) {
    for (int i = 0; i < NSTRIPES; i++) {
        if (stripes[i] == NULL && (stripes[i] = PyThread_allocate_lock()) == NULL) {
            PyErr_NoMemory();
            return -1;
        }
    }
    return 0;
}
#endif

static inline int stripe_of(void *p) { return (int)(((uintptr_t)p >> 5) & (NSTRIPES - 1)); }

/* A dict lookup returning a new reference (NULL if absent; error set only on error). */
static inline int dict_getref(PyObject *d, PyObject *k, PyObject **out) {
#if PY_VERSION_HEX >= 0x030D0000
    return PyDict_GetItemRef(d, k, out);
#else
    PyObject *v = PyDict_GetItemWithError(d, k);
    if (v == NULL) {
        *out = NULL;
        return PyErr_Occurred() ? -1 : 0;
    }
    Py_INCREF(v);
    *out = v;
    return 1;
#endif
}

/* setdefault returning a new reference (3.13's PyDict_SetDefaultRef; before, a
 * borrowed result increfed at once, which the GIL makes atomic). */
static inline PyObject *dict_setdefault_ref(PyObject *d, PyObject *k, PyObject *v) {
#if PY_VERSION_HEX >= 0x030D0000
    PyObject *out = NULL;
    if (PyDict_SetDefaultRef(d, k, v, &out) < 0) return NULL;
    return out;
#else
    return Py_XNewRef(PyDict_SetDefault(d, k, v));
#endif
}

/* ---- VClock ------------------------------------------------------------------- */

typedef struct {
    PyObject_HEAD
    int64_t *v;
    Py_ssize_t n, cap;
} VClock;

static PyTypeObject VClock_Type;

static int vc_reserve(VClock *vc, Py_ssize_t n) {
    if (n <= vc->cap) return 0;
    Py_ssize_t cap = vc->cap ? vc->cap : 8;
    while (cap < n) cap *= 2;
    int64_t *nv = PyMem_Realloc(vc->v, (size_t)cap * sizeof(int64_t));
    if (nv == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    memset(nv + vc->cap, 0, (size_t)(cap - vc->cap) * sizeof(int64_t));
    vc->v = nv;
    vc->cap = cap;
    return 0;
}

/* vc := vc join seq (seq: any sequence of ints; vc grows as needed). */
static int vc_join_seq(VClock *vc, PyObject *seq) {
    PyObject *fast = PySequence_Fast(seq, "a clock must be a sequence of ints");
    if (fast == NULL) return -1;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(fast);
    if (vc_reserve(vc, n) < 0) {
        Py_DECREF(fast);
        return -1;
    }
    PyObject **items = PySequence_Fast_ITEMS(fast);
    for (Py_ssize_t i = 0; i < n; i++) {
        long long c = PyLong_AsLongLong(items[i]);
        if (c == -1 && PyErr_Occurred()) {
            Py_DECREF(fast);
            return -1;
        }
        if (c > vc->v[i]) vc->v[i] = c;
    }
    if (n > vc->n) vc->n = n;
    Py_DECREF(fast);
    return 0;
}

static void VClock_dealloc(VClock *self) {
    PyMem_Free(self->v);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static Py_ssize_t VClock_len(VClock *self) { return self->n; }

static PyObject *VClock_item(VClock *self, Py_ssize_t i) {
    if (i < 0 || i >= self->n) {
        PyErr_SetString(PyExc_IndexError, "clock index out of range");
        return NULL;
    }
    return PyLong_FromLongLong(self->v[i]);
}

static PyObject *VClock_repr(VClock *self) {
    PyObject *t = PyTuple_New(self->n);
    if (t == NULL) return NULL;
    for (Py_ssize_t i = 0; i < self->n; i++) {
        PyObject *x = PyLong_FromLongLong(self->v[i]);
        if (x == NULL) {
            Py_DECREF(t);
            return NULL;
        }
        PyTuple_SET_ITEM(t, i, x);
    }
    PyObject *r = PyUnicode_FromFormat("VClock(%R)", t);
    Py_DECREF(t);
    return r;
}

static PySequenceMethods VClock_seq = {
    .sq_length = (lenfunc)VClock_len,
    .sq_item = (ssizeargfunc)VClock_item,
};

static PyTypeObject VClock_Type = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "racecheck.engine._native.VClock",
    .tp_basicsize = sizeof(VClock),
    .tp_dealloc = (destructor)VClock_dealloc,
    .tp_repr = (reprfunc)VClock_repr,
    .tp_as_sequence = &VClock_seq,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "A thread's vector clock (mutated only by its thread).",
};

/* ---- TState ------------------------------------------------------------------- */

typedef struct {
    PyObject_HEAD
    VClock *vc;
    Py_ssize_t slot;
    int64_t epoch;
    PyObject *rec;
    PyObject *lease;
    int busy;
    PyObject *weakreflist;
} TState;

static PyTypeObject TState_Type;

/* The calling thread's state for the last core it used: a borrowed pointer, valid while
 * (core serial, Python thread-state id) match.  Every change of a thread's state goes
 * through Core.set_current (the detector's _set_ts), and a TState that dies clears the
 * cache of the thread it dies on (TState_dealloc): a thread's own state dies on that
 * thread, when its thread-locals are cleared at its end, and code that runs after that
 * (a profiler re-entering the engine during the teardown) finds no stale pointer.  The
 * reference stays borrowed so the state of a thread that ends unseen still dies with
 * its thread-locals, which frees its clock slot. */
#define TLS_FAST __thread __attribute__((tls_model("initial-exec")))
/* initial-exec: a plain %fs-relative load instead of a __tls_get_addr call per access
 * (24 bytes of static TLS, which glibc reserves for dlopen'ed modules). */
static TLS_FAST uint64_t cache_serial;
static TLS_FAST uint64_t cache_tsid;
static TLS_FAST TState *cache_ts;


static inline void ts_refresh_epoch(TState *ts) {
    ts->epoch = (ts->vc->v[ts->slot] << SHIFT) | (int64_t)ts->slot;
}

static int TState_init(TState *self, PyObject *args, PyObject *kw) {
    PyObject *seq, *rec;
    Py_ssize_t slot;
    if (!PyArg_ParseTuple(args, "OnO:TState", &seq, &slot, &rec)) return -1;
    if (slot < 0 || slot > SLOT_MASK) {
        PyErr_SetString(PyExc_ValueError, "slot out of range");
        return -1;
    }
    VClock *vc = PyObject_New(VClock, &VClock_Type);
    if (vc == NULL) return -1;
    vc->v = NULL;
    vc->n = vc->cap = 0;
    if (vc_join_seq(vc, seq) < 0 || vc_reserve(vc, slot + 1) < 0) {
        Py_DECREF(vc);
        return -1;
    }
    if (vc->n < slot + 1) vc->n = slot + 1;
    Py_XSETREF(self->vc, vc);
    self->slot = slot;
    Py_INCREF(rec);
    Py_XSETREF(self->rec, rec);
    ts_refresh_epoch(self);
    return 0;
}

static void TState_dealloc(TState *self) {
    if (cache_ts == self) { /* see the thread-state cache above */
        cache_ts = NULL;
        cache_serial = 0;
    }
    if (self->weakreflist != NULL) PyObject_ClearWeakRefs((PyObject *)self);
    Py_XDECREF(self->vc);
    Py_XDECREF(self->rec);
    Py_XDECREF(self->lease);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *TState_tick(TState *self, PyObject *Py_UNUSED(ignored)) {
    self->vc->v[self->slot] += 1;
    ts_refresh_epoch(self);
    Py_RETURN_NONE;
}

static PyObject *TState_join(TState *self, PyObject *seq) {
    if (vc_join_seq(self->vc, seq) < 0) return NULL;
    Py_RETURN_NONE;
}

/* publish's snapshot: our clock joined with `other` (None or a tuple of ints) as a new
 * tuple; the clock itself is unchanged (the caller ticks it). */
static PyObject *TState_snapshot(TState *self, PyObject *other) {
    Py_ssize_t n = self->vc->n, m = 0;
    if (other != Py_None) {
        if (!PyTuple_Check(other)) {
            PyErr_SetString(PyExc_TypeError, "snapshot(other): a tuple of ints or None");
            return NULL;
        }
        m = PyTuple_GET_SIZE(other);
    }
    PyObject *out = PyTuple_New(n > m ? n : m);
    if (out == NULL) return NULL;
    for (Py_ssize_t i = 0; i < (n > m ? n : m); i++) {
        long long c = i < n ? self->vc->v[i] : 0;
        if (i < m) {
            long long o = PyLong_AsLongLong(PyTuple_GET_ITEM(other, i));
            if (o == -1 && PyErr_Occurred()) {
                Py_DECREF(out);
                return NULL;
            }
            if (o > c) c = o;
        }
        PyObject *item = PyLong_FromLongLong(c);
        if (item == NULL) {
            Py_DECREF(out);
            return NULL;
        }
        PyTuple_SET_ITEM(out, i, item);
    }
    return out;
}

static PyObject *TState_get_epoch(TState *self, void *Py_UNUSED(c)) {
    return PyLong_FromLongLong(self->epoch);
}

static PyObject *TState_get_busy(TState *self, void *Py_UNUSED(c)) {
    return PyBool_FromLong(self->busy);
}

static int TState_set_busy(TState *self, PyObject *v, void *Py_UNUSED(c)) {
    int b = v == NULL ? 0 : PyObject_IsTrue(v);
    if (b < 0) return -1;
    self->busy = b;
    return 0;
}

static PyMethodDef TState_methods[] = {
    {"tick", (PyCFunction)TState_tick, METH_NOARGS, "Advance the own clock entry."},
    {"join", (PyCFunction)TState_join, METH_O, "Join a clock (sequence of ints) into ours."},
    {"snapshot", (PyCFunction)TState_snapshot, METH_O,
     "snapshot(other): our clock joined with other (a tuple, or None) as a tuple."},
    {NULL}};

static PyMemberDef TState_members[] = {
    {"vc", T_OBJECT, offsetof(TState, vc), READONLY, NULL},
    {"slot", T_PYSSIZET, offsetof(TState, slot), READONLY, NULL},
    {"rec", T_OBJECT, offsetof(TState, rec), 0, NULL},
    {"lease", T_OBJECT, offsetof(TState, lease), 0, NULL},
    {NULL}};

static PyGetSetDef TState_getset[] = {
    {"epoch", (getter)TState_get_epoch, NULL, NULL, NULL},
    {"busy", (getter)TState_get_busy, (setter)TState_set_busy, NULL, NULL},
    {NULL}};

static PyTypeObject TState_Type = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "racecheck.engine._native.TState",
    .tp_basicsize = sizeof(TState),
    .tp_dealloc = (destructor)TState_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "TState(vc, slot, record): one thread's clock; touched only by that thread.",
    .tp_weaklistoffset = offsetof(TState, weakreflist),
    .tp_methods = TState_methods,
    .tp_members = TState_members,
    .tp_getset = TState_getset,
    .tp_init = (initproc)TState_init,
    .tp_new = PyType_GenericNew,
};

/* ---- Cell --------------------------------------------------------------------- */

typedef struct {
    Py_ssize_t cap;    /* arrays sized by slot */
    int64_t *clk;      /* slot -> clock, 0 = absent */
    PyObject **meta;   /* slot -> meta */
    Py_ssize_t count;  /* entries, in insertion order in `order` */
    Py_ssize_t *order;
} Shared;

typedef struct {
    PyObject_HEAD
    int64_t w, r, m; /* epochs; r/m == SHARED: see the shared sets */
    PyObject *wm, *rm, *mm;
    Shared *sh; /* [0] read-shared, [1] mutate-shared; NULL until a set is first needed
                 * (most locations never have concurrent readers: 72 bytes, not 144) */
} Cell;

static PyTypeObject Cell_Type;

static Shared no_shared; /* what RS/MS read before the sets exist: empty, never written */
#define RS(c) ((c)->sh != NULL ? &(c)->sh[0] : &no_shared)
#define MS(c) ((c)->sh != NULL ? &(c)->sh[1] : &no_shared)

/* The set to write (under the stripe lock), allocated on first use; NULL: no memory. */
static Shared *shared_writable(Cell *cell, int is_m) {
    if (cell->sh == NULL && (cell->sh = PyMem_Calloc(2, sizeof(Shared))) == NULL) {
        PyErr_NoMemory();
        return NULL;
    }
    return &cell->sh[is_m];
}

static void shared_clear(Shared *s) {
    if (s->count == 0) return; /* also: never writes no_shared */
    for (Py_ssize_t i = 0; i < s->count; i++) Py_CLEAR(s->meta[s->order[i]]);
    for (Py_ssize_t i = 0; i < s->count; i++) s->clk[s->order[i]] = 0;
    s->count = 0;
}

static void shared_free(Shared *s) {
    shared_clear(s);
    PyMem_Free(s->clk);
    PyMem_Free(s->meta);
    PyMem_Free(s->order);
    memset(s, 0, sizeof(*s));
}

/* Set slot -> (clock, meta); steals `meta`. */
static int shared_set(Shared *s, Py_ssize_t slot, int64_t clk, PyObject *meta) {
    if (slot >= s->cap) {
        Py_ssize_t cap = s->cap ? s->cap : 4;
        while (cap <= slot) cap *= 2;
        int64_t *c = PyMem_Realloc(s->clk, (size_t)cap * sizeof(int64_t));
        if (c == NULL) goto nomem;
        s->clk = c;
        PyObject **m = PyMem_Realloc(s->meta, (size_t)cap * sizeof(PyObject *));
        if (m == NULL) goto nomem;
        s->meta = m;
        Py_ssize_t *o = PyMem_Realloc(s->order, (size_t)cap * sizeof(Py_ssize_t));
        if (o == NULL) goto nomem;
        s->order = o;
        memset(s->clk + s->cap, 0, (size_t)(cap - s->cap) * sizeof(int64_t));
        memset(s->meta + s->cap, 0, (size_t)(cap - s->cap) * sizeof(PyObject *));
        s->cap = cap;
    }
    if (s->clk[slot] == 0) s->order[s->count++] = slot;
    s->clk[slot] = clk;
    Py_XSETREF(s->meta[slot], meta);
    return 0;
nomem:
    Py_XDECREF(meta);
    PyErr_NoMemory();
    return -1;
}

static PyObject *Cell_new(PyTypeObject *type, PyObject *args, PyObject *kw) {
    Cell *self = (Cell *)type->tp_alloc(type, 0);
    return (PyObject *)self; /* zeroed: no access yet */
}

static void Cell_dealloc(Cell *self) {
    Py_XDECREF(self->wm);
    Py_XDECREF(self->rm);
    Py_XDECREF(self->mm);
    if (self->sh != NULL) {
        shared_free(&self->sh[0]);
        shared_free(&self->sh[1]);
        PyMem_Free(self->sh);
    }
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* Python view of r/m: an int epoch, or a dict slot -> clock (read-shared). */
static PyObject *cell_view(Cell *self, int is_m, int metas) {
    int i = stripe_of(self);
    PyObject *out = NULL;
    STRIPE_LOCK(i);
    int64_t x = is_m ? self->m : self->r;
    Shared *s = is_m ? MS(self) : RS(self);
    if (x != SHARED) {
        if (metas) {
            out = is_m ? self->mm : self->rm;
            out = out ? out : Py_None;
            Py_INCREF(out);
        } else {
            out = PyLong_FromLongLong(x);
        }
        STRIPE_UNLOCK(i);
        return out;
    }
    /* copy under the lock, build Python objects after it */
    Py_ssize_t n = s->count;
    Py_ssize_t *slots = PyMem_Malloc((size_t)(n ? n : 1) * sizeof(Py_ssize_t));
    int64_t *clks = PyMem_Malloc((size_t)(n ? n : 1) * sizeof(int64_t));
    PyObject **ms = PyMem_Malloc((size_t)(n ? n : 1) * sizeof(PyObject *));
    if (slots == NULL || clks == NULL || ms == NULL) {
        STRIPE_UNLOCK(i);
        PyMem_Free(slots);
        PyMem_Free(clks);
        PyMem_Free(ms);
        return PyErr_NoMemory();
    }
    for (Py_ssize_t k = 0; k < n; k++) {
        slots[k] = s->order[k];
        clks[k] = s->clk[slots[k]];
        ms[k] = s->meta[slots[k]];
        Py_XINCREF(ms[k]);
    }
    STRIPE_UNLOCK(i);
    out = PyDict_New();
    for (Py_ssize_t k = 0; k < n && out != NULL; k++) {
        PyObject *key = PyLong_FromSsize_t(slots[k]);
        PyObject *val = metas ? (ms[k] ? Py_NewRef(ms[k]) : Py_NewRef(Py_None))
                              : PyLong_FromLongLong(clks[k]);
        if (key == NULL || val == NULL || PyDict_SetItem(out, key, val) < 0) Py_CLEAR(out);
        Py_XDECREF(key);
        Py_XDECREF(val);
    }
    for (Py_ssize_t k = 0; k < n; k++) Py_XDECREF(ms[k]);
    PyMem_Free(slots);
    PyMem_Free(clks);
    PyMem_Free(ms);
    return out;
}

static PyObject *Cell_get_w(Cell *self, void *c) { return PyLong_FromLongLong(LOAD(self->w)); }
static PyObject *Cell_get_r(Cell *self, void *c) { return cell_view(self, 0, 0); }
static PyObject *Cell_get_m(Cell *self, void *c) { return cell_view(self, 1, 0); }
static PyObject *Cell_get_rm(Cell *self, void *c) { return cell_view(self, 0, 1); }
static PyObject *Cell_get_mm(Cell *self, void *c) { return cell_view(self, 1, 1); }
static PyObject *Cell_get_wm(Cell *self, void *c) {
    int i = stripe_of(self);
    STRIPE_LOCK(i);
    PyObject *o = self->wm ? self->wm : Py_None;
    Py_INCREF(o);
    STRIPE_UNLOCK(i);
    return o;
}

static PyGetSetDef Cell_getset[] = {
    {"w", (getter)Cell_get_w, NULL, "epoch of the last write (0 = none)", NULL},
    {"wm", (getter)Cell_get_wm, NULL, NULL, NULL},
    {"r", (getter)Cell_get_r, NULL, "read epoch, or slot -> clock when read-shared", NULL},
    {"rm", (getter)Cell_get_rm, NULL, NULL, NULL},
    {"m", (getter)Cell_get_m, NULL, "mutate epoch, or slot -> clock when concurrent", NULL},
    {"mm", (getter)Cell_get_mm, NULL, NULL, NULL},
    {NULL}};

static PyTypeObject Cell_Type = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "racecheck.engine._native.Cell",
    .tp_basicsize = sizeof(Cell),
    .tp_dealloc = (destructor)Cell_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "FastTrack state of one location (see shadow.Cell), C epochs.",
    .tp_getset = Cell_getset,
    .tp_new = Cell_new,
};

/* ---- FastTrack rules ------------------------------------------------------------ */

/* Is the epoch x (nonzero) ordered before vc? */
static inline int ordered(int64_t x, const VClock *vc) {
    Py_ssize_t slot = (Py_ssize_t)(x & SLOT_MASK);
    return slot < vc->n && vc->v[slot] >= (x >> SHIFT);
}

/* Same-epoch rules (lock-free for epochs; the shared set under the stripe lock). */
static int same_epoch(Cell *cell, int cls, const TState *ts) {
    if (cls == WRITE) return LOAD(cell->w) == ts->epoch;
    int64_t x = cls == MUTATE ? LOAD(cell->m) : LOAD(cell->r);
    if (x == ts->epoch) return 1;
    if (x != SHARED) return 0;
    int i = stripe_of(cell), hit = 0;
    STRIPE_LOCK(i);
    Shared *s = cls == MUTATE ? MS(cell) : RS(cell);
    if ((cls == MUTATE ? cell->m : cell->r) == SHARED && ts->slot < s->cap)
        hit = s->clk[ts->slot] == ts->vc->v[ts->slot];
    STRIPE_UNLOCK(i);
    return hit;
}

/* The racing metas found under a stripe lock, collected with raw memory only: a Python
 * list allocated there could start a collection whose finalisers reach this stripe
 * again (3.11 collects on allocation).  The list is built after the unlock. */
typedef struct {
    PyObject **v;
    Py_ssize_t n, cap;
} RaceBuf;

static int add_race(RaceBuf *rb, PyObject *meta) {
    if (rb->n == rb->cap) {
        Py_ssize_t cap = rb->cap ? rb->cap * 2 : 4;
        PyObject **v = PyMem_RawRealloc(rb->v, (size_t)cap * sizeof(PyObject *));
        if (v == NULL) return -1;
        rb->v = v;
        rb->cap = cap;
    }
    rb->v[rb->n++] = Py_NewRef(meta ? meta : Py_None);
    return 0;
}

/* After the unlock: the list of racing metas (None if none), consuming the buffer. */
static PyObject *race_list(RaceBuf *rb, int err) {
    PyObject *out = NULL;
    if (!err && rb->n > 0 && (out = PyList_New(rb->n)) != NULL) {
        for (Py_ssize_t i = 0; i < rb->n; i++) PyList_SET_ITEM(out, i, rb->v[i]);
        rb->n = 0;
    }
    for (Py_ssize_t i = 0; i < rb->n; i++) Py_DECREF(rb->v[i]);
    PyMem_RawFree(rb->v);
    if (err) {
        if (!PyErr_Occurred()) PyErr_NoMemory();
        return NULL;
    }
    if (out == NULL && !PyErr_Occurred()) Py_RETURN_NONE;
    return out;
}

/* Append the meta of every access in x (epoch or shared set) not ordered before vc. */
static int check(int64_t x, PyObject *xm, Shared *s, const VClock *vc, RaceBuf *races) {
    if (x == 0) return 0;
    if (x != SHARED) return ordered(x, vc) ? 0 : add_race(races, xm);
    for (Py_ssize_t k = 0; k < s->count; k++) {
        Py_ssize_t slot = s->order[k];
        if (slot >= vc->n || vc->v[slot] < s->clk[slot])
            if (add_race(races, s->meta[slot]) < 0) return -1;
    }
    return 0;
}

/* Record a read-like access: an epoch while ordered, the shared set once concurrent. */
static int add_access(Cell *cell, int is_m, const TState *ts, PyObject *meta) {
    int64_t *xp = is_m ? &cell->m : &cell->r;
    PyObject **xmp = is_m ? &cell->mm : &cell->rm;
    int64_t x = *xp;
    const VClock *vc = ts->vc;
    Shared *s;
    if (x == SHARED) {
        if ((s = shared_writable(cell, is_m)) == NULL) return -1;
        return shared_set(s, ts->slot, vc->v[ts->slot], Py_NewRef(meta));
    }
    if (x == 0 || ordered(x, vc)) {
        STORE(*xp, ts->epoch);
        Py_XSETREF(*xmp, Py_NewRef(meta));
        return 0;
    }
    if ((s = shared_writable(cell, is_m)) == NULL) return -1;
    PyObject *old = *xmp;
    *xmp = NULL;
    if (shared_set(s, (Py_ssize_t)(x & SLOT_MASK), x >> SHIFT, old) < 0) return -1;
    if (shared_set(s, ts->slot, vc->v[ts->slot], Py_NewRef(meta)) < 0) return -1;
    STORE(*xp, SHARED);
    return 0;
}

/* FastTrack for one access; returns a new list of racing metas, or None. */
static PyObject *apply_rules(Cell *cell, int cls, const TState *ts, PyObject *meta) {
    RaceBuf races = {NULL, 0, 0};
    int err = 0;
    const VClock *vc = ts->vc;
    int64_t epoch = ts->epoch;
    int i = stripe_of(cell);
    STRIPE_LOCK(i);
    int64_t w = cell->w;
    if (cls == WRITE) {
        if (w == epoch) goto done;
        if (w && !ordered(w, vc)) err |= add_race(&races, cell->wm);
        if (!err) err |= check(cell->r, cell->rm, RS(cell), vc, &races);
        if (!err) err |= check(cell->m, cell->mm, MS(cell), vc, &races);
        if (err) goto done;
        STORE(cell->w, epoch);
        Py_XSETREF(cell->wm, Py_NewRef(meta));
        STORE(cell->r, 0);
        Py_CLEAR(cell->rm);
        shared_clear(RS(cell));
        STORE(cell->m, 0);
        Py_CLEAR(cell->mm);
        shared_clear(MS(cell));
        goto done;
    }
    int is_m = cls == MUTATE;
    int64_t x = is_m ? cell->m : cell->r;
    Shared *xs = is_m ? MS(cell) : RS(cell);
    if (x == epoch) goto done;
    if (x == SHARED && ts->slot < xs->cap && xs->clk[ts->slot] == vc->v[ts->slot]) goto done;
    if (w && !ordered(w, vc)) err |= add_race(&races, cell->wm);
    if (!err) {
        if (is_m)
            err |= check(cell->r, cell->rm, RS(cell), vc, &races);
        else
            err |= check(cell->m, cell->mm, MS(cell), vc, &races);
    }
    if (!err) err |= add_access(cell, is_m, ts, meta);
done:
    STRIPE_UNLOCK(i);
    return race_list(&races, err);
}

static int parse_rule_args(PyObject *const *args, Py_ssize_t nargs, Py_ssize_t want,
                           Cell **cell, int *cls, TState **ts) {
    if (nargs != want) {
        PyErr_Format(PyExc_TypeError, "expected %zd arguments", want);
        return -1;
    }
    if (!PyObject_TypeCheck(args[0], &Cell_Type) || !PyObject_TypeCheck(args[2], &TState_Type)) {
        PyErr_SetString(PyExc_TypeError, "expected (Cell, cls, TState, ...)");
        return -1;
    }
    long c = PyLong_AsLong(args[1]);
    if (c == -1 && PyErr_Occurred()) return -1;
    if (c < READ || c > MUTATE) {
        PyErr_SetString(PyExc_ValueError, "access class must be 0, 1 or 2");
        return -1;
    }
    *cell = (Cell *)args[0];
    *cls = (int)c;
    *ts = (TState *)args[2];
    return 0;
}

static PyObject *py_apply(PyObject *mod, PyObject *const *args, Py_ssize_t nargs) {
    Cell *cell;
    int cls;
    TState *ts;
    if (parse_rule_args(args, nargs, 4, &cell, &cls, &ts) < 0) return NULL;
    return apply_rules(cell, cls, ts, args[3]);
}

static PyObject *py_same_epoch(PyObject *mod, PyObject *const *args, Py_ssize_t nargs) {
    Cell *cell;
    int cls;
    TState *ts;
    if (parse_rule_args(args, nargs, 3, &cell, &cls, &ts) < 0) return NULL;
    return PyBool_FromLong(same_epoch(cell, cls, ts));
}

/* ---- Shadow ------------------------------------------------------------------- */

/* The first attributes of an object, inline: most objects have a handful, and a dict
 * per object (~180 bytes) was the largest part of its shadow.  Slots fill in order and
 * never empty; a name is in one place only (the overflow dict takes names only once the
 * slots are full). */
#define INLINE_ATTRS 4
typedef struct {
    PyObject *name[INLINE_ATTRS];
    PyObject *cell[INLINE_ATTRS];
} InlineAttrs;

typedef struct {
    PyObject_HEAD
    PyObject *attrs; /* the attributes beyond the inline ones (dict), or NULL */
    PyObject *items, *whole, *audit, *ref, *strong, *keys;
    InlineAttrs *inl;
} Shadow;

static PyTypeObject Shadow_Type;

static void Shadow_dealloc(Shadow *self) {
    if (self->inl != NULL) {
        for (int i = 0; i < INLINE_ATTRS; i++) {
            Py_XDECREF(self->inl->name[i]);
            Py_XDECREF(self->inl->cell[i]);
        }
        PyMem_RawFree(self->inl);
    }
    Py_XDECREF(self->attrs);
    Py_XDECREF(self->items);
    Py_XDECREF(self->whole);
    Py_XDECREF(self->audit);
    Py_XDECREF(self->ref);
    Py_XDECREF(self->strong);
    Py_XDECREF(self->keys);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* Python's view of the attribute cells: a fresh dict (reports and tests read it; the
 * engine's own writes go through attr_cell_for).  Setting it sets the overflow dict. */
static PyObject *Shadow_get_attrs(Shadow *self, void *Py_UNUSED(c)) {
    PyObject *names[INLINE_ATTRS], *cells[INLINE_ATTRS], *overflow;
    int n = 0;
#ifdef Py_GIL_DISABLED
    Py_BEGIN_CRITICAL_SECTION(self);
#endif
    for (; self->inl != NULL && n < INLINE_ATTRS && self->inl->name[n] != NULL; n++) {
        names[n] = Py_NewRef(self->inl->name[n]);
        cells[n] = Py_NewRef(self->inl->cell[n]);
    }
    overflow = Py_XNewRef(self->attrs);
#ifdef Py_GIL_DISABLED
    Py_END_CRITICAL_SECTION();
#endif
    PyObject *out = NULL;
    if (n == 0 && (overflow == NULL || overflow == Py_None)) {
        out = Py_NewRef(Py_None);
    } else if ((out = PyDict_New()) != NULL) {
        for (int i = 0; i < n; i++)
            if (PyDict_SetItem(out, names[i], cells[i]) < 0) Py_CLEAR(out);
        if (out != NULL && overflow != NULL && overflow != Py_None && PyDict_Update(out, overflow) < 0)
            Py_CLEAR(out);
    }
    for (int i = 0; i < n; i++) {
        Py_DECREF(names[i]);
        Py_DECREF(cells[i]);
    }
    Py_XDECREF(overflow);
    return out;
}

static int Shadow_set_attrs(Shadow *self, PyObject *value, void *Py_UNUSED(c)) {
    if (value != NULL && value != Py_None && !PyDict_Check(value)) {
        PyErr_SetString(PyExc_TypeError, "attrs must be a dict or None");
        return -1;
    }
    Py_XSETREF(self->attrs, Py_XNewRef(value));
    return 0;
}

static PyGetSetDef Shadow_getset[] = {
    {"attrs", (getter)Shadow_get_attrs, (setter)Shadow_set_attrs,
     "Attribute name -> Cell (a snapshot).", NULL},
    {NULL}};

static PyMemberDef Shadow_members[] = {
    {"items", T_OBJECT, offsetof(Shadow, items), 0, NULL},
    {"whole", T_OBJECT, offsetof(Shadow, whole), 0, NULL},
    {"audit", T_OBJECT, offsetof(Shadow, audit), 0, NULL},
    {"ref", T_OBJECT, offsetof(Shadow, ref), 0, NULL},
    {"strong", T_OBJECT, offsetof(Shadow, strong), 0, NULL},
    {"keys", T_OBJECT, offsetof(Shadow, keys), 0, NULL},
    {NULL}};

static PyTypeObject Shadow_Type = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "racecheck.engine._native.Shadow",
    .tp_basicsize = sizeof(Shadow),
    .tp_dealloc = (destructor)Shadow_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Every cell of one user object (see shadow.ObjShadow), C fields.",
    .tp_members = Shadow_members,
    .tp_getset = Shadow_getset,
    .tp_new = PyType_GenericNew,
};

/* A field of `owner` set once (None -> container) as a new reference, NULL when absent.
 * Free-threaded builds read it under the owner's critical section, like the member
 * descriptor that writes it. */
static inline PyObject *field_ref(PyObject *owner, PyObject **slot) {
    PyObject *v;
#ifdef Py_GIL_DISABLED
    Py_BEGIN_CRITICAL_SECTION(owner);
    v = *slot;
    if (v == Py_None) v = NULL;
    Py_XINCREF(v);
    Py_END_CRITICAL_SECTION();
#else
    (void)owner;
    v = *slot;
    if (v == Py_None) v = NULL;
    Py_XINCREF(v);
#endif
    return v;
}

#include "_native_shadowmap.c"
#include "_native_stacks.c"

/* ---- Core: the hot path ----------------------------------------------------------- */

typedef struct {
    PyObject_HEAD
    PyObject *tls, *adopt, *objs, *slow;
    uint64_t serial;
    /* The C slow path (Core.configure_slow); when unset every miss goes to `slow`. */
    StackTable *stacks;
    int depth;
    PyObject *metas, *get_or_create, *report;
    PyObject *token_class; /* clock.Token, for Core.publish/consume (None: unset) */
} Core;

static PyTypeObject Core_Type;
static uint64_t next_serial = 1;

static PyObject *str_ts, *ops[3], *op_mutate, *op_iterate, *ns_objs[3], *cls_objs[3];

/* The calling thread's state id (the public struct field: one call fewer per access). */
static inline uint64_t tstate_id(void) { return PyThreadState_Get()->id; }

static void cache_set(uint64_t serial, TState *ts) {
    cache_ts = ts;
    cache_serial = ts != NULL ? serial : 0;
    cache_tsid = ts != NULL ? tstate_id() : 0;
}

/* New reference to the calling thread's TState, adopting the thread if needed. */
static TState *current(Core *core) {
    uint64_t tsid = tstate_id();
    if (cache_serial == core->serial && cache_tsid == tsid && cache_ts != NULL) {
        Py_INCREF(cache_ts);
        return cache_ts;
    }
    PyObject *ts = PyObject_GetAttr(core->tls, str_ts);
    if (ts == NULL) {
        if (!PyErr_ExceptionMatches(PyExc_AttributeError)) return NULL;
        PyErr_Clear();
        ts = PyObject_CallNoArgs(core->adopt);
        if (ts == NULL) return NULL;
    }
    if (!PyObject_TypeCheck(ts, &TState_Type)) {
        Py_DECREF(ts);
        PyErr_SetString(PyExc_TypeError, "native core: thread state is not a TState");
        return NULL;
    }
    cache_set(core->serial, (TState *)ts);
    return (TState *)ts;
}

static PyObject *Core_set_current(Core *self, PyObject *ts) {
    if (ts == Py_None) {
        cache_set(0, NULL);
        Py_RETURN_NONE;
    }
    if (!PyObject_TypeCheck(ts, &TState_Type)) {
        PyErr_SetString(PyExc_TypeError, "expected a TState or None");
        return NULL;
    }
    cache_set(self->serial, (TState *)ts);
    Py_RETURN_NONE;
}

/* New reference to obj's Shadow, NULL if none (or error). */
static Shadow *shadow_of(Core *core, PyObject *obj) {
    PyObject *sh;
    if (Py_IS_TYPE(core->objs, &ShadowMap_Type)) {
        sh = map_get((ShadowMap *)core->objs, obj);
        if (sh == NULL) return NULL;
    } else {
        PyObject *key = PyLong_FromVoidPtr(obj);
        if (key == NULL) return NULL;
        int found = dict_getref(core->objs, key, &sh);
        Py_DECREF(key);
        if (found <= 0) return NULL;
    }
    if (!PyObject_TypeCheck(sh, &Shadow_Type)) {
        Py_DECREF(sh);
        return NULL;
    }
    return (Shadow *)sh;
}

/* Cell of `key` in the dict field, new reference or NULL. */
static Cell *cell_in(PyObject *owner, PyObject **field, PyObject *key) {
    PyObject *d = field_ref(owner, field);
    if (d == NULL) return NULL;
    PyObject *cell = NULL;
    int found = PyDict_CheckExact(d) ? dict_getref(d, key, &cell) : 0;
    Py_DECREF(d);
    if (found <= 0) {
        PyErr_Clear();
        return NULL;
    }
    if (!PyObject_TypeCheck(cell, &Cell_Type)) {
        Py_DECREF(cell);
        return NULL;
    }
    return (Cell *)cell;
}

/* Inside the shadow's section: the inline slot holding `name`, or -1. */
static int inline_find(InlineAttrs *in, PyObject *name) {
    if (in == NULL) return -1;
    for (int i = 0; i < INLINE_ATTRS && in->name[i] != NULL; i++)
        if (in->name[i] == name) return i;
    for (int i = 0; i < INLINE_ATTRS && in->name[i] != NULL; i++)
        if (PyUnicode_CheckExact(in->name[i]) && PyUnicode_Compare(in->name[i], name) == 0)
            return i; /* equal but not the same str object (exact strs: cannot fail) */
    return -1;
}

/* The cell of attribute `name` (an exact str), new reference or NULL (no error). */
static Cell *attr_cell_in(Shadow *sh, PyObject *name) {
    Cell *cell = NULL;
#ifdef Py_GIL_DISABLED
    Py_BEGIN_CRITICAL_SECTION(sh);
#endif
    int i = inline_find(sh->inl, name);
    if (i >= 0) cell = (Cell *)Py_NewRef(sh->inl->cell[i]);
#ifdef Py_GIL_DISABLED
    Py_END_CRITICAL_SECTION();
#endif
    if (cell != NULL) return cell;
    return cell_in((PyObject *)sh, &sh->attrs, name);
}

static PyObject *shadow_dict(Shadow *sh, PyObject **slot);

/* The cell of attribute `name`, created if absent: in a free inline slot while there is
 * one, else in the overflow dict.  New reference, NULL with an error set. */
static PyObject *attr_cell_for(Shadow *sh, PyObject *name) {
    Cell *found = attr_cell_in(sh, name);
    if (found != NULL) return (PyObject *)found;
    PyObject *fresh = Cell_new(&Cell_Type, NULL, NULL);
    if (fresh == NULL) return NULL;
    InlineAttrs *spare = NULL;
    if (sh->inl == NULL && (spare = PyMem_RawCalloc(1, sizeof(InlineAttrs))) == NULL) {
        Py_DECREF(fresh);
        return PyErr_NoMemory();
    }
    PyObject *cell = NULL;
    int full = 0;
#ifdef Py_GIL_DISABLED
    Py_BEGIN_CRITICAL_SECTION(sh);
#endif
    if (sh->inl == NULL) {
        sh->inl = spare;
        spare = NULL;
    }
    InlineAttrs *in = sh->inl;
    int i = inline_find(in, name);
    if (i >= 0) {
        cell = Py_NewRef(in->cell[i]);
    } else {
        int free_slot = -1;
        for (int k = 0; k < INLINE_ATTRS; k++)
            if (in->name[k] == NULL) {
                free_slot = k;
                break;
            }
        if (free_slot >= 0) {
            in->cell[free_slot] = Py_NewRef(fresh);
            in->name[free_slot] = Py_NewRef(name);
            cell = Py_NewRef(fresh);
        } else {
            full = 1;
        }
    }
#ifdef Py_GIL_DISABLED
    Py_END_CRITICAL_SECTION();
#endif
    PyMem_RawFree(spare);
    if (full) { /* the slots never empty: the overflow dict is the only other place */
        PyObject *d = shadow_dict(sh, &sh->attrs);
        if (d != NULL) {
            cell = dict_setdefault_ref(d, name, fresh);
            Py_DECREF(d);
        }
    }
    Py_DECREF(fresh);
    return cell;
}

/* Store `fresh` in a Shadow field that is still unset (NULL or None), atomically; the
 * field's value, new reference (ours, or one another thread stored first). */
static PyObject *field_set_once(Shadow *sh, PyObject **slot, PyObject *fresh) {
    PyObject *out;
#ifdef Py_GIL_DISABLED
    Py_BEGIN_CRITICAL_SECTION(sh);
#endif
    if (*slot == NULL || *slot == Py_None) Py_XSETREF(*slot, Py_NewRef(fresh));
    out = Py_NewRef(*slot);
#ifdef Py_GIL_DISABLED
    Py_END_CRITICAL_SECTION();
#endif
    return out;
}

/* A dict field of a Shadow (attrs/items), created if absent; new reference. */
static PyObject *shadow_dict(Shadow *sh, PyObject **slot) {
    PyObject *d = field_ref((PyObject *)sh, slot);
    if (d != NULL) return d;
    PyObject *fresh = PyDict_New();
    if (fresh == NULL) return NULL;
    d = field_set_once(sh, slot, fresh);
    Py_DECREF(fresh);
    return d;
}

/* cell_for(shadow, ns, key): the cell of a location, created if absent, atomically (a
 * new Cell is built first, then stored with one setdefault: a collection triggered by
 * the allocation cannot interleave with the store).  For attributes, items whose key is
 * an exact str or int, the whole object (ns 2) and primitive audits (ns 3); other item
 * keys need the reference's identity keys (detector._cell_locked). */
static PyObject *py_cell_for(PyObject *mod, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 3 || !PyObject_TypeCheck(args[0], &Shadow_Type)) {
        PyErr_SetString(PyExc_TypeError, "cell_for(shadow, ns, key)");
        return NULL;
    }
    Shadow *sh = (Shadow *)args[0];
    long ns = PyLong_AsLong(args[1]);
    PyObject *key = args[2];
    if (ns == -1 && PyErr_Occurred()) return NULL;
    if (ns == NS_ATTR || ns == NS_ITEM) {
        if (ns == NS_ATTR ? !PyUnicode_CheckExact(key)
                          : !(PyUnicode_CheckExact(key) || PyLong_CheckExact(key))) {
            PyErr_SetString(PyExc_TypeError, "cell_for: attribute names are str, item keys str/int");
            return NULL;
        }
        if (ns == NS_ATTR) return attr_cell_for(sh, key);
        PyObject *d = shadow_dict(sh, &sh->items);
        if (d == NULL) return NULL;
        PyObject *fresh = Cell_new(&Cell_Type, NULL, NULL);
        if (fresh == NULL) {
            Py_DECREF(d);
            return NULL;
        }
        PyObject *cell = dict_setdefault_ref(d, key, fresh);
        Py_DECREF(fresh);
        Py_DECREF(d);
        return cell;
    }
    if (ns != NS_WHOLE && ns != 3) {
        PyErr_SetString(PyExc_ValueError, "cell_for: ns is 0..3");
        return NULL;
    }
    PyObject **slot = ns == NS_WHOLE ? &sh->whole : &sh->audit;
    PyObject *cell = field_ref((PyObject *)sh, slot);
    if (cell != NULL) return cell;
    PyObject *fresh = Cell_new(&Cell_Type, NULL, NULL);
    if (fresh == NULL) return NULL;
    cell = field_set_once(sh, slot, fresh);
    Py_DECREF(fresh);
    return cell;
}

/* items_dict(shadow): the shadow's items dict, created atomically if absent (so the
 * reference's locked path and the C path agree on one dict). */
static PyObject *py_items_dict(PyObject *mod, PyObject *arg) {
    if (!PyObject_TypeCheck(arg, &Shadow_Type)) {
        PyErr_SetString(PyExc_TypeError, "items_dict(shadow)");
        return NULL;
    }
    return shadow_dict((Shadow *)arg, &((Shadow *)arg)->items);
}

static PyObject *go_slow(Core *core, TState *ts, PyObject *obj, int ns, PyObject *key, int cls,
                         PyObject *op, PyObject *frame) {
    if (frame == NULL) { /* called from a C hook: the user's frame is the current one */
        frame = (PyObject *)PyEval_GetFrame();
        if (frame == NULL) frame = Py_None;
    }
    PyObject *args[7] = {(PyObject *)ts, obj, ns_objs[ns], key ? key : Py_None, cls_objs[cls],
                         op, frame};
    PyObject *res = PyObject_Vectorcall(core->slow, args, 7, NULL);
    Py_DECREF(ts);
    return res;
}

#define METAS_MAX (1 << 16) /* as detector._METAS_MAX */

/* The existing cell of a location (attribute: exact str name; item: str/int key; whole
 * object), new reference or NULL (no error). */
static Cell *cell_of(Shadow *sh, int ns, PyObject *key) {
    if (ns == NS_ATTR) return attr_cell_in(sh, key);
    if (ns == NS_ITEM) return cell_in((PyObject *)sh, &sh->items, key);
    Cell *cell = (Cell *)field_ref((PyObject *)sh, &sh->whole);
    if (cell != NULL && !PyObject_TypeCheck(cell, &Cell_Type)) Py_CLEAR(cell);
    return cell;
}

/* The detector's _slow in C, for attributes, str/int item keys and whole objects:
 * shadow (created through the ShadowTable if new), cell, same-epoch re-check, stack
 * id, interned meta, FastTrack's rules; a race is handed to the detector's Python
 * _report.  Consumes the references to ts, sh and cell (either may be NULL). */
static PyObject *c_slow(Core *core, TState *ts, PyObject *obj, int ns, PyObject *key, int cls,
                        PyObject *op, PyObject *frame, Shadow *sh, Cell *cell) {
    PyObject *races = NULL, *meta = NULL, *res = NULL;
    if (ts->busy) { /* re-entered from inside the engine (GC, __del__): as _slow */
        res = Py_NewRef(Py_None);
        goto out;
    }
    ts->busy = 1;
    if (sh == NULL) {
        PyObject *made = PyObject_CallOneArg(core->get_or_create, obj);
        if (made == NULL) goto fail;
        if (!PyObject_TypeCheck(made, &Shadow_Type)) {
            Py_DECREF(made);
            PyErr_SetString(PyExc_TypeError, "native core: shadow is not a Shadow");
            goto fail;
        }
        sh = (Shadow *)made;
        cell = cell_of(sh, ns, key);
        if (cell != NULL && same_epoch(cell, cls, ts)) {
            ts->busy = 0;
            res = Py_NewRef(Py_None);
            goto out;
        }
    }
    if (frame == NULL) {
        frame = (PyObject *)PyEval_GetFrame();
        if (frame == NULL) frame = Py_None;
    }
    int64_t sid = stack_intern(core->stacks, frame, core->depth);
    if (sid < 0) goto fail;
    PyObject *sid_obj = PyLong_FromLongLong(sid);
    if (sid_obj == NULL) goto fail;
    PyObject *fresh = PyTuple_Pack(3, op, sid_obj, ts->rec ? ts->rec : Py_None);
    Py_DECREF(sid_obj);
    if (fresh == NULL) goto fail;
    meta = dict_setdefault_ref(core->metas, fresh, fresh);
    Py_DECREF(fresh);
    if (meta == NULL) goto fail;
    if (PyDict_GET_SIZE(core->metas) > METAS_MAX) PyDict_Clear(core->metas);
    if (cell == NULL) {
        PyObject *args[3] = {(PyObject *)sh, ns_objs[ns], key ? key : Py_None};
        cell = (Cell *)py_cell_for(NULL, args, 3);
        if (cell == NULL) goto fail;
    }
    races = apply_rules(cell, cls, ts, meta);
    ts->busy = 0;
    if (races == NULL) goto out; /* error */
    if (races == Py_None) {
        res = races;
        goto out;
    }
    {
        PyObject *argv[7] = {(PyObject *)ts, obj, ns_objs[ns], key ? key : Py_None, op, frame,
                             races};
        res = PyObject_Vectorcall(core->report, argv, 7, NULL);
        Py_DECREF(races);
    }
    goto out;
fail:
    ts->busy = 0;
out:
    Py_XDECREF(meta);
    Py_XDECREF(cell);
    Py_XDECREF(sh);
    Py_DECREF(ts);
    return res;
}

/* One access: ns/key locate the cell, cls is its class, op its name; frame is the
 * user's frame, or NULL for "the current Python frame" (fetched only if needed). */
static PyObject *do_access(Core *core, PyObject *obj, int ns, PyObject *key, int cls, PyObject *op,
                        PyObject *frame) {
    TState *ts = current(core);
    if (ts == NULL) return NULL;
    if (ns == NS_ITEM && !(PyLong_CheckExact(key) || PyUnicode_CheckExact(key)))
        return go_slow(core, ts, obj, ns, key, cls, op, frame);
    if (ns == NS_ATTR && !PyUnicode_CheckExact(key))
        return go_slow(core, ts, obj, ns, key, cls, op, frame);
    Shadow *sh = shadow_of(core, obj);
    Cell *cell = NULL;
    if (sh != NULL) {
        cell = cell_of(sh, ns, key);
        if (cell != NULL && same_epoch(cell, cls, ts)) {
            Py_DECREF(cell);
            Py_DECREF(sh);
            Py_DECREF(ts);
            Py_RETURN_NONE;
        }
    } else if (PyErr_Occurred()) {
        Py_DECREF(ts);
        return NULL;
    }
    if (core->stacks != NULL) return c_slow(core, ts, obj, ns, key, cls, op, frame, sh, cell);
    Py_XDECREF(cell);
    Py_XDECREF(sh);
    return go_slow(core, ts, obj, ns, key, cls, op, frame);
}

#define CHECK_NARGS(n)                                                          \
    if (nargs != (n)) {                                                         \
        PyErr_Format(PyExc_TypeError, "expected %d arguments, got %zd", (n), nargs); \
        return NULL;                                                            \
    }

static PyObject *Core_read_attr(Core *s, PyObject *const *a, Py_ssize_t nargs) {
    CHECK_NARGS(3);
    return do_access(s, a[0], NS_ATTR, a[1], READ, ops[READ], a[2]);
}
static PyObject *Core_write_attr(Core *s, PyObject *const *a, Py_ssize_t nargs) {
    CHECK_NARGS(3);
    return do_access(s, a[0], NS_ATTR, a[1], WRITE, ops[WRITE], a[2]);
}
static PyObject *Core_read_item(Core *s, PyObject *const *a, Py_ssize_t nargs) {
    CHECK_NARGS(3);
    return do_access(s, a[0], NS_ITEM, a[1], READ, ops[READ], a[2]);
}
static PyObject *Core_write_item(Core *s, PyObject *const *a, Py_ssize_t nargs) {
    CHECK_NARGS(3);
    return do_access(s, a[0], NS_ITEM, a[1], WRITE, ops[WRITE], a[2]);
}
static PyObject *Core_mutate(Core *s, PyObject *const *a, Py_ssize_t nargs) {
    CHECK_NARGS(2);
    return do_access(s, a[0], NS_WHOLE, NULL, MUTATE, op_mutate, a[1]);
}
static PyObject *Core_iterate(Core *s, PyObject *const *a, Py_ssize_t nargs) {
    CHECK_NARGS(2);
    return do_access(s, a[0], NS_WHOLE, NULL, READ, op_iterate, a[1]);
}

static PyObject *Core_configure_slow(Core *self, PyObject *const *a, Py_ssize_t nargs) {
    if (nargs != 5 || !Py_IS_TYPE(a[0], &StackTable_Type) || !PyDict_CheckExact(a[2])) {
        PyErr_SetString(PyExc_TypeError,
                        "configure_slow(stacks: StackTable, depth, metas: dict, get_or_create, "
                        "report)");
        return NULL;
    }
    long depth = PyLong_AsLong(a[1]);
    if (depth == -1 && PyErr_Occurred()) return NULL;
    Py_XSETREF(self->stacks, (StackTable *)Py_NewRef(a[0]));
    self->depth = (int)(depth < 1 ? 1 : depth > STACK_LIMIT_MAX ? STACK_LIMIT_MAX : depth);
    Py_XSETREF(self->metas, Py_NewRef(a[2]));
    Py_XSETREF(self->get_or_create, Py_NewRef(a[3]));
    Py_XSETREF(self->report, Py_NewRef(a[4]));
    Py_RETURN_NONE;
}

/* The clock a Token carries (a Token is a tuple subclass: itself), as a new reference,
 * NULL if `token` is no Token or an empty one (no error set). */
static PyObject *token_clock(Core *core, PyObject *token) {
    if (core->token_class == NULL || !PyObject_TypeCheck(token, (PyTypeObject *)core->token_class))
        return NULL;
    if (!PyTuple_Check(token) || PyTuple_GET_SIZE(token) == 0) return NULL;
    return Py_NewRef(token);
}

/* HappensBefore.consume: join the token's clock into the calling thread's. */
static PyObject *Core_consume(Core *self, PyObject *token) {
    PyObject *vc = token_clock(self, token);
    if (vc == NULL) {
        if (PyErr_Occurred()) return NULL;
        Py_RETURN_NONE;
    }
    TState *ts = current(self);
    int rc = ts == NULL ? -1 : vc_join_seq(ts->vc, vc);
    Py_XDECREF(ts);
    Py_DECREF(vc);
    if (rc < 0) return NULL;
    Py_RETURN_NONE;
}

/* HappensBefore.publish: a Token of the calling thread's clock joined with `into`'s,
 * then the thread's own entry advances. */
static PyObject *Core_publish(Core *self, PyObject *into) {
    if (self->token_class == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "Core.publish: no token class configured");
        return NULL;
    }
    PyObject *vc = token_clock(self, into);
    if (vc == NULL && PyErr_Occurred()) return NULL;
    TState *ts = current(self);
    if (ts == NULL) {
        Py_XDECREF(vc);
        return NULL;
    }
    PyObject *snap = TState_snapshot(ts, vc != NULL ? vc : Py_None);
    Py_XDECREF(vc);
    PyObject *token = NULL;
    if (snap != NULL) {
        token = PyObject_CallOneArg(self->token_class, snap);
        Py_DECREF(snap);
    }
    if (token != NULL) {
        ts->vc->v[ts->slot] += 1;
        ts_refresh_epoch(ts);
    }
    Py_DECREF(ts);
    return token;
}

static PyObject *Core_set_token_class(Core *self, PyObject *cls) {
    if (!PyType_Check(cls)) {
        PyErr_SetString(PyExc_TypeError, "set_token_class(cls): a class");
        return NULL;
    }
    Py_XSETREF(self->token_class, Py_NewRef(cls));
    Py_RETURN_NONE;
}

static int Core_init(Core *self, PyObject *args, PyObject *kw) {
    PyObject *tls, *adopt, *objs, *slow;
    if (!PyArg_ParseTuple(args, "OOOO:Core", &tls, &adopt, &objs, &slow)) return -1;
    if (!PyDict_Check(objs) && !Py_IS_TYPE(objs, &ShadowMap_Type)) {
        PyErr_SetString(PyExc_TypeError, "Core: objs must be a dict or a ShadowMap");
        return -1;
    }
    Py_XSETREF(self->tls, Py_NewRef(tls));
    Py_XSETREF(self->adopt, Py_NewRef(adopt));
    Py_XSETREF(self->objs, Py_NewRef(objs));
    Py_XSETREF(self->slow, Py_NewRef(slow));
    self->serial = __atomic_fetch_add(&next_serial, 1, __ATOMIC_RELAXED);
    return 0;
}

static int Core_traverse(Core *self, visitproc visit, void *arg) {
    Py_VISIT(self->tls);
    Py_VISIT(self->adopt);
    Py_VISIT(self->objs);
    Py_VISIT(self->slow);
    Py_VISIT(self->stacks);
    Py_VISIT(self->metas);
    Py_VISIT(self->get_or_create);
    Py_VISIT(self->report);
    Py_VISIT(self->token_class);
    return 0;
}

static int Core_clear(Core *self) {
    Py_CLEAR(self->tls);
    Py_CLEAR(self->adopt);
    Py_CLEAR(self->objs);
    Py_CLEAR(self->slow);
    Py_CLEAR(self->stacks);
    Py_CLEAR(self->metas);
    Py_CLEAR(self->get_or_create);
    Py_CLEAR(self->report);
    Py_CLEAR(self->token_class);
    return 0;
}

static void Core_dealloc(Core *self) {
    PyObject_GC_UnTrack(self);
    Core_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyMethodDef Core_methods[] = {
    {"read_attr", (PyCFunction)(void (*)(void))Core_read_attr, METH_FASTCALL, NULL},
    {"write_attr", (PyCFunction)(void (*)(void))Core_write_attr, METH_FASTCALL, NULL},
    {"read_item", (PyCFunction)(void (*)(void))Core_read_item, METH_FASTCALL, NULL},
    {"write_item", (PyCFunction)(void (*)(void))Core_write_item, METH_FASTCALL, NULL},
    {"mutate", (PyCFunction)(void (*)(void))Core_mutate, METH_FASTCALL, NULL},
    {"iterate", (PyCFunction)(void (*)(void))Core_iterate, METH_FASTCALL, NULL},
    {"configure_slow", (PyCFunction)(void (*)(void))Core_configure_slow, METH_FASTCALL,
     "configure_slow(stacks, depth, metas, get_or_create, report): take misses in C."},
    {"consume", (PyCFunction)Core_consume, METH_O,
     "HappensBefore.consume(token): join its clock into the calling thread's."},
    {"publish", (PyCFunction)Core_publish, METH_O,
     "HappensBefore.publish(into): a Token of our clock joined with into's; then tick."},
    {"set_token_class", (PyCFunction)Core_set_token_class, METH_O, "The Token class."},
    {"set_current", (PyCFunction)Core_set_current, METH_O,
     "Record the calling thread's TState (None: forget it) in the C thread-local cache."},
    {NULL}};

static PyTypeObject Core_Type = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "racecheck.engine._native.Core",
    .tp_basicsize = sizeof(Core),
    .tp_dealloc = (destructor)Core_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "Core(tls, adopt, objs, slow): the six AccessSink hot paths.",
    .tp_traverse = (traverseproc)Core_traverse,
    .tp_clear = (inquiry)Core_clear,
    .tp_methods = Core_methods,
    .tp_init = (initproc)Core_init,
    .tp_new = PyType_GenericNew,
};

#include "_native_hooks.c"

/* ---- module ------------------------------------------------------------------- */

static PyMethodDef module_methods[] = {
    {"apply", (PyCFunction)(void (*)(void))py_apply, METH_FASTCALL,
     "apply(cell, cls, ts, meta) -> list of racing metas or None: FastTrack for one access."},
    {"same_epoch", (PyCFunction)(void (*)(void))py_same_epoch, METH_FASTCALL,
     "same_epoch(cell, cls, ts) -> bool: the access is redundant in this epoch."},
    {"items_dict", (PyCFunction)py_items_dict, METH_O,
     "items_dict(shadow): its items dict, created atomically if absent."},
    {"cell_for", (PyCFunction)(void (*)(void))py_cell_for, METH_FASTCALL,
     "cell_for(shadow, ns, key): the location's Cell, created atomically if absent."},
    {"hooks_install", (PyCFunction)(void (*)(void))py_hooks_install, METH_FASTCALL,
     "hooks_install(sink, core): route the C hooks' accesses to sink (None: stop); "
     "core is sink's _native.Core, called directly, or None."},
    {"hooks_configure", (PyCFunction)(void (*)(void))py_hooks_configure, METH_FASTCALL,
     "hooks_configure(decide, attr_slow, gi, it): the Python reference functions the C "
     "hooks defer to."},
    {NULL}};

static int module_exec(PyObject *m) {
    if (stripes_init() < 0) return -1;
    PyTypeObject *types[] = {&VClock_Type,    &TState_Type, &Cell_Type,      &Shadow_Type,
                             &ShadowMap_Type, &Core_Type,   &StackTable_Type};
    const char *names[] = {"VClock", "TState", "Cell", "Shadow", "ShadowMap", "Core",
                           "StackTable"};
    for (int i = 0; i < 7; i++) {
        if (PyType_Ready(types[i]) < 0) return -1;
        if (PyModule_AddObjectRef(m, names[i], (PyObject *)types[i]) < 0) return -1;
    }
    if (str_ts == NULL) {
        str_ts = PyUnicode_InternFromString("ts");
        ops[READ] = PyUnicode_InternFromString("read");
        ops[WRITE] = PyUnicode_InternFromString("write");
        ops[MUTATE] = op_mutate = PyUnicode_InternFromString("mutate");
        op_iterate = PyUnicode_InternFromString("iterate");
        for (int i = 0; i < 3; i++) {
            ns_objs[i] = PyLong_FromLong(i);
            cls_objs[i] = PyLong_FromLong(i);
        }
        if (str_ts == NULL || ops[READ] == NULL || ops[WRITE] == NULL || op_mutate == NULL ||
            op_iterate == NULL || PyErr_Occurred())
            return -1;
    }
    if (PyModule_AddIntConstant(m, "SHIFT", SHIFT) < 0) return -1;
    if (hooks_module_init(m) < 0) return -1;
    return 0;
}

static PyModuleDef_Slot module_slots[] = {
    {Py_mod_exec, module_exec},
#ifdef Py_mod_gil
    {Py_mod_gil, Py_MOD_GIL_NOT_USED},
#endif
    {0, NULL}};

static struct PyModuleDef native_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "racecheck.engine._native",
    .m_doc = "racecheck's native core: the detector's per-access hot path.",
    .m_size = 0,
    .m_methods = module_methods,
    .m_slots = module_slots,
};

PyMODINIT_FUNC PyInit__native(void) { return PyModuleDef_Init(&native_module); }
