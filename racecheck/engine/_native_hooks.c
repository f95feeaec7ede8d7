/* racecheck's native hooks: the functions rewritten user code calls at every access.
 *
 * Included by _native.c (one translation unit, so the hooks call the Core's access
 * function directly).  instrument/hooks.py is the reference: its pure-Python hooks
 * (_PyHookMethods) do exactly what these do, and RACECHECK_CORE=python selects them.
 * What the C versions change is cost, not behaviour:
 *
 *   - no Python frame per access: the hook is a C method called from the user's frame,
 *     so the user's frame is PyEval_GetFrame() and it is fetched only when something
 *     needs it (the slow path records the stack; a generic sink takes a frame argument);
 *   - when the installed sink is the native Core, an access goes straight to do_access()
 *     (thread state from a C thread-local, shadow lookup, same-epoch test) with no
 *     Python call at all on the common path;
 *   - "is obj.name a memory access?" (and rd2's "does loading it run Python code?") is
 *     answered from a C cache keyed by the type's version tag and the attribute name.
 *     CPython gives a type a new tag whenever the type or one of its bases is modified,
 *     and never reuses tags, so a (tag, name) hit is the decision for this exact state of
 *     the class.  A miss asks the Python decision function (hooks._decide), whose answer
 *     is stored.  Types without a valid tag are never cached (the Python tables answer).
 *     The cache is a seqlock-per-entry table: readers never lock; writers (rare: once per
 *     (class state, name)) take one mutex on free-threaded builds, none under the GIL.
 *
 * Anything these hooks do not handle natively (class, module and __getattr__ kinds,
 * containers other than exact dict/list/set, slices, odd keys) is passed to the
 * Python reference implementation, so there is one definition of what is an access.
 */

enum { OP_READ = 0, OP_WRITE = 1, OP_DEL = 2, OP_PURE = 3 }; /* OP_PURE: see hooks._decide_pure */
#define KIND_UNKNOWN 0xFF
#define KIND_SKIP 0
#define KIND_ACCESS 1

static PyObject *op_codes[4], *kind_objs[8];

/* ---- the decision cache --------------------------------------------------------- */

typedef struct {
    uint32_t seq; /* odd while a writer is inside */
    uint32_t tag;
    PyObject *name; /* strong reference, owned by the entry */
    uint8_t kind[4];
} DEntry;

#define DCACHE_SIZE 8192
static DEntry dcache[DCACHE_SIZE];

/* Writers' lock: a mutex on free-threaded builds; nothing on GIL builds, where a
 * writer's section (plain stores and one incref) cannot lose the GIL. */
#ifdef Py_GIL_DISABLED
static PyMutex dcache_mutex;
#define DCACHE_LOCK() PyMutex_Lock(&dcache_mutex)
#define DCACHE_UNLOCK() PyMutex_Unlock(&dcache_mutex)
#else
#define DCACHE_LOCK() ((void)0)
#define DCACHE_UNLOCK() ((void)0)
#endif

/* The type's version tag, 0 when it has none that can be trusted. */
static inline uint32_t type_tag(PyTypeObject *tp) {
#if PY_VERSION_HEX < 0x030D0000
    /* Before 3.13 a tag is valid only with this flag (a modified type keeps its stale
     * tag and loses the flag); from 3.13 on the flag is unused and a modification sets
     * the tag to 0. */
    if (!PyType_HasFeature(tp, Py_TPFLAGS_VALID_VERSION_TAG)) return 0;
#endif
    return __atomic_load_n(&tp->tp_version_tag, __ATOMIC_ACQUIRE);
}

static inline DEntry *dcache_slot(uint32_t tag, PyObject *name) {
    uintptr_t h = ((uintptr_t)tag * 2654435761u) ^ ((uintptr_t)name >> 4);
    h ^= h >> 13;
    return &dcache[h & (DCACHE_SIZE - 1)];
}

static inline int dcache_get(uint32_t tag, PyObject *name, int op) {
    DEntry *e = dcache_slot(tag, name);
    uint32_t s1 = __atomic_load_n(&e->seq, __ATOMIC_ACQUIRE);
    if (s1 & 1) return KIND_UNKNOWN;
    uint32_t etag = __atomic_load_n(&e->tag, __ATOMIC_RELAXED);
    PyObject *ename = __atomic_load_n(&e->name, __ATOMIC_RELAXED);
    uint8_t kind = __atomic_load_n(&e->kind[op], __ATOMIC_RELAXED);
    __atomic_thread_fence(__ATOMIC_ACQUIRE);
    if (__atomic_load_n(&e->seq, __ATOMIC_RELAXED) != s1) return KIND_UNKNOWN;
    if (etag != tag || ename != name) return KIND_UNKNOWN;
    return kind;
}

