/* ShadowMap: the engine's `id(obj) -> shadow` table, keyed by the object's address.
 *
 * Included by _native.c.  shadow.ShadowTable uses it through the small dict subset it
 * needs (get, [], pop, in, len, values, items, clear) with int ids as keys, exactly like
 * the dict it replaces; the C hot path (Core's shadow_of) looks an object up by its
 * pointer with no int allocation, no int hashing and no rich comparison.
 *
 * Open addressing with linear probing and backward-shift deletion (no tombstones), load
 * factor <= 1/2.  Every operation holds the map's lock for a few loads and stores and
 * never runs Python code inside it: values are increfed inside and released outside,
 * because freeing a shadow can free a user object and run its __del__.  The lock is a
 * PyMutex on free-threaded builds and compiles to nothing on GIL builds (see MAP_LOCK).
 */

typedef struct {
    void *key;
    PyObject *value; /* strong */
} MapEntry;

typedef struct {
    PyObject_HEAD
    MapEntry *table;
    Py_ssize_t mask; /* capacity - 1 */
    Py_ssize_t used;
#ifdef Py_GIL_DISABLED
    PyMutex mutex;
#endif
} ShadowMap;

static PyTypeObject ShadowMap_Type;

/* A critical section, as CPython's own containers have: a mutex on free-threaded
 * builds; nothing on GIL builds, where the sections below cannot lose the GIL (they
 * call no Python code and allocate only with PyMem_Raw*, which never collects). */
#ifdef Py_GIL_DISABLED
#define MAP_LOCK(m) PyMutex_Lock(&(m)->mutex)
#define MAP_UNLOCK(m) PyMutex_Unlock(&(m)->mutex)
#else
#define MAP_LOCK(m) ((void)(m))
#define MAP_UNLOCK(m) ((void)(m))
#endif

static inline Py_ssize_t map_hash(void *p, Py_ssize_t mask) {
    uint64_t h = (uint64_t)(uintptr_t)p >> 4;
    h *= 0x9E3779B97F4A7C15ull;
    return (Py_ssize_t)(h >> 20) & mask;
}

/* Under the lock: index of key's entry, or of the empty slot where it would go. */
static inline Py_ssize_t map_find(ShadowMap *m, void *key) {
    Py_ssize_t i = map_hash(key, m->mask);
    while (m->table[i].key != NULL && m->table[i].key != key) i = (i + 1) & m->mask;
    return i;
}

/* New reference to the value stored for `key`, NULL if none (no error set). */
static PyObject *map_get(ShadowMap *m, void *key) {
    PyObject *v;
    MAP_LOCK(m);
    Py_ssize_t i = map_find(m, key);
    v = m->table[i].value;
    Py_XINCREF(v);
    MAP_UNLOCK(m);
    return v;
}

/* Under the lock: grow to twice the size (PyMem_RawCalloc: runs no Python code). */
static int map_grow_locked(ShadowMap *m) {
    Py_ssize_t cap = (m->mask + 1) * 2;
    MapEntry *fresh = PyMem_RawCalloc((size_t)cap, sizeof(MapEntry));
    if (fresh == NULL) return -1;
    MapEntry *old = m->table;
    Py_ssize_t oldcap = m->mask + 1;
    m->table = fresh;
    m->mask = cap - 1;
    for (Py_ssize_t j = 0; j < oldcap; j++) {
        if (old[j].key != NULL) {
            Py_ssize_t i = map_find(m, old[j].key);
            m->table[i] = old[j];
        }
    }
    PyMem_RawFree(old);
    return 0;
}

