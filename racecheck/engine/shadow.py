"""Shadow state: per location, who accessed it last and when (FastTrack's W and R).

Layout: one :class:`ObjShadow` per user object, found by ``id(obj)`` in one dict, holding
its cells: ``attrs`` (attribute name -> Cell), ``items`` (normalised key -> Cell), one
``whole`` cell for container mutations/iterations and one ``audit`` cell for a
primitive's audited operations.  Two dict lookups find a cell; no tuple is built.

Never confusing a dead object with a new one at the same ``id()``:

* **weakrefable objects** get a weak reference whose callback removes the ObjShadow.
  CPython runs weakref callbacks while the object is being deallocated, before its
  memory is freed, so no new object can have that address until the entry is gone.  The
  callback takes no lock (it may run inside the engine, e.g. during a GC triggered while
  a lock is held): it does one ``dict.pop``, a single operation of a built-in dict, which
  is atomic with or without the GIL.  No other entry for that id can exist at that time
  (the object is still alive until the callback returns), so an unconditional pop is
  exact.
* **non-weakrefable objects** (plain ``dict``/``list``/``set``/``bytearray``, instances
  with ``__slots__`` and no ``__weakref__``) are held *strongly* by their ObjShadow, so
  their id cannot be reused while the shadow exists.  Every time the number of such
  entries doubles, a sweep drops those whose ``sys.getrefcount`` shows that only the
  shadow still holds them (the baseline is calibrated on a probe at start-up, so it is
  right on every CPython version).  Amortised O(1) per new entry; memory O(live
  objects).  Objects kept alive only by a reference cycle through such an entry cannot
  be detected that way: a hard cap (``strong_cap``) evicts the oldest strong entries,
  which only forgets history (a possible missed race on that object, never a false
  report).  Documented cost: a plain container (and what it holds) may outlive its last
  user reference until the next sweep.
"""

from __future__ import annotations

import gc
import sys
import types
import weakref
from types import ModuleType
from typing import Any

from racecheck._rawsync import allocate_lock


class Cell:
    """FastTrack state of one location.

    ``w``: epoch of the last write (0 = none) and ``wm`` its meta.  ``r``: reads (and
    iterations): an epoch, or a dict slot -> clock once reads are concurrent (read-shared);
    ``rm`` its meta (or dict slot -> meta).  ``m``/``mm``: the same for mutations, which
    never conflict with each other.  A meta is ``(op, stack_id, thread_record)``.
    Mutated only under the owning object's stripe lock; the fast path reads ``w``/``r``/
    ``m`` without it (an int compare; a stale value only sends it to the slow path or,
    for its own epoch, skips work that FastTrack proves redundant).
    """

    __slots__ = ("w", "wm", "r", "rm", "m", "mm")

    def __init__(self) -> None:
        self.w: int = 0
        self.wm: Any = None
        self.r: Any = 0
        self.rm: Any = None
        self.m: Any = 0
        self.mm: Any = None


class ObjShadow:
    """Every cell of one user object.  How to name the object in reports is computed
    only when a race is reported, from the live object the racing access passed in
    (:func:`describe`), so creating a shadow costs no string formatting."""

    __slots__ = ("attrs", "items", "whole", "audit", "ref", "strong", "keys")

    def __init__(self) -> None:
        self.attrs: dict[str, Cell] | None = None
        self.items: dict[object, Cell] | None = None
        self.whole: Cell | None = None
        self.audit: Cell | None = None
        self.ref: Any = None
        self.strong: Any = None
        self.keys: list[object] | None = None
        """Identity-keyed item keys held so their ids cannot be reused (see item_key)."""