static void dcache_put(uint32_t tag, PyObject *name, int op, int kind) {
    DEntry *e = dcache_slot(tag, name);
    PyObject *old = NULL;
    Py_INCREF(name);
    DCACHE_LOCK();
    uint32_t s = e->seq;
    __atomic_store_n(&e->seq, s + 1, __ATOMIC_RELAXED);
    __atomic_thread_fence(__ATOMIC_RELEASE);
    if (e->tag != tag || e->name != name) {
        old = e->name;
        __atomic_store_n(&e->tag, tag, __ATOMIC_RELAXED);
        __atomic_store_n(&e->name, name, __ATOMIC_RELAXED);
        name = NULL; /* the entry owns the new reference */
        for (int i = 0; i < 4; i++) __atomic_store_n(&e->kind[i], KIND_UNKNOWN, __ATOMIC_RELAXED);
    }
    __atomic_store_n(&e->kind[op], (uint8_t)kind, __ATOMIC_RELAXED);
    __atomic_store_n(&e->seq, s + 2, __ATOMIC_RELEASE);
    DCACHE_UNLOCK();
    /* Outside the lock: a str's deallocation runs no Python code, but keep it simple. */
    Py_XDECREF(old);
    Py_XDECREF(name);
}

/* ---- configuration: the Python reference functions, and the installed sink ------- */

/* Set once by hooks.py at import (configure()); never changed afterwards. */
static PyObject *py_decide;     /* _decide(op, tp, name, fresh) -> kind */
static PyObject *py_attr_slow;  /* _attr_slow(op, sink, obj, name, kind, frame) */
static PyObject *py_gi;         /* _PyHookMethods.gi(self, c, key) */
static PyObject *py_it;         /* _PyHookMethods.it(self, c) */
static PyObject *py_gm;         /* _PyHookMethods.gm(self, obj, name) */
static PyObject *py_si;         /* _PyHookMethods.si(self, c) */
static PyObject *py_methods;    /* hooks.CONTAINER_METHODS: name -> M_* flags */
static PyObject *py_deque;      /* collections.deque (handled by the reference gm/si) */

/* The installed sink as a tuple (sink, core-or-None, read_attr, write_attr, read_item,
 * write_item, mutate, iterate); NULL when none.  Readers take a new reference (under the
 * GIL a load plus an incref cannot be interleaved with the swap; free-threaded builds
 * do the two under a mutex). */
static PyObject *hook_state;
enum { ST_SINK, ST_CORE, ST_M0 };
#define ST_SIZE (ST_M0 + 6)

#ifdef Py_GIL_DISABLED
static PyMutex state_mutex;
#endif

static inline PyObject *state_get(void) {
    PyObject *st;
#ifdef Py_GIL_DISABLED
    if (__atomic_load_n(&hook_state, __ATOMIC_ACQUIRE) == NULL) return NULL;
    PyMutex_Lock(&state_mutex);
    st = hook_state;
    Py_XINCREF(st);
    PyMutex_Unlock(&state_mutex);
#else
    st = hook_state;
    Py_XINCREF(st);
#endif
    return st;
}

static void state_set(PyObject *st) {
    PyObject *old;
    Py_XINCREF(st);
#ifdef Py_GIL_DISABLED
    PyMutex_Lock(&state_mutex);
    old = hook_state;
    __atomic_store_n(&hook_state, st, __ATOMIC_RELEASE);
    PyMutex_Unlock(&state_mutex);
#else
    old = hook_state;
    hook_state = st;
#endif
    Py_XDECREF(old);
}

static PyObject *str_sink_methods[6];

static PyObject *py_hooks_install(PyObject *mod, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "hooks_install(sink, core)");
        return NULL;
    }
    PyObject *sink = args[0], *core = args[1];
    if (sink == Py_None) {
        state_set(NULL);
        Py_RETURN_NONE;
    }
    if (core != Py_None && !PyObject_TypeCheck(core, &Core_Type)) {
        PyErr_SetString(PyExc_TypeError, "core must be a _native.Core or None");
        return NULL;
    }
    PyObject *st = PyTuple_New(ST_SIZE);
    if (st == NULL) return NULL;
    PyTuple_SET_ITEM(st, ST_SINK, Py_NewRef(sink));
    PyTuple_SET_ITEM(st, ST_CORE, Py_NewRef(core));
    for (int i = 0; i < 6; i++) {
        PyObject *m = PyObject_GetAttr(sink, str_sink_methods[i]);
        if (m == NULL) {
            Py_DECREF(st);
            return NULL;
        }
        PyTuple_SET_ITEM(st, ST_M0 + i, m);
    }
    state_set(st);
    Py_DECREF(st);
    Py_RETURN_NONE;
}