/* Under the lock: remove key, returning its value (the caller releases it). */
static PyObject *map_pop_locked(ShadowMap *m, void *key) {
    Py_ssize_t i = map_find(m, key);
    if (m->table[i].key == NULL) return NULL;
    PyObject *v = m->table[i].value;
    /* Backward-shift: move later members of the probe run into the hole. */
    Py_ssize_t hole = i, j = i;
    for (;;) {
        j = (j + 1) & m->mask;
        if (m->table[j].key == NULL) break;
        Py_ssize_t home = map_hash(m->table[j].key, m->mask);
        /* Can entry j move to `hole`?  Only if its home is not in (hole, j]. */
        int in_range = hole <= j ? (hole < home && home <= j) : (hole < home || home <= j);
        if (!in_range) {
            m->table[hole] = m->table[j];
            hole = j;
        }
    }
    m->table[hole].key = NULL;
    m->table[hole].value = NULL;
    m->used--;
    return v;
}

static int map_key(PyObject *k, void **out) {
    if (!PyLong_Check(k)) {
        PyErr_SetString(PyExc_TypeError, "ShadowMap keys are object ids (int)");
        return -1;
    }
    void *p = PyLong_AsVoidPtr(k);
    if (p == NULL) {
        if (!PyErr_Occurred()) PyErr_SetString(PyExc_KeyError, "0 is not an object id");
        return -1;
    }
    *out = p;
    return 0;
}

static PyObject *ShadowMap_new(PyTypeObject *type, PyObject *args, PyObject *kw) {
    ShadowMap *m = (ShadowMap *)type->tp_alloc(type, 0);
    if (m == NULL) return NULL;
    m->table = PyMem_RawCalloc(64, sizeof(MapEntry));
    if (m->table == NULL) {
        Py_DECREF(m);
        return PyErr_NoMemory();
    }
    m->mask = 63;
    return (PyObject *)m;
}

/* Detach the whole table (under the lock), release its values outside it. */
static void map_clear(ShadowMap *m) {
    MapEntry *fresh = PyMem_RawCalloc(64, sizeof(MapEntry));
    if (fresh == NULL) return; /* keep the old table: out of memory */
    MAP_LOCK(m);
    MapEntry *old = m->table;
    Py_ssize_t oldcap = m->mask + 1;
    m->table = fresh;
    m->mask = 63;
    m->used = 0;
    MAP_UNLOCK(m);
    for (Py_ssize_t j = 0; j < oldcap; j++) Py_XDECREF(old[j].value);
    PyMem_RawFree(old);
}

static int ShadowMap_traverse(ShadowMap *m, visitproc visit, void *arg) {
    /* Called by the collector with the world stopped (or the GIL held): no lock. */
    if (m->table == NULL) return 0;
    for (Py_ssize_t j = 0; j <= m->mask; j++) Py_VISIT(m->table[j].value);
    return 0;
}

static int ShadowMap_tp_clear(ShadowMap *m) {
    if (m->table != NULL) map_clear(m);
    return 0;
}

static void ShadowMap_dealloc(ShadowMap *m) {
    PyObject_GC_UnTrack(m);
    if (m->table != NULL) {
        for (Py_ssize_t j = 0; j <= m->mask; j++) Py_XDECREF(m->table[j].value);
        PyMem_RawFree(m->table);
        m->table = NULL;
    }
    Py_TYPE(m)->tp_free((PyObject *)m);
}

static PyObject *ShadowMap_get(ShadowMap *m, PyObject *const *a, Py_ssize_t nargs) {
    if (nargs < 1 || nargs > 2) {
        PyErr_SetString(PyExc_TypeError, "get(key[, default])");
        return NULL;
    }
    void *key;
    if (map_key(a[0], &key) < 0) {
        PyErr_Clear();
        return Py_NewRef(nargs == 2 ? a[1] : Py_None);
    }
    PyObject *v = map_get(m, key);
    if (v != NULL) return v;
    return Py_NewRef(nargs == 2 ? a[1] : Py_None);
}