def describe(obj: object) -> tuple[str, str]:
    """(location prefix, object description) without running user code: ``Counter`` and
    ``app.Counter object at 0x7f...``; ``app`` and ``module app`` for a module; ``Cls`` and
    ``class app.Cls`` for a class; ``list`` and ``list object at 0x...``."""
    tp = type(obj)  # never isinstance(): it would consult a user's ``__class__``
    if issubclass(tp, ModuleType):
        name = _module_name(obj)  # type: ignore[arg-type]
        return name, f"module {name}"
    if issubclass(tp, type):
        return _short(obj), f"class {_qualified(obj)}"  # type: ignore[arg-type]
    if tp.__name__ == "CellScope" and tp.__module__ == "racecheck.instrument.hooks":
        # closure cells: ``make.hits (closure variable of make, scope at 0x...)``
        function = str(getattr(obj, "function", "?"))
        return function, f"closure variable of {function}, scope at {id(obj):#x}"
    desc = f"{_qualified(tp)} object at {id(obj):#x}"
    created = _created_at(obj)
    if created:
        desc += f", created at {created}"
    return _short(tp), desc


def _short(tp: type) -> str:
    """``Counter`` for a location name (``f.<locals>.Counter`` -> ``Counter``)."""
    return tp.__qualname__.rsplit("<locals>.", 1)[-1]


def _module_name(mod: ModuleType) -> str:
    try:
        name = object.__getattribute__(mod, "__dict__").get("__name__")
    except Exception:
        name = None
    return name if isinstance(name, str) else "?"


def _qualified(tp: type) -> str:
    module = tp.__dict__.get("__module__") if "__module__" in tp.__dict__ else None
    if not isinstance(module, str) or module == "builtins":
        return tp.__qualname__
    return f"{module}.{tp.__qualname__}"


def _created_at(obj: object) -> str:
    """A primitive's creation site (its ``_created_at``, a tuple of (file, line, function)
    as ``events.creation_site`` returns), as ``file:line``.  Read from the instance
    ``__dict__`` (or, for racecheck's own slotted types, the slot) so no user property or
    ``__getattr__`` runs."""
    site: Any = None
    try:
        site = object.__getattribute__(obj, "__dict__").get("_created_at")
    except Exception:
        site = None
    if site is None and type(obj).__module__.startswith("racecheck."):
        try:
            site = object.__getattribute__(obj, "_created_at")
        except Exception:
            site = None
    if site and isinstance(site, tuple) and isinstance(site[0], tuple) and len(site[0]) >= 2:
        return f"{site[0][0]}:{site[0][1]}"
    return ""


_VALUE_TYPES = frozenset({int, str, bytes, float, bool, complex, type(None)})


def item_key(key: object) -> tuple[object, bool]:
    """The shadow key of a subscript and whether it is an identity key.

    Built-in value types (and tuples of them) are used as they are: their hash and
    equality are the container's.  Any other key is shadowed by identity, ``(type,
    id)``: looking it up never runs user ``__hash__``/``__eq__`` (which could re-enter the
    engine), and the caller keeps the key object in the ObjShadow so its id cannot be
    reused while the shadow exists.  Keys with value semantics defined in Python (two
    equal but distinct instances) are therefore distinct locations: a documented blind
    spot, never a false report.
    """
    tp = type(key)
    if tp in _VALUE_TYPES:
        return key, False
    if tp is tuple and all(type(k) in _VALUE_TYPES for k in key):  # type: ignore[attr-defined]
        return key, False
    return (_IdKey, tp, id(key)), True


class _IdKey:
    """Marker in identity keys, so they never equal a user's tuple key."""


def key_repr(key: object) -> str:
    if type(key) is tuple and len(key) == 3 and key[0] is _IdKey:
        tp = key[1]
        return f"<{_qualified(tp)} object at {key[2]:#x}>"
    return repr(key)


class _ShadowRef(weakref.ref):  # type: ignore[type-arg]
    """A weak reference that knows its shadow key, so its callback needs no closure."""

    __slots__ = ("key",)
    key: int


_gc_callbacks_lock = allocate_lock()
_gc_callbacks: list[tuple[weakref.ref[Any], Any]] = []
"""(table, its gc callback), so dead tables' callbacks can be unregistered."""


_NOT_ENTERED = (type, types.ModuleType, types.FunctionType, types.CodeType, types.FrameType)
"""Live anyway (or not data): the cycle pass does not explore through them."""


def _strong_refs(sh: ObjShadow) -> int:
    return sys.getrefcount(sh.strong)