static PyObject *py_hooks_configure(PyObject *mod, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 8 || !PyDict_Check(args[6]) || !PyType_Check(args[7])) {
        PyErr_SetString(PyExc_TypeError,
                        "hooks_configure(decide, attr_slow, gi, it, gm, si, methods, deque)");
        return NULL;
    }
    Py_XSETREF(py_decide, Py_NewRef(args[0]));
    Py_XSETREF(py_attr_slow, Py_NewRef(args[1]));
    Py_XSETREF(py_gi, Py_NewRef(args[2]));
    Py_XSETREF(py_it, Py_NewRef(args[3]));
    Py_XSETREF(py_gm, Py_NewRef(args[4]));
    Py_XSETREF(py_si, Py_NewRef(args[5]));
    Py_XSETREF(py_methods, Py_NewRef(args[6]));
    Py_XSETREF(py_deque, Py_NewRef(args[7]));
    Py_RETURN_NONE;
}

/* ---- recording ---------------------------------------------------------------- */

static inline PyObject *user_frame(void) {
    PyObject *f = (PyObject *)PyEval_GetFrame();
    return f != NULL ? f : Py_None;
}

/* Send one access to the sink: the Core directly, any other sink through its method.
 * `m` indexes the sink methods (read_attr .. iterate); 0 on success, -1 on error. */
static int sink_call(PyObject *st, int m, PyObject *obj, PyObject *key) {
    static const int ns_of[6] = {NS_ATTR, NS_ATTR, NS_ITEM, NS_ITEM, NS_WHOLE, NS_WHOLE};
    static const int cls_of[6] = {READ, WRITE, READ, WRITE, MUTATE, READ};
    PyObject *core = PyTuple_GET_ITEM(st, ST_CORE);
    PyObject *res;
    if (core != Py_None) {
        PyObject *op = m == 4 ? op_mutate : m == 5 ? op_iterate : ops[cls_of[m]];
        res = do_access((Core *)core, obj, ns_of[m], key, cls_of[m], op, NULL);
    } else {
        PyObject *argv[3] = {obj, key, user_frame()};
        if (key == NULL) {
            argv[1] = argv[2];
            res = PyObject_Vectorcall(PyTuple_GET_ITEM(st, ST_M0 + m), argv, 2, NULL);
        } else {
            res = PyObject_Vectorcall(PyTuple_GET_ITEM(st, ST_M0 + m), argv, 3, NULL);
        }
    }
    if (res == NULL) return -1;
    Py_DECREF(res);
    return 0;
}

/* The decision for (type(obj), name, op): cached, else asked of hooks._decide. */
static int decide(PyObject *obj, PyObject *name, int op) {
    PyTypeObject *tp = Py_TYPE(obj);
    uint32_t tag = 0;
    if (PyUnicode_CheckExact(name)) {
        tag = type_tag(tp);
        if (tag == 0) { /* a class just modified gets its new tag at its next lookup */
            (void)_PyType_Lookup(tp, name);
            tag = type_tag(tp);
        }
    }
    if (tag != 0) {
        int kind = dcache_get(tag, name, op);
        if (kind != KIND_UNKNOWN) return kind;
    }
    /* fresh: a miss of a valid tag (decide anew); without a tag the Python tables may
     * answer (a class past CPython's tag budget would otherwise be decided per access). */
    PyObject *args[4] = {op_codes[op], (PyObject *)tp, name, tag != 0 ? Py_True : Py_False};
    PyObject *res = PyObject_Vectorcall(py_decide, args, 4, NULL);
    if (res == NULL) return -1;
    long kind = PyLong_AsLong(res);
    Py_DECREF(res);
    if (kind < 0 || kind > 254) {
        if (!PyErr_Occurred()) PyErr_SetString(PyExc_ValueError, "bad decision kind");
        return -1;
    }
    /* The tag read before deciding: if the class changed meanwhile, the entry is stored
     * under the old tag, which nothing will ask for again. */
    if (tag != 0) dcache_put(tag, name, op, (int)kind);
    return (int)kind;
}

/* Record `obj.name` whose decision is `kind` as a read (op OP_READ) or a write. */
static int record_kind(PyObject *st, PyObject *obj, PyObject *name, int op, int kind) {
    if (kind == KIND_SKIP) return 0;
    if (kind == KIND_ACCESS) return sink_call(st, op == OP_READ ? 0 : 1, obj, name);
    if (kind >= 8) {
        PyErr_SetString(PyExc_ValueError, "bad decision kind");
        return -1;
    }
    PyObject *args[6] = {op_codes[op], PyTuple_GET_ITEM(st, ST_SINK), obj, name,
                         kind_objs[kind], user_frame()};
    PyObject *res = PyObject_Vectorcall(py_attr_slow, args, 6, NULL);
    if (res == NULL) return -1;
    Py_DECREF(res);
    return 0;
}

static int record_attr(PyObject *st, PyObject *obj, PyObject *name, int op) {
    int kind = decide(obj, name, op);
    return kind < 0 ? -1 : record_kind(st, obj, name, op, kind);
}

/* ---- the Hooks type ---------------------------------------------------------- */

typedef struct {
    PyObject_HEAD
    PyObject *module;
    PyObject *weakreflist;
} Hooks;