static PyObject *ShadowMap_pop(ShadowMap *m, PyObject *const *a, Py_ssize_t nargs) {
    if (nargs < 1 || nargs > 2) {
        PyErr_SetString(PyExc_TypeError, "pop(key[, default])");
        return NULL;
    }
    void *key;
    PyObject *v = NULL;
    if (map_key(a[0], &key) == 0) {
        MAP_LOCK(m);
        v = map_pop_locked(m, key);
        MAP_UNLOCK(m);
    } else {
        PyErr_Clear();
    }
    if (v != NULL) return v; /* the table's reference passes to the caller */
    if (nargs == 2) return Py_NewRef(a[1]);
    PyErr_SetObject(PyExc_KeyError, a[0]);
    return NULL;
}

/* setdefault(id, shadow): the stored shadow (new reference), inserting `shadow` if the
 * id had none: one atomic step, so two threads shadowing the same new object agree. */
static PyObject *ShadowMap_setdefault(ShadowMap *m, PyObject *const *a, Py_ssize_t nargs) {
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "setdefault(id, shadow)");
        return NULL;
    }
    void *key;
    if (map_key(a[0], &key) < 0) return NULL;
    PyObject *v = a[1], *out;
    Py_INCREF(v); /* the table's reference, if stored */
    MAP_LOCK(m);
    if ((m->used + 1) * 2 > m->mask + 1 && map_grow_locked(m) < 0) {
        MAP_UNLOCK(m);
        Py_DECREF(v);
        return PyErr_NoMemory();
    }
    Py_ssize_t i = map_find(m, key);
    if (m->table[i].key == NULL) {
        m->table[i].key = key;
        m->table[i].value = v;
        m->used++;
        out = v;
        v = NULL;
    } else {
        out = m->table[i].value;
    }
    Py_INCREF(out);
    MAP_UNLOCK(m);
    Py_XDECREF(v);
    return out;
}

static PyObject *map_snapshot(ShadowMap *m, int what) {
    /* what: 0 values, 1 items, 2 keys.  Collect new references under the lock into a
     * C array, build the list outside it. */
    MAP_LOCK(m);
    Py_ssize_t n = m->used, k = 0;
    MapEntry *copy = PyMem_RawMalloc((size_t)(n ? n : 1) * sizeof(MapEntry));
    if (copy == NULL) {
        MAP_UNLOCK(m);
        return PyErr_NoMemory();
    }
    for (Py_ssize_t j = 0; j <= m->mask && k < n; j++) {
        if (m->table[j].key != NULL) {
            copy[k] = m->table[j];
            Py_INCREF(copy[k].value);
            k++;
        }
    }
    MAP_UNLOCK(m);
    PyObject *out = PyList_New(k);
    for (Py_ssize_t j = 0; j < k; j++) {
        PyObject *item = NULL;
        if (out != NULL) {
            if (what == 0) {
                item = Py_NewRef(copy[j].value);
            } else {
                PyObject *kobj = PyLong_FromVoidPtr(copy[j].key);
                if (kobj != NULL && what == 1) {
                    item = PyTuple_Pack(2, kobj, copy[j].value);
                    Py_DECREF(kobj);
                } else {
                    item = kobj;
                }
            }
            if (item == NULL) Py_CLEAR(out);
            else PyList_SET_ITEM(out, j, item);
        }
        Py_DECREF(copy[j].value);
    }
    PyMem_RawFree(copy);
    return out;
}

static PyObject *ShadowMap_values(ShadowMap *m, PyObject *Py_UNUSED(x)) { return map_snapshot(m, 0); }
static PyObject *ShadowMap_items(ShadowMap *m, PyObject *Py_UNUSED(x)) { return map_snapshot(m, 1); }
static PyObject *ShadowMap_keys(ShadowMap *m, PyObject *Py_UNUSED(x)) { return map_snapshot(m, 2); }
static PyObject *ShadowMap_clear_m(ShadowMap *m, PyObject *Py_UNUSED(x)) {
    map_clear(m);
    Py_RETURN_NONE;
}