class ShadowTable:
    """``id(obj) -> ObjShadow`` with the two reclamation strategies described above."""

    def __init__(
        self, strong_cap: int = 1 << 20, shadow_class: Any = None, map_class: Any = dict
    ) -> None:
        self._shadow_class = ObjShadow if shadow_class is None else shadow_class
        # A dict, or the native core's ShadowMap (the same operations, keyed in C).
        self.objs: dict[int, ObjShadow] = map_class()
        self._lock = allocate_lock()
        self._strong: dict[int, ObjShadow] = {}
        self._sweep_at = 1024
        self._strong_cap = max(16, strong_cap)
        self._weakrefable: dict[type, bool] = {}
        self.reclaimed = 0
        self._dead_cb = self._dead  # one bound method, not one per shadow
        probe = self._shadow_class()
        probe.strong = []
        self._baseline = _strong_refs(probe)
        # A full collection is when the program has just let go of garbage: sweep then
        # too, so a dropped list is not kept alive until the table doubles.  The callback
        # holds the table weakly (gc.callbacks would otherwise keep it forever).
        # A dead table's callback is unregistered here, by the next table, never from
        # inside a callback: removing from gc.callbacks while gc iterates it would skip
        # the next table's callback.
        table = weakref.ref(self)

        def after_full_collection(phase: str, info: dict[str, int]) -> None:
            me = table()
            if me is not None and phase == "stop" and info.get("generation") == 2:
                me._sweep_if_free()

        with _gc_callbacks_lock:
            for old_table, callback in list(_gc_callbacks):
                if old_table() is None:
                    _gc_callbacks.remove((old_table, callback))
                    try:
                        gc.callbacks.remove(callback)
                    except ValueError:
                        pass
            _gc_callbacks.append((table, after_full_collection))
            gc.callbacks.append(after_full_collection)

    def get_or_create(self, obj: object) -> ObjShadow:
        """The ObjShadow of a live object (created if needed)."""
        key = id(obj)
        sh = self.objs.get(key)
        if sh is not None:
            return sh
        new = self._shadow_class()
        tp = type(obj)
        weak = self._weakrefable.get(tp)
        if weak is None:
            weak = tp.__weakrefoffset__ != 0
            self._weakrefable[tp] = weak
        if weak:
            # Lock-free: one atomic setdefault decides which of two racing creators'
            # shadow is kept (the loser's weakref dies before the object: no callback).
            # No lock held across Python code here: see NativeDetector._update.
            try:
                ref = _ShadowRef(obj, self._dead_cb)
            except TypeError:
                pass
            else:
                ref.key = key
                new.ref = ref
                found: ObjShadow = self.objs.setdefault(key, new)
                return found
        # Not weakly referenceable (lists, dicts, sets...): held, and swept when only the
        # shadow holds it.  Also lock-free: the setdefault decides, then the entry joins
        # the sweep's table (a sweep running in between just sees it next time; its id
        # cannot be reused meanwhile, the shadow holds the object).
        new.strong = obj
        found = self.objs.setdefault(key, new)
        if found is not new:
            new.strong = None
            return found
        self._strong[key] = new
        if len(self._strong) >= self._sweep_at:
            self.sweep()
        return new

    def _dead(self, ref: _ShadowRef) -> None:
        # Lock-free on purpose (see the module docstring): one atomic dict operation.
        if self.objs.pop(ref.key, None) is not None:
            self.reclaimed += 1  # statistics only; a lost increment is harmless

    def _sweep_locked(self) -> list[object]:
        """Forget dead strongly-held objects; returns them, so the caller lets go of the
        last references only after releasing the lock (freeing one can run a user's
        ``__del__``, which may access shadowed memory and so need this lock)."""
        baseline = self._baseline
        strong = self._strong
        objs = self.objs
        released: list[object] = []
        # Copies: other threads insert into ``_strong`` without the lock (only deletes
        # take it), and an allocation here can run code that lets them (a collection).
        for key, sh in strong.copy().items():
            if _strong_refs(sh) <= baseline:
                del strong[key]
                objs.pop(key, None)
                released.append(sh.strong)
                sh.strong = None
                self.reclaimed += 1
        if strong:
            self._release_cycles_locked(released)
        if len(strong) > self._strong_cap:
            for key in list(strong.copy())[: len(strong) - self._strong_cap // 2]:
                sh = strong.pop(key)
                objs.pop(key, None)
                released.append(sh.strong)
                sh.strong = None
        self._sweep_at = max(1024, 2 * len(strong))
        return released

    def _release_cycles_locked(self, released: list[object]) -> None:
        """Forget strongly held objects that only garbage references.

        Dead containers in a cycle (a parse tree's lists and the nodes pointing back at
        their parent, possibly through ordinary weak-referenceable objects) each keep a
        reference from another one, so the refcount test above never frees them, and
        CPython's collector cannot either while we hold them.  This is that collector's
        own test on the part of the heap reachable from what we hold (through data
        objects only: classes, modules, functions and code are live anyway and are not
        entered): an object is live if something outside that part references it (its
        refcount exceeds the references counted inside it, ours included) or a live
        object does; the held objects that are not live are released.  Keeping one
        wrongly only costs memory.  Releasing a live one is possible only if another
        thread moves references while the pass runs (it cannot stop the world); that
        object then keeps living with a fresh shadow: lost history, a missed race at
        worst, never an invented one (its id is not reused while it lives).  The part
        explored is bounded; past the bound nothing is released."""
        strong = self._strong
        held: dict[int, int] = {}  # id(object) -> key in strong
        nodes: dict[int, Any] = {}  # id -> object: exactly one reference of ours each
        for key, sh in strong.copy().items():
            obj = sh.strong
            if obj is not None:
                held[id(obj)] = key
                nodes[id(obj)] = obj
        obj = r = None  # no stray reference of ours may inflate a count below
        limit = 8 * len(nodes) + 10_000
        todo = list(nodes)
        edges: dict[int, list[int]] = {}
        while todo:
            oid = todo.pop()
            inner: list[int] = []
            for r in gc.get_referents(nodes[oid]):
                rid = id(r)
                if rid not in nodes:
                    if not gc.is_tracked(r) or isinstance(r, _NOT_ENTERED):
                        continue
                    if len(nodes) >= limit:
                        return  # too much of the heap: keep everything this time
                    nodes[rid] = r
                    todo.append(rid)
                inner.append(rid)
            edges[oid] = inner
        r = None
        # References from outside: the refcount minus ours (the `nodes` entry, the
        # shadow's for held ones, getrefcount's argument) minus those counted inside.
        outside: dict[int, int] = {}
        for oid in list(nodes):  # (the argument is the only temporary reference)
            outside[oid] = sys.getrefcount(nodes[oid]) - 2 - (1 if oid in held else 0)
        for inner in edges.values():
            for rid in inner:
                outside[rid] -= 1
        live = [oid for oid, n in outside.items() if n > 0]
        seen = set(live)
        while live:
            for rid in edges[live.pop()]:
                if rid not in seen:
                    seen.add(rid)
                    live.append(rid)
        nodes.clear()
        objs = self.objs
        for oid, key in held.items():
            if oid not in seen:
                sh = strong.pop(key)
                objs.pop(key, None)
                released.append(sh.strong)
                sh.strong = None
                self.reclaimed += 1

    def sweep(self) -> None:
        """Reclaim non-weakrefable objects only the shadow still holds (also automatic)."""
        with self._lock:
            released = self._sweep_locked()
        del released

    def _sweep_if_free(self) -> None:
        """The gc callback's sweep: it may run inside this table's own locked section
        (a collection triggered by an allocation there), so it never waits for the
        lock.  Repeats while it frees something: a dead list may hold the last
        reference to another shadowed container."""
        for _ in range(8):
            if not self._strong or not self._lock.acquire(False):
                return
            try:
                before = self.reclaimed
                released = self._sweep_locked()
            finally:
                self._lock.release()
            del released  # may free more shadowed containers, swept next round
            if self.reclaimed == before:
                return

    def clear(self) -> None:
        with self._lock:
            for sh in self._strong.copy().values():
                sh.strong = None
            self._strong.clear()
            for sh in list(self.objs.values()):
                sh.ref = None
            self.objs.clear()

    def __len__(self) -> int:
        return len(self.objs)

    def strong_count(self) -> int:
        with self._lock:
            return len(self._strong)