static PyTypeObject Hooks_Type;

#define HOOK_NARGS(n, fname)                                                        \
    if (nargs != (n)) {                                                             \
        PyErr_Format(PyExc_TypeError, fname "() takes %d arguments (%zd given)", (n), \
                     nargs);                                                        \
        return NULL;                                                                \
    }

/* obj.name (load): record the read, return obj for the native load. */
static PyObject *Hooks_rd(Hooks *self, PyObject *const *a, Py_ssize_t nargs) {
    HOOK_NARGS(2, "rd");
    PyObject *st = state_get();
    if (st != NULL) {
        int rc = record_attr(st, a[0], a[1], OP_READ);
        Py_DECREF(st);
        if (rc < 0) return NULL;
    }
    return Py_NewRef(a[0]);
}

/* obj.name (load) whose identical second load the rewriter elided (p.vx * p.vx): record
 * the read, load it here and return the value; record the second read too unless the
 * load ran no Python code (see ModuleHooks.rd2 in hooks.py, the reference). */
static PyObject *Hooks_rd2(Hooks *self, PyObject *const *a, Py_ssize_t nargs) {
    HOOK_NARGS(2, "rd2");
    PyObject *obj = a[0], *name = a[1];
    PyObject *st = state_get();
    if (st == NULL) return PyObject_GetAttr(obj, name);
    int kind = decide(obj, name, OP_READ);
    int rc = kind < 0 ? -1 : record_kind(st, obj, name, OP_READ, kind);
    Py_DECREF(st);
    if (rc < 0) return NULL;
    PyObject *value = PyObject_GetAttr(obj, name);
    if (value == NULL) return NULL;
    if (kind == KIND_ACCESS) {
        int pure = decide(obj, name, OP_PURE);
        if (pure != 0) {
            if (pure < 0) Py_CLEAR(value);
            return value;
        }
    }
    st = state_get(); /* the second read, as its own rd would have recorded it */
    if (st != NULL) {
        rc = record_attr(st, obj, name, OP_READ);
        Py_DECREF(st);
        if (rc < 0) Py_CLEAR(value);
    }
    return value;
}

/* obj.name = v (target): record the write, return obj for the native store. */
static PyObject *Hooks_sw(Hooks *self, PyObject *const *a, Py_ssize_t nargs) {
    HOOK_NARGS(2, "sw");
    PyObject *st = state_get();
    if (st != NULL) {
        int rc = record_attr(st, a[0], a[1], OP_WRITE);
        Py_DECREF(st);
        if (rc < 0) return NULL;
    }
    return Py_NewRef(a[0]);
}

/* obj.name op= v (target): a read then a write. */
static PyObject *Hooks_aw(Hooks *self, PyObject *const *a, Py_ssize_t nargs) {
    HOOK_NARGS(2, "aw");
    PyObject *st = state_get();
    if (st != NULL) {
        int rc = record_attr(st, a[0], a[1], OP_READ);
        if (rc == 0) rc = record_attr(st, a[0], a[1], OP_WRITE);
        Py_DECREF(st);
        if (rc < 0) return NULL;
    }
    return Py_NewRef(a[0]);
}

/* Globals: the location is (module, name); closure cells: (scope, name). */
static int module_access(Hooks *self, PyObject *name, int m) {
    PyObject *st = state_get();
    if (st == NULL) return 0;
    PyObject *module = self->module;
    int rc = module != NULL ? sink_call(st, m, module, name) : 0;
    Py_DECREF(st);
    return rc;
}

static PyObject *Hooks_rg(Hooks *self, PyObject *const *a, Py_ssize_t nargs) {
    HOOK_NARGS(2, "rg");
    if (module_access(self, a[1], 0) < 0) return NULL;
    return Py_NewRef(a[0]);
}
static PyObject *Hooks_rgn(Hooks *self, PyObject *const *a, Py_ssize_t nargs) {
    HOOK_NARGS(1, "rgn");
    if (module_access(self, a[0], 0) < 0) return NULL;
    Py_RETURN_NONE;
}
static PyObject *Hooks_wg(Hooks *self, PyObject *const *a, Py_ssize_t nargs) {
    HOOK_NARGS(1, "wg");
    if (module_access(self, a[0], 1) < 0) return NULL;
    Py_RETURN_NONE;
}
static PyObject *Hooks_wgv(Hooks *self, PyObject *const *a, Py_ssize_t nargs) {
    HOOK_NARGS(2, "wgv");
    if (module_access(self, a[1], 1) < 0) return NULL;
    return Py_NewRef(a[0]);
}

static int scope_access(PyObject *scope, PyObject *name, int m) {
    PyObject *st = state_get();
    if (st == NULL) return 0;
    int rc = sink_call(st, m, scope, name);
    Py_DECREF(st);
    return rc;
}