static Py_ssize_t ShadowMap_len(ShadowMap *m) { return __atomic_load_n(&m->used, __ATOMIC_RELAXED); }

static PyObject *ShadowMap_subscript(ShadowMap *m, PyObject *k) {
    void *key;
    if (map_key(k, &key) < 0) return NULL;
    PyObject *v = map_get(m, key);
    if (v == NULL) PyErr_SetObject(PyExc_KeyError, k);
    return v;
}

static int ShadowMap_ass_subscript(ShadowMap *m, PyObject *k, PyObject *v) {
    void *key;
    if (map_key(k, &key) < 0) return -1;
    PyObject *old = NULL;
    if (v == NULL) {
        MAP_LOCK(m);
        old = map_pop_locked(m, key);
        MAP_UNLOCK(m);
        if (old == NULL) {
            PyErr_SetObject(PyExc_KeyError, k);
            return -1;
        }
        Py_DECREF(old);
        return 0;
    }
    Py_INCREF(v);
    MAP_LOCK(m);
    if ((m->used + 1) * 2 > m->mask + 1 && map_grow_locked(m) < 0) {
        MAP_UNLOCK(m);
        Py_DECREF(v);
        PyErr_NoMemory();
        return -1;
    }
    Py_ssize_t i = map_find(m, key);
    if (m->table[i].key == NULL) {
        m->table[i].key = key;
        m->used++;
    }
    old = m->table[i].value;
    m->table[i].value = v;
    MAP_UNLOCK(m);
    Py_XDECREF(old);
    return 0;
}

static int ShadowMap_contains(ShadowMap *m, PyObject *k) {
    void *key;
    if (map_key(k, &key) < 0) {
        PyErr_Clear();
        return 0;
    }
    PyObject *v = map_get(m, key);
    Py_XDECREF(v);
    return v != NULL;
}

static PyMappingMethods ShadowMap_mapping = {
    .mp_length = (lenfunc)ShadowMap_len,
    .mp_subscript = (binaryfunc)ShadowMap_subscript,
    .mp_ass_subscript = (objobjargproc)ShadowMap_ass_subscript,
};

static PySequenceMethods ShadowMap_sequence = {
    .sq_contains = (objobjproc)ShadowMap_contains,
};

static PyMethodDef ShadowMap_methods[] = {
    {"get", (PyCFunction)(void (*)(void))ShadowMap_get, METH_FASTCALL, "get(id[, default])"},
    {"pop", (PyCFunction)(void (*)(void))ShadowMap_pop, METH_FASTCALL, "pop(id[, default])"},
    {"setdefault", (PyCFunction)(void (*)(void))ShadowMap_setdefault, METH_FASTCALL,
     "setdefault(id, shadow): the stored shadow, inserting this one if none."},
    {"values", (PyCFunction)ShadowMap_values, METH_NOARGS, "A list of the shadows."},
    {"items", (PyCFunction)ShadowMap_items, METH_NOARGS, "A list of (id, shadow)."},
    {"keys", (PyCFunction)ShadowMap_keys, METH_NOARGS, "A list of the ids."},
    {"clear", (PyCFunction)ShadowMap_clear_m, METH_NOARGS, "Forget every shadow."},
    {NULL}};

static PyTypeObject ShadowMap_Type = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "racecheck.engine._native.ShadowMap",
    .tp_basicsize = sizeof(ShadowMap),
    .tp_dealloc = (destructor)ShadowMap_dealloc,
    .tp_as_sequence = &ShadowMap_sequence,
    .tp_as_mapping = &ShadowMap_mapping,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "id(obj) -> shadow, keyed by address in C (see _native_shadowmap.c).",
    .tp_traverse = (traverseproc)ShadowMap_traverse,
    .tp_clear = (inquiry)ShadowMap_tp_clear,
    .tp_methods = ShadowMap_methods,
    .tp_new = ShadowMap_new,
};