static PyObject *Hooks_rc(Hooks *self, PyObject *const *a, Py_ssize_t nargs) {
    HOOK_NARGS(3, "rc");
    if (scope_access(a[1], a[2], 0) < 0) return NULL;
    return Py_NewRef(a[0]);
}
static PyObject *Hooks_rcn(Hooks *self, PyObject *const *a, Py_ssize_t nargs) {
    HOOK_NARGS(2, "rcn");
    if (scope_access(a[0], a[1], 0) < 0) return NULL;
    Py_RETURN_NONE;
}
static PyObject *Hooks_wc(Hooks *self, PyObject *const *a, Py_ssize_t nargs) {
    HOOK_NARGS(2, "wc");
    if (scope_access(a[0], a[1], 1) < 0) return NULL;
    Py_RETURN_NONE;
}
static PyObject *Hooks_wcv(Hooks *self, PyObject *const *a, Py_ssize_t nargs) {
    HOOK_NARGS(3, "wcv");
    if (scope_access(a[1], a[2], 1) < 0) return NULL;
    return Py_NewRef(a[0]);
}

/* c[key] (load).  Exact dicts (any key but None) and exact lists with an exact int key
 * natively; everything else through the reference implementation. */
static PyObject *Hooks_gi(Hooks *self, PyObject *const *a, Py_ssize_t nargs) {
    HOOK_NARGS(2, "gi");
    PyObject *c = a[0], *key = a[1];
    PyObject *st = state_get();
    if (st == NULL) return PyObject_GetItem(c, key);
    int rc = 0;
    if (PyDict_CheckExact(c) && (PyUnicode_CheckExact(key) || PyLong_CheckExact(key))) {
        rc = sink_call(st, 2, c, key);
    } else if (PyList_CheckExact(c) && PyLong_CheckExact(key)) {
        Py_ssize_t orig = PyLong_AsSsize_t(key), i = orig;
        if (i == -1 && PyErr_Occurred()) {
            PyErr_Clear();
        } else {
            Py_ssize_t n = PyList_GET_SIZE(c);
            if (i < 0) i += n;
            if (0 <= i && i < n) {
                if (i == orig) {
                    rc = sink_call(st, 2, c, key);
                } else {
                    PyObject *norm = PyLong_FromSsize_t(i);
                    rc = norm == NULL ? -1 : sink_call(st, 2, c, norm);
                    Py_XDECREF(norm);
                }
            }
        }
    } else {
        Py_DECREF(st);
        PyObject *args[3] = {(PyObject *)self, c, key};
        return PyObject_Vectorcall(py_gi, args, 3, NULL);
    }
    Py_DECREF(st);
    if (rc < 0) return NULL;
    return PyObject_GetItem(c, key);
}

/* An iterable about to be iterated: exact list/dict/set/deque natively. */
static PyObject *Hooks_it(Hooks *self, PyObject *const *a, Py_ssize_t nargs) {
    HOOK_NARGS(1, "it");
    PyObject *c = a[0];
    PyObject *st = state_get();
    if (st == NULL) return Py_NewRef(c);
    int rc = 0;
    if (PyList_CheckExact(c) || PyDict_CheckExact(c) || PySet_CheckExact(c)) {
        rc = sink_call(st, 5, c, NULL);
    } else if (PyTuple_CheckExact(c) || PyUnicode_CheckExact(c) || PyLong_CheckExact(c) ||
               PyRange_Check(c) || PyBytes_CheckExact(c)) {
        rc = 0;
    } else {
        Py_DECREF(st);
        PyObject *args[2] = {(PyObject *)self, c};
        return PyObject_Vectorcall(py_it, args, 2, NULL);
    }
    Py_DECREF(st);
    if (rc < 0) return NULL;
    return Py_NewRef(c);
}

/* ---- container method calls and subscript stores --------------------------------- */

/* hooks.py's M_* flags: the method-call shapes recorded here; the rest go to Python. */
#define M_MUTATE 1
#define M_ITERATE 2
#define M_GET 8

/* What gm returns for lst.append / d.get / d.items ... on an exact dict, list or set:
 * calls the bound method, then records what the call did to the container (mutate,
 * iterate, or read (d, key)), as hooks._MethodRecorder does.  Looks like the bound
 * method to everything else (attributes, ==, hash, repr). */
typedef struct {
    PyObject_HEAD
    PyObject *method, *container;
    int flags;
    vectorcallfunc vectorcall;
} Recorder;

static PyTypeObject Recorder_Type;

static PyObject *Recorder_vectorcall(Recorder *self, PyObject *const *args, size_t nargsf,
                                     PyObject *kwnames) {
    PyObject *result = PyObject_Vectorcall(self->method, args, nargsf, kwnames);
    if (result == NULL) return NULL;
    PyObject *st = state_get();
    if (st == NULL) return result;
    int rc = 0;
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    if (self->flags == M_MUTATE) rc = sink_call(st, 4, self->container, NULL);
    else if (self->flags == M_ITERATE) rc = sink_call(st, 5, self->container, NULL);
    else if (self->flags == M_GET && nargs >= 1) rc = sink_call(st, 2, self->container, args[0]);
    Py_DECREF(st);
    if (rc < 0) Py_CLEAR(result);
    return result;
}

static PyObject *Recorder_getattro(Recorder *self, PyObject *name) {
    return PyObject_GetAttr(self->method, name);
}

static PyObject *Recorder_richcompare(Recorder *self, PyObject *other, int op) {
    if (Py_IS_TYPE(other, &Recorder_Type)) other = ((Recorder *)other)->method;
    return PyObject_RichCompare(self->method, other, op);
}

static Py_hash_t Recorder_hash(Recorder *self) { return PyObject_Hash(self->method); }
static PyObject *Recorder_repr(Recorder *self) { return PyObject_Repr(self->method); }

static int Recorder_traverse(Recorder *self, visitproc visit, void *arg) {
    Py_VISIT(self->method);
    Py_VISIT(self->container);
    return 0;
}

static int Recorder_clear(Recorder *self) {
    Py_CLEAR(self->method);
    Py_CLEAR(self->container);
    return 0;
}

static void Recorder_dealloc(Recorder *self) {
    PyObject_GC_UnTrack(self);
    Recorder_clear(self);
    PyObject_GC_Del(self);
}

static PyTypeObject Recorder_Type = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "racecheck.engine._native.MethodRecorder",
    .tp_basicsize = sizeof(Recorder),
    .tp_dealloc = (destructor)Recorder_dealloc,
    .tp_vectorcall_offset = offsetof(Recorder, vectorcall),
    .tp_call = PyVectorcall_Call,
    .tp_repr = (reprfunc)Recorder_repr,
    .tp_hash = (hashfunc)Recorder_hash,
    .tp_getattro = (getattrofunc)Recorder_getattro,
    .tp_richcompare = (richcmpfunc)Recorder_richcompare,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL,
    .tp_doc = "A built-in container's bound method that records the call (see gm).",
    .tp_traverse = (traverseproc)Recorder_traverse,
    .tp_clear = (inquiry)Recorder_clear,
};

/* True for the containers (and views, and str/bytes .join) whose gm the reference
 * implementation handles: everything but plain objects and exact dict/list/set. */
static int gm_by_reference(PyObject *obj, PyObject *name) {
    if (PyDict_Check(obj) || PyList_Check(obj) || PySet_Check(obj) || PyByteArray_Check(obj))
        return 1;
    if (PyDictKeys_Check(obj) || PyDictValues_Check(obj) || PyDictItems_Check(obj)) return 1;
    if (py_deque != NULL && PyObject_TypeCheck(obj, (PyTypeObject *)py_deque)) return 1;
    if ((PyUnicode_Check(obj) || PyBytes_Check(obj)) && PyUnicode_Check(name) &&
        PyUnicode_CompareWithASCIIString(name, "join") == 0)
        return 1;
    return 0;
}

/* obj.name where name is a container method name (hooks.ModuleHooks.gm). */
static PyObject *Hooks_gm(Hooks *self, PyObject *const *a, Py_ssize_t nargs) {
    HOOK_NARGS(2, "gm");
    PyObject *obj = a[0], *name = a[1];
    PyObject *st = state_get();
    if (st == NULL) return PyObject_GetAttr(obj, name);
    if (PyDict_CheckExact(obj) || PyList_CheckExact(obj) || PySet_CheckExact(obj)) {
        PyObject *f = PyDict_GetItemWithError(py_methods, name); /* borrowed */
        long flags = f != NULL ? PyLong_AsLong(f) : -1;
        if (flags == M_MUTATE || flags == M_ITERATE || flags == M_GET) {
            Py_DECREF(st);
            PyObject *method = PyObject_GetAttr(obj, name);
            if (method == NULL) return NULL;
            Recorder *r = PyObject_GC_New(Recorder, &Recorder_Type);
            if (r == NULL) {
                Py_DECREF(method);
                return NULL;
            }
            r->method = method;
            r->container = Py_NewRef(obj);
            r->flags = (int)flags;
            r->vectorcall = (vectorcallfunc)Recorder_vectorcall;
            PyObject_GC_Track(r);
            return (PyObject *)r;
        }
        if (PyErr_Occurred()) {
            Py_DECREF(st);
            return NULL;
        }
    } else if (!gm_by_reference(obj, name)) {
        PyObject *value = PyObject_GetAttr(obj, name);
        if (value != NULL && record_attr(st, obj, name, OP_READ) < 0) Py_CLEAR(value);
        Py_DECREF(st);
        return value;
    }
    Py_DECREF(st);
    PyObject *args[3] = {(PyObject *)self, obj, name};
    return PyObject_Vectorcall(py_gm, args, 3, NULL);
}

/* What si returns for an exact dict or list: the subscript store/delete/load of a
 * target, recorded as hooks._ItemProxy records it.  Slices and non-int list indices
 * go to a reference _ItemProxy made on demand. */
typedef struct {
    PyObject_HEAD
    PyObject *c;
    PyObject *hooks; /* for the reference fallback */
} ItemProxy;

static PyTypeObject ItemProxy_Type;

static PyObject *proxy_reference(ItemProxy *self) {
    PyObject *args[2] = {self->hooks, self->c};
    return PyObject_Vectorcall(py_si, args, 2, NULL);
}

/* For a list and an exact int key: the index it names now, or -1 (out of range). */
static Py_ssize_t list_index(PyObject *c, PyObject *key) {
    Py_ssize_t i = PyLong_AsSsize_t(key);
    if (i == -1 && PyErr_Occurred()) {
        PyErr_Clear();
        return -1;
    }
    Py_ssize_t n = PyList_GET_SIZE(c);
    if (i < 0) i += n;
    return (0 <= i && i < n) ? i : -1;
}

/* Record item `i` of list c (or key of dict c) with sink method m; mutate too if asked. */
static int record_item(PyObject *c, PyObject *key, Py_ssize_t i, int m, int mutate) {
    PyObject *st = state_get();
    if (st == NULL) return 0;
    int rc;
    if (PyList_CheckExact(c)) {
        PyObject *loc = PyLong_FromSsize_t(i);
        rc = loc == NULL ? -1 : sink_call(st, m, c, loc);
        Py_XDECREF(loc);
    } else {
        rc = sink_call(st, m, c, key);
    }
    if (rc == 0 && mutate) rc = sink_call(st, 4, c, NULL);
    Py_DECREF(st);
    return rc;
}

static int proxy_native_key(ItemProxy *self, PyObject *key) {
    /* None is the reference's "no location" (it records nothing for it). */
    if (PyDict_CheckExact(self->c)) return !PySlice_Check(key) && key != Py_None;
    return PyLong_CheckExact(key);
}

static PyObject *ItemProxy_subscript(ItemProxy *self, PyObject *key) {
    if (!proxy_native_key(self, key)) {
        PyObject *ref = proxy_reference(self);
        if (ref == NULL) return NULL;
        PyObject *v = PyObject_GetItem(ref, key);
        Py_DECREF(ref);
        return v;
    }
    Py_ssize_t i = PyList_CheckExact(self->c) ? list_index(self->c, key) : 0;
    PyObject *value = PyObject_GetItem(self->c, key);
    if (value == NULL) return NULL;
    if (i >= 0 && record_item(self->c, key, i, 2, 0) < 0) Py_CLEAR(value);
    return value;
}

static int ItemProxy_ass_subscript(ItemProxy *self, PyObject *key, PyObject *value) {
    if (!proxy_native_key(self, key)) {
        PyObject *ref = proxy_reference(self);
        if (ref == NULL) return -1;
        int rc = value == NULL ? PyObject_DelItem(ref, key) : PyObject_SetItem(ref, key, value);
        Py_DECREF(ref);
        return rc;
    }
    int is_list = PyList_CheckExact(self->c);
    Py_ssize_t i = 0;
    if (value == NULL) {
        if (is_list) i = list_index(self->c, key); /* the element it deletes */
        if (PyObject_DelItem(self->c, key) < 0) return -1;
    } else {
        if (PyObject_SetItem(self->c, key, value) < 0) return -1;
        if (is_list) i = list_index(self->c, key); /* it succeeded: in range */
    }
    if (i < 0) return 0;
    return record_item(self->c, key, i, 3, 1);
}

static int ItemProxy_traverse(ItemProxy *self, visitproc visit, void *arg) {
    Py_VISIT(self->c);
    Py_VISIT(self->hooks);
    return 0;
}

static int ItemProxy_clear(ItemProxy *self) {
    Py_CLEAR(self->c);
    Py_CLEAR(self->hooks);
    return 0;
}

static void ItemProxy_dealloc(ItemProxy *self) {
    PyObject_GC_UnTrack(self);
    ItemProxy_clear(self);
    PyObject_GC_Del(self);
}

static PyObject *ItemProxy_repr(ItemProxy *self) { return PyObject_Repr(self->c); }

static PyMappingMethods ItemProxy_mapping = {
    .mp_subscript = (binaryfunc)ItemProxy_subscript,
    .mp_ass_subscript = (objobjargproc)ItemProxy_ass_subscript,
};

static PyTypeObject ItemProxy_Type = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "racecheck.engine._native.ItemProxy",
    .tp_basicsize = sizeof(ItemProxy),
    .tp_dealloc = (destructor)ItemProxy_dealloc,
    .tp_repr = (reprfunc)ItemProxy_repr,
    .tp_as_mapping = &ItemProxy_mapping,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "A subscript target on an exact dict or list, recorded (see si).",
    .tp_traverse = (traverseproc)ItemProxy_traverse,
    .tp_clear = (inquiry)ItemProxy_clear,
};

/* Subscript store/del/augmented target (hooks.ModuleHooks.si). */
static PyObject *Hooks_si(Hooks *self, PyObject *const *a, Py_ssize_t nargs) {
    HOOK_NARGS(1, "si");
    PyObject *c = a[0];
    PyObject *st = state_get();
    if (st == NULL) return Py_NewRef(c);
    Py_DECREF(st);
    if (PyDict_CheckExact(c) || PyList_CheckExact(c)) {
        ItemProxy *p = PyObject_GC_New(ItemProxy, &ItemProxy_Type);
        if (p == NULL) return NULL;
        p->c = Py_NewRef(c);
        p->hooks = Py_NewRef((PyObject *)self);
        PyObject_GC_Track(p);
        return (PyObject *)p;
    }
    PyObject *args[2] = {(PyObject *)self, c};
    return PyObject_Vectorcall(py_si, args, 2, NULL);
}

static void Hooks_dealloc(Hooks *self) {
    PyObject_GC_UnTrack(self);
    if (self->weakreflist != NULL) PyObject_ClearWeakRefs((PyObject *)self);
    Py_CLEAR(self->module);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int Hooks_traverse(Hooks *self, visitproc visit, void *arg) {
    Py_VISIT(self->module);
    return 0;
}

static int Hooks_clear(Hooks *self) {
    Py_CLEAR(self->module);
    return 0;
}

#define HOOK_METHOD(name, doc) \
    {#name, (PyCFunction)(void (*)(void))Hooks_##name, METH_FASTCALL, doc}

static PyMethodDef Hooks_methods[] = {
    HOOK_METHOD(rd, "obj.name (load): record the read, return obj."),
    HOOK_METHOD(rd2, "rd2(obj, name): obj.name loaded twice in a row; returns the value."),
    HOOK_METHOD(sw, "obj.name = v (target): record the write, return obj."),
    HOOK_METHOD(aw, "obj.name op= v (target): record a read and a write, return obj."),
    HOOK_METHOD(rg, "rg(value, name): a global read; returns value."),
    HOOK_METHOD(rgn, "rgn(name): the read half of a global's augmented assignment."),
    HOOK_METHOD(wg, "wg(name): a global was just bound or deleted."),
    HOOK_METHOD(wgv, "wgv(value, name): (name := value) on a global; returns value."),
    HOOK_METHOD(rc, "rc(value, scope, name): a closure-cell read; returns value."),
    HOOK_METHOD(rcn, "rcn(scope, name): the read half of a cell's augmented assignment."),
    HOOK_METHOD(wc, "wc(scope, name): a closure cell was just bound or deleted."),
    HOOK_METHOD(wcv, "wcv(value, scope, name): (name := value) on a cell; returns value."),
    HOOK_METHOD(gi, "gi(c, key): c[key] (load), recorded."),
    HOOK_METHOD(it, "it(c): c is about to be iterated; returns c."),
    HOOK_METHOD(gm, "gm(obj, name): obj.name for a container method name, recorded."),
    HOOK_METHOD(si, "si(c): a subscript target; a recording proxy for dicts and lists."),
    {NULL}};

static PyMemberDef Hooks_members[] = {
    {"module", T_OBJECT, offsetof(Hooks, module), 0, "The module whose globals these are."},
    {NULL}};

static PyTypeObject Hooks_Type = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "racecheck.engine._native.Hooks",
    .tp_basicsize = sizeof(Hooks),
    .tp_dealloc = (destructor)Hooks_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "The hot hooks of instrument.hooks.ModuleHooks, in C (see _native_hooks.c).",
    .tp_traverse = (traverseproc)Hooks_traverse,
    .tp_clear = (inquiry)Hooks_clear,
    .tp_weaklistoffset = offsetof(Hooks, weakreflist),
    .tp_methods = Hooks_methods,
    .tp_members = Hooks_members,
    .tp_new = PyType_GenericNew,
};

static int hooks_module_init(PyObject *m) {
    if (PyType_Ready(&Hooks_Type) < 0 || PyType_Ready(&Recorder_Type) < 0 ||
        PyType_Ready(&ItemProxy_Type) < 0)
        return -1;
    if (PyModule_AddObjectRef(m, "Hooks", (PyObject *)&Hooks_Type) < 0) return -1;
    if (op_codes[0] == NULL) {
        static const char *names[6] = {"read_attr", "write_attr", "read_item",
                                       "write_item", "mutate", "iterate"};
        for (int i = 0; i < 6; i++)
            if ((str_sink_methods[i] = PyUnicode_InternFromString(names[i])) == NULL) return -1;
        for (int i = 0; i < 4; i++)
            if ((op_codes[i] = PyLong_FromLong(i)) == NULL) return -1;
        for (int i = 0; i < 8; i++)
            if ((kind_objs[i] = PyLong_FromLong(i)) == NULL) return -1;
    }
    return 0;
}
