"""The functions rewritten user code calls at every access it makes.

``racecheck.instrument.rewrite`` turns ``obj.x`` into ``__rc__.rd(obj, "x").x``,
``c[k]`` into ``__rc__.gi(c, k)`` and so on, where ``__rc__`` is the one name the
rewriter adds to a module: a :class:`ModuleHooks` bound to that module (globals are
locations ``(module, name)``, so the hooks need to know which module they run in).

Design rules, all for the per-access hot path:

* When no sink is installed (``_sink is None``) every hook returns at once; the sink is
  a module global read once per call, and installing one is a single reference store.
* Wherever possible the hook only *records* and the user's operation itself runs natively
  in the user's frame: ``rd``/``sw``/``sd``/``aw`` return the object and the rewritten
  code does the real attribute access, so descriptors, ``__getattr__`` and method-call
  optimisations behave exactly as before.  Hooks that must perform the operation
  (subscript reads, container method calls, builtin consumers) drop their own frame from
  the traceback of any exception they let through, so the user's traceback looks as if
  no hook had been there.
* Reads are recorded after the operation succeeded and writes just before or after it:
  no synchronisation can run in between, so the happens-before verdict is the same.
* Per-(type, name) decisions ("is ``obj.name`` a memory access?") are cached in dicts
  keyed by attribute name then by ``id(type)``.  An ``id`` is only sound while the type
  lives, so every type is registered with a weak reference whose callback removes its
  entries before the id can be reused (callbacks run before the memory is freed).
  Writers hold a raw lock; readers do single dict lookups, which are atomic in CPython
  with or without the GIL.  A write or delete of a class attribute through instrumented
  code drops the cached decisions for that name (a new property changes the answer);
  writing a dunder such as ``__getattribute__`` or ``__bases__`` drops them all.
  Changes to classes made by uninstrumented code after the first access are not seen
  by these Python hooks; the C hooks key their cache by the class's version tag, which
  any change renews, and see them.

What is and is not an access is documented in ``docs/memory-model.md`` terms in the
module docstring of ``racecheck.instrument.rewrite``.
"""

from __future__ import annotations

import _thread
import sys
import weakref
from collections import deque
from types import FrameType, MethodDescriptorType, ModuleType, WrapperDescriptorType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable

    from racecheck._types import AccessSink

    _LockEdges = tuple[Callable[[Any, str], None], Callable[[Any, bool, int], None]]

_getframe = sys._getframe

_sink: AccessSink | None = None
"""The detector (or a test's fake); None means every hook is a passthrough."""


def install(sink: AccessSink) -> None:
    """Route every access made by rewritten code to ``sink``."""
    global _sink
    _sink = sink
    if _native is not None:
        core = getattr(sink, "_core", None)
        _native.hooks_install(sink, core if isinstance(core, _native.Core) else None)


def uninstall() -> None:
    """Stop recording; rewritten code keeps working at passthrough cost."""
    global _sink
    _sink = None
    if _native is not None:
        _native.hooks_install(None, None)


def current_sink() -> AccessSink | None:
    return _sink


# --------------------------------------------------------------------------------------
# Decision caches
# --------------------------------------------------------------------------------------

SKIP = 0
ACCESS = 1
IN_DICT = 2  # class with __getattr__ and no such class attribute: an access only if set
CLASS = 3  # the object is a class: location resolved along its MRO
MODULE = 4  # the object is a module: (module, name)

_MISSING: Any = object()
_IMMUTABLETYPE = 1 << 8  # Py_TPFLAGS_IMMUTABLETYPE: static/builtin types, never written

_cache_lock = _thread.RLock()
"""Guards cache writes.  Re-entrant: a garbage collection inside a locked section can
run a user's ``__del__``, whose instrumented code calls the hooks again."""
_reads: dict[str, dict[int, int]] = {}
_writes: dict[str, dict[int, int]] = {}
_dels: dict[str, dict[int, int]] = {}
_pure: dict[str, dict[int, int]] = {}
"""Per (name, type) with read kind ACCESS: 1 when loading the attribute runs no Python
code (see ``_decide_pure``), else 0.  Used only by ``ModuleHooks.rd2``."""
_objok: dict[int, bool] = {}
"""Per class/module object: may its attributes be accesses (not racecheck's, mutable)."""
_ckinds: dict[int, int] = {}
"""Per type: container kind bits (see ``_container_kind``)."""
_refs: dict[int, weakref.ref[Any]] = {}
"""The weak references whose callbacks forget an id's cache entries."""

# Dunders whose change on a class changes decisions for every name.
_GLOBAL_DUNDERS = frozenset(
    {"__getattribute__", "__getattr__", "__setattr__", "__delattr__", "__bases__", "__class__"}
)


def _forget(key: int, ref: weakref.ref[Any]) -> None:
    """Weakref callback: the object whose id was ``key`` died, drop its entries.

    Takes no lock: a callback can run in whichever thread drops the last reference,
    including one inside ``_store`` holding the lock.  It is still exact: no entry for
    ``key`` can be added concurrently, because that would need a live object with this
    id, and the id is only reused after the callback returned.  It iterates copies, as
    other threads may add names meanwhile.
    """
    try:
        if _refs.get(key) is not ref:
            return
        for table in (_reads, _writes, _dels, _pure):
            for per_type in table.copy().values():
                per_type.pop(key, None)
        _objok.pop(key, None)
        _ckinds.pop(key, None)
        _refs.pop(key, None)
    except Exception:  # pragma: no cover - interpreter shutdown
        pass


def _guard(obj: object) -> weakref.ref[Any] | None:
    """The weak reference that will forget ``obj``'s id; made outside the lock (an
    allocation can run the garbage collector, hence ``__del__`` methods in instrumented
    code, hence hooks)."""
    key = id(obj)
    if key in _refs:
        return None

    def callback(ref: weakref.ref[Any]) -> None:
        _forget(key, ref)

    return weakref.ref(obj, callback)


def _register(obj: object, guard: weakref.ref[Any] | None) -> None:
    """Must hold ``_cache_lock``.  ``obj`` is alive (the caller holds it), so its id
    cannot be reused before the callback runs."""
    if guard is not None:
        _refs.setdefault(id(obj), guard)


def _invalidate(name: str) -> None:
    """A class attribute changed: decisions about ``name`` (or all, for a dunder) may be
    stale.  Publishes fresh empty tables; readers holding an old one finish with it."""
    global _reads, _writes, _dels, _pure
    with _cache_lock:
        if name in _GLOBAL_DUNDERS:
            _reads, _writes, _dels, _pure = {}, {}, {}, {}
        else:
            _reads.pop(name, None)
            _writes.pop(name, None)
            _dels.pop(name, None)
            _pure.pop(name, None)


def _store(table: dict[str, dict[int, int]], tp: type, name: str, kind: int) -> None:
    guard = _guard(tp)
    fresh: dict[int, int] = {}
    with _cache_lock:
        _register(tp, guard)
        per_type = table.setdefault(name, fresh)
        per_type[id(tp)] = kind


def _lookup(tp: type, name: str) -> Any:
    """``_PyType_Lookup``: the attribute ``name`` found along ``tp``'s MRO, or _MISSING."""
    for klass in tp.__mro__:
        d = klass.__dict__
        if name in d:
            return d[name]
    return _MISSING


_C_SLOTS = (WrapperDescriptorType, MethodDescriptorType)


def _overrides(tp: type, dunder: str) -> bool:
    """Does ``tp`` define ``dunder`` in Python code?  C types expose their slots as
    wrapper/method descriptors even when they are the generic ones, and C-level
    behaviour (``OrderedDict.__setitem__``) is as atomic as the base type's."""
    attr = _lookup(tp, dunder)
    return attr is not _MISSING and not isinstance(attr, _C_SLOTS)


def _is_data_descriptor(attr: Any) -> bool:
    kind = type(attr)
    return _lookup(kind, "__set__") is not _MISSING or _lookup(kind, "__delete__") is not _MISSING


_MemberDescriptor = type(type("_Slotted", (), {"__slots__": ("x",)}).__dict__["x"])
_LOCAL_TYPES: tuple[type, ...] = (_thread._local,)
try:  # the pure-Python fallback some code subclasses
    import _threading_local

    _LOCAL_TYPES = (_thread._local, _threading_local.local)
except ImportError:  # pragma: no cover
    pass


def _is_racecheck(obj: Any) -> bool:
    try:
        mod = obj.__module__
    except Exception:
        return False
    return isinstance(mod, str) and (mod == "racecheck" or mod.startswith("racecheck."))


def _is_local(tp: type) -> bool:
    return issubclass(tp, _LOCAL_TYPES)


def _decide_instance(tp: type, name: str, hook_dunder: str) -> int:
    """Shared decision for an instance attribute; ``hook_dunder`` is the method whose
    override makes the operation not an access (``__getattribute__`` for reads...)."""
    if _is_racecheck(tp) or _is_local(tp):
        return SKIP
    if _overrides(tp, hook_dunder):
        return SKIP
    attr = _lookup(tp, name)
    if attr is not _MISSING and _is_data_descriptor(attr):
        return ACCESS if type(attr) is _MemberDescriptor else SKIP
    if not tp.__dictoffset__:
        return SKIP  # nowhere to store it: the attribute is read-only, it cannot race
    return ACCESS


def _decide_read(tp: type, name: str) -> int:
    if issubclass(tp, ModuleType):
        kind = SKIP if name[:2] == "__" and name[-2:] == "__" else MODULE
    elif issubclass(tp, type):
        attr = _lookup(tp, name)
        if _overrides(tp, "__getattribute__") or (
            attr is not _MISSING and _is_data_descriptor(attr)
        ):
            kind = SKIP
        else:
            kind = CLASS
    else:
        kind = _decide_instance(tp, name, "__getattribute__")
        if (
            kind == ACCESS
            and _lookup(tp, name) is _MISSING
            and _lookup(tp, "__getattr__") is not _MISSING
        ):
            kind = IN_DICT
    _store(_reads, tp, name, kind)
    return kind


def _decide_write(tp: type, name: str, table: dict[str, dict[int, int]], dunder: str) -> int:
    if issubclass(tp, ModuleType):
        kind = SKIP if name[:2] == "__" and name[-2:] == "__" else MODULE
    elif issubclass(tp, type):
        attr = _lookup(tp, name)
        if _overrides(tp, dunder) or (attr is not _MISSING and _is_data_descriptor(attr)):
            kind = SKIP
        else:
            kind = CLASS
    else:
        kind = _decide_instance(tp, name, dunder)
    _store(table, tp, name, kind)
    return kind


def _decide_pure(tp: type, name: str) -> int:
    """1 when loading ``obj.name`` (read kind ACCESS) on an instance of ``tp`` can run
    no Python code: the generic ``object.__getattribute__``, no ``__getattr__`` anywhere
    on the MRO, and the class attribute of that name (if any) is no descriptor or one
    whose ``__get__`` is implemented in C (functions, slots, classmethod...).  Then the
    load is a dict or slot lookup, nothing in it can synchronise."""
    pure = (
        _lookup(tp, "__getattribute__") is object.__getattribute__
        and _lookup(tp, "__getattr__") is _MISSING
    )
    if pure:
        attr = _lookup(tp, name)
        if attr is not _MISSING:
            get = _lookup(type(attr), "__get__")
            pure = get is _MISSING or isinstance(get, _C_SLOTS)
    _store(_pure, tp, name, int(pure))
    return int(pure)


def _object_ok(obj: Any) -> bool:
    """May attributes of this class or module be accesses?  Not for racecheck's own,
    nor for immutable (builtin) classes, which nobody can write."""
    try:
        return _objok[id(obj)]
    except KeyError:
        pass
    if isinstance(obj, type):
        ok = not (obj.__flags__ & _IMMUTABLETYPE) and not _is_racecheck(obj)
    else:
        name = getattr(obj, "__name__", "")
        ok = not (isinstance(name, str) and (name == "racecheck" or name.startswith("racecheck.")))
    guard = _guard(obj)
    with _cache_lock:
        _register(obj, guard)
        _objok[id(obj)] = ok
    return ok


def _class_owner(cls: type, name: str) -> type:
    """The class along ``cls``'s MRO whose namespace holds ``name`` (``cls`` if none):
    reading ``Sub.count`` reads ``Base.count`` when only Base defines it."""
    try:
        for klass in cls.__mro__:
            if name in klass.__dict__:
                return klass
    except Exception:  # exotic metaclasses
        pass
    return cls


def _read_slow(sink: AccessSink, obj: Any, name: str, kind: int, frame: FrameType) -> None:
    if kind == MODULE:
        if _object_ok(obj):
            sink.read_attr(obj, name, frame)
    elif kind == CLASS:
        if _object_ok(obj):
            sink.read_attr(_class_owner(obj, name), name, frame)
    elif kind == IN_DICT:
        try:
            present = name in object.__getattribute__(obj, "__dict__")
        except Exception:
            present = False
        if present:
            sink.read_attr(obj, name, frame)


def _write_slow(sink: AccessSink, obj: Any, name: str, kind: int, frame: FrameType) -> None:
    if kind == MODULE:
        if _object_ok(obj):
            sink.write_attr(obj, name, frame)
    elif kind == CLASS:
        if _object_ok(obj):
            _invalidate(name)
            sink.write_attr(obj, name, frame)


def _record_read(sink: AccessSink, obj: Any, name: str, frame: FrameType) -> None:
    tp = type(obj)
    try:
        kind = _reads[name][id(tp)]
    except KeyError:
        kind = _decide_read(tp, name)
    if kind == ACCESS:
        sink.read_attr(obj, name, frame)
    elif kind:
        _read_slow(sink, obj, name, kind, frame)


def _record_write(sink: AccessSink, obj: Any, name: str, frame: FrameType) -> None:
    tp = type(obj)
    try:
        kind = _writes[name][id(tp)]
    except KeyError:
        kind = _decide_write(tp, name, _writes, "__setattr__")
    if kind == ACCESS:
        sink.write_attr(obj, name, frame)
    elif kind:
        _write_slow(sink, obj, name, kind, frame)


def _record_delete(sink: AccessSink, obj: Any, name: str, frame: FrameType) -> None:
    tp = type(obj)
    try:
        kind = _dels[name][id(tp)]
    except KeyError:
        kind = _decide_write(tp, name, _dels, "__delattr__")
    if kind == ACCESS:
        sink.write_attr(obj, name, frame)
    elif kind:
        _write_slow(sink, obj, name, kind, frame)


# --------------------------------------------------------------------------------------
# Built-in containers
# --------------------------------------------------------------------------------------

# Container kind bits.
C_ITEMS = 1  # subscripts are accesses (no overridden __getitem__/__setitem__/__delitem__)
C_ITER = 2  # iterating it is an access (no overridden __iter__)
C_METHODS = 4  # its builtin methods mutate / iterate it
C_INDEXED = 8  # integer indices (list, bytearray, deque): normalise them
C_VIEW = 16  # a dict view: iterating it iterates view.mapping

_BASES: tuple[tuple[type, int], ...] = (
    (dict, C_ITEMS | C_ITER | C_METHODS),
    (list, C_ITEMS | C_ITER | C_METHODS | C_INDEXED),
    (bytearray, C_ITEMS | C_ITER | C_METHODS | C_INDEXED),
    (deque, C_ITEMS | C_ITER | C_METHODS | C_INDEXED),
    (set, C_ITER | C_METHODS),
)
_VIEW_TYPES: tuple[type, ...] = (type({}.keys()), type({}.values()), type({}.items()))

_EXACT: dict[type, int] = {base: bits for base, bits in _BASES}
for _view in _VIEW_TYPES:
    _EXACT[_view] = C_VIEW
for _plain in (tuple, str, bytes, int, float, range, frozenset, memoryview, type(None)):
    _EXACT[_plain] = 0  # immutable: iterating or indexing them is never an access
del _view, _plain


def _compute_kind(tp: type) -> int:
    for base, bits in _BASES:
        if issubclass(tp, base):
            if bits & C_ITEMS and any(
                _overrides(tp, dunder) for dunder in ("__getitem__", "__setitem__", "__delitem__")
            ):
                bits &= ~C_ITEMS
            if _overrides(tp, "__iter__"):
                bits &= ~C_ITER
            return bits
    return 0


def _container_kind(tp: type) -> int:
    bits = _EXACT.get(tp)
    if bits is not None:
        return bits
    try:
        return _ckinds[id(tp)]
    except KeyError:
        pass
    bits = _compute_kind(tp)
    guard = _guard(tp)
    with _cache_lock:
        _register(tp, guard)
        _ckinds[id(tp)] = bits
    return bits


def _norm_index(container: Any, key: Any) -> Any:
    """A list/deque/bytearray index as the location it names, or None if out of range."""
    if type(key) is not int:
        try:
            key = key.__index__()
        except Exception:
            return None
    n = len(container)
    if key < 0:
        key += n
    if 0 <= key < n:
        return key
    return None


def _record_iterate(sink: AccessSink, obj: Any, frame: FrameType) -> None:
    bits = _container_kind(type(obj))
    if bits & C_ITER:
        sink.iterate(obj, frame)
    elif bits & C_VIEW:
        sink.iterate(obj.mapping, frame)


def _record_item(
    sink: AccessSink, container: Any, key: Any, bits: int, write: bool, frame: FrameType
) -> None:
    """Record a subscript access; ``key`` is already normalised or a slice."""
    if type(key) is slice:
        if not bits & C_INDEXED:
            return
        try:
            indices = range(*key.indices(len(container)))
        except Exception:
            return
        if write:
            for i in indices:
                sink.write_item(container, i, frame)
            sink.mutate(container, frame)
        else:
            for i in indices:
                sink.read_item(container, i, frame)
        return
    if key is None:
        return
    if write:
        sink.write_item(container, key, frame)
        sink.mutate(container, frame)
    else:
        sink.read_item(container, key, frame)


def _strip(exc: BaseException) -> None:
    """Drop the hook's own frame from a traceback it is about to re-raise with a bare
    ``raise`` (which adds no new entry), so the user sees only their frames."""
    tb = exc.__traceback__
    if tb is not None:
        exc.__traceback__ = tb.tb_next


class _ItemProxy(tuple):  # type: ignore[type-arg]
    """What ``__rc__.si(c)`` returns for a tracked container in a store/del/augmented
    target: forwards the subscript operation and records it.

    A ``(container, bits)`` tuple subclass, so making one runs no Python ``__init__``
    (one call less per store: on 3.11 every call is a profiler event)."""

    __slots__ = ()

    def __getitem__(self, key: Any) -> Any:
        c, bits = self
        loc = _norm_index(c, key) if bits & C_INDEXED and type(key) is not slice else key
        try:
            value = c[key]
        except BaseException as exc:
            _strip(exc)
            raise
        sink = _sink
        if sink is not None:
            _record_item(sink, c, loc, bits, False, _getframe(1))
        return value

    def __setitem__(self, key: Any, value: Any) -> None:
        c, bits = self
        if type(key) is slice:  # record the indices the slice covered before the store
            sink = _sink
            if sink is not None:
                _record_item(sink, c, key, bits, True, _getframe(1))
            try:
                c[key] = value
            except BaseException as exc:
                _strip(exc)
                raise
            return
        try:
            c[key] = value
        except BaseException as exc:
            _strip(exc)
            raise
        sink = _sink
        if sink is not None:
            if bits & C_INDEXED:
                key = _norm_index(c, key)  # after the store: it succeeded, so in range
            if key is None:
                return
            frame = _getframe(1)
            sink.write_item(c, key, frame)
            sink.mutate(c, frame)

    def __delitem__(self, key: Any) -> None:
        c, bits = self
        loc = _norm_index(c, key) if bits & C_INDEXED and type(key) is not slice else key
        sink = _sink
        if sink is not None and type(key) is slice:
            _record_item(sink, c, key, bits, True, _getframe(1))
        try:
            del c[key]
        except BaseException as exc:
            _strip(exc)
            raise
        if sink is not None and type(key) is not slice:
            _record_item(sink, c, loc, bits, True, _getframe(1))

    def __repr__(self) -> str:
        return repr(tuple.__getitem__(self, 0))


# Method names the rewriter routes through ``gm`` (a superset of what any tracked
# container has; ``gm`` checks the receiver's type at run time).
M_MUTATE = 1
M_ITERATE = 2
M_ARGS = 4  # also iterates each tracked-container argument
M_GET = 8  # dict.get(k): reads (d, k)
M_POP = 16  # pop(k)/pop(i)/pop(): writes that element too
M_SETDEFAULT = 32  # reads (d, k)
M_UPDATE = 64  # dict.update: writes each key it stores

CONTAINER_METHODS: dict[str, int] = {
    "append": M_MUTATE,
    "appendleft": M_MUTATE,
    "extend": M_MUTATE | M_ARGS,
    "extendleft": M_MUTATE | M_ARGS,
    "insert": M_MUTATE,
    "pop": M_MUTATE | M_POP,
    "popleft": M_MUTATE,
    "popitem": M_MUTATE,
    "remove": M_MUTATE,
    "clear": M_MUTATE,
    "update": M_MUTATE | M_ARGS | M_UPDATE,
    "setdefault": M_MUTATE | M_SETDEFAULT,
    "add": M_MUTATE,
    "discard": M_MUTATE,
    "sort": M_MUTATE,
    "reverse": M_MUTATE,
    "rotate": M_MUTATE,
    "difference_update": M_MUTATE | M_ARGS,
    "intersection_update": M_MUTATE | M_ARGS,
    "symmetric_difference_update": M_MUTATE | M_ARGS,
    "copy": M_ITERATE,
    "items": M_ITERATE,
    "keys": M_ITERATE,
    "values": M_ITERATE,
    "index": M_ITERATE,
    "count": M_ITERATE,
    "union": M_ITERATE | M_ARGS,
    "intersection": M_ITERATE | M_ARGS,
    "difference": M_ITERATE | M_ARGS,
    "symmetric_difference": M_ITERATE | M_ARGS,
    "issubset": M_ITERATE | M_ARGS,
    "issuperset": M_ITERATE | M_ARGS,
    "isdisjoint": M_ITERATE | M_ARGS,
    "get": M_GET,
    "join": M_ARGS,  # str.join(iterable) / bytes.join: iterates its argument
}
_JOINERS = (str, bytes, bytearray)


class _MethodRecorder(tuple):  # type: ignore[type-arg]
    """A tracked container's bound method that records what the call does to it.

    A ``(method, container, flags, bits)`` tuple subclass: ``lst.append(x)`` makes one
    per call, and a tuple subclass is built in C with no Python ``__init__`` (one call
    less on the hot path).  Equality, hash and other attributes are the bound method's."""

    __slots__ = ()

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        method, c, flags, bits = self
        loc: Any = None
        if flags & M_POP and bits & C_METHODS:
            if bits & C_INDEXED:
                loc = _norm_index(c, args[0] if args else -1) if len(c) else None
            elif args and type(c) is not set and not isinstance(c, set):
                loc = args[0]
        try:
            result = method(*args, **kwargs)
        except BaseException as exc:
            _strip(exc)
            raise
        sink = _sink
        if sink is not None:
            frame = _getframe(1)
            if flags & M_ARGS:
                for arg in args:
                    _record_iterate(sink, arg, frame)
            if bits & C_METHODS:
                if flags & M_MUTATE:
                    if loc is not None:
                        sink.write_item(c, loc, frame)
                    if flags & M_UPDATE:
                        _record_update(sink, c, args, kwargs, frame)
                    elif flags & M_SETDEFAULT and args:
                        sink.read_item(c, args[0], frame)
                    sink.mutate(c, frame)
                elif flags & M_ITERATE:
                    sink.iterate(c, frame)
                elif flags & M_GET and args:
                    sink.read_item(c, args[0], frame)
        return result

    def __getattr__(self, name: str) -> Any:
        return getattr(tuple.__getitem__(self, 0), name)

    def __eq__(self, other: object) -> bool:
        if type(other) is _MethodRecorder:
            other = tuple.__getitem__(other, 0)
        return bool(tuple.__getitem__(self, 0) == other)

    def __ne__(self, other: object) -> bool:
        return not self == other

    def __hash__(self) -> int:
        return hash(tuple.__getitem__(self, 0))

    def __repr__(self) -> str:
        return repr(tuple.__getitem__(self, 0))


class _MutationRecorder(_MethodRecorder):
    """The common case, a method that only mutates its container and takes no keyword
    arguments (``append``, ``add``...): ``(method, container)``, a leaner call."""

    __slots__ = ()

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        method, c = self
        try:
            result = method(*args, **kwargs)
        except BaseException as exc:
            _strip(exc)
            raise
        sink = _sink
        if sink is not None:
            sink.mutate(c, _getframe(1))
        return result


_PLAIN_MUTATORS = frozenset(
    name
    for name in ("append", "appendleft", "insert", "popleft", "popitem", "remove", "clear")
    + ("add", "discard", "reverse", "rotate")
)
"""Built-in container methods that mutate and nothing else, positional arguments only
(``sort`` takes keywords; ``pop``, ``update``, ``extend``... record more)."""


def _record_update(
    sink: AccessSink, c: Any, args: tuple[Any, ...], kwargs: dict[str, Any], frame: FrameType
) -> None:
    if not isinstance(c, dict):
        return
    if args and isinstance(args[0], dict):
        for key in list(args[0]):
            sink.write_item(c, key, frame)
    for key in kwargs:
        sink.write_item(c, key, frame)


# --------------------------------------------------------------------------------------
# Builtins called in rewritten code
# --------------------------------------------------------------------------------------

_CONSUMERS = frozenset(
    {
        list,
        tuple,
        set,
        frozenset,
        dict,
        sorted,
        sum,
        min,
        max,
        any,
        all,
        enumerate,
        zip,
        reversed,
        iter,
        map,
        filter,
        bytes,
        bytearray,
    }
)
_B_GETATTR = getattr
_B_SETATTR = setattr
_B_DELATTR = delattr
_B_HASATTR = hasattr
BUILTIN_NAMES = frozenset(
    {
        "list",
        "tuple",
        "set",
        "frozenset",
        "dict",
        "sorted",
        "sum",
        "min",
        "max",
        "any",
        "all",
        "enumerate",
        "zip",
        "reversed",
        "iter",
        "map",
        "filter",
        "bytes",
        "bytearray",
        "getattr",
        "setattr",
        "delattr",
        "hasattr",
    }
)
"""Names whose calls the rewriter routes through ``cb`` (when they are not shadowed)."""


# --------------------------------------------------------------------------------------
# The per-module hook object
# --------------------------------------------------------------------------------------


class CellScope:
    """One invocation of a function whose variables inner functions capture: closure
    cells are the locations ``(scope, name)``."""

    __slots__ = ("__weakref__", "function")

    def __init__(self, function: str) -> None:
        self.function = function

    def __repr__(self) -> str:
        return f"<closure scope of {self.function}>"


class Namespace:
    """Stands for a globals dict that belongs to no module (code exec'd into a plain
    dict): its globals are still one consistent location per name."""

    __slots__ = ("__weakref__", "name")

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"<namespace {self.name}>"


def _find_module(g: dict[str, Any]) -> object:
    name = g.get("__name__")
    mod = sys.modules.get(name) if isinstance(name, str) else None
    if mod is not None and getattr(mod, "__dict__", None) is g:
        return mod
    for candidate in sys.modules.copy().values():
        if getattr(candidate, "__dict__", None) is g:
            return candidate
    return Namespace(str(name))


class _HookMethods:
    """Every hook, in Python: the reference implementation.  :class:`PyModuleHooks` is
    exactly this; :class:`NativeModuleHooks` takes the hottest ones (``rd``, ``rd2``,
    ``sw``, ``aw``, globals, cells, ``gi``, ``it``, ``gm``, ``si``) from C (engine/_native_hooks.c), which defers
    back to these for every case it does not handle itself."""

    __slots__ = ()
    module: Any

    def __repr__(self) -> str:
        return f"<racecheck hooks for {self.module!r}>"

    # ---- attributes ------------------------------------------------------------------

    def rd(self, obj: Any, name: str) -> Any:
        """``obj.name`` (load): record the read, return ``obj`` for the native load."""
        sink = _sink
        if sink is not None:
            # Subscripts and literals only on the common path: every call (even id())
            # is a profiler event on 3.11, where raw-lock capture uses sys.setprofile.
            try:
                kind = _reads[name][id(type(obj))]
            except KeyError:
                kind = _decide_read(type(obj), name)
            if kind == 1:  # ACCESS
                sink.read_attr(obj, name, _getframe(1))
            elif kind:
                _read_slow(sink, obj, name, kind, _getframe(1))
        return obj

    def rd2(self, obj: Any, name: str) -> Any:
        """``obj.name`` (load) immediately followed by a second identical load whose
        hook the rewriter elided (``p.vx * p.vx``, see the rewrite module docstring):
        records the read, performs the first load itself and returns its *value*.  When
        that load may have run Python code (a descriptor's ``__get__``, ``__getattr__``,
        a class or module attribute), the second read is recorded here, after the load,
        exactly when its own hook would have run; otherwise it would be a same-epoch
        repeat of the first (nothing between them can synchronise) and is not."""
        sink = _sink
        if sink is None:
            try:
                return _B_GETATTR(obj, name)
            except BaseException as exc:
                _strip(exc)
                raise
        key = id(type(obj))
        try:
            kind = _reads[name][key]
        except KeyError:
            kind = _decide_read(type(obj), name)
        if kind == 1:  # ACCESS
            sink.read_attr(obj, name, _getframe(1))
        elif kind:
            _read_slow(sink, obj, name, kind, _getframe(1))
        try:
            value = _B_GETATTR(obj, name)
        except BaseException as exc:
            _strip(exc)
            raise
        if kind == 1:
            try:
                pure = _pure[name][key]
            except KeyError:
                pure = _decide_pure(type(obj), name)
            if pure:
                return value
        sink = _sink  # the second read, as its own ``rd`` would have recorded it
        if sink is not None:
            try:
                kind = _reads[name][id(type(obj))]
            except KeyError:
                kind = _decide_read(type(obj), name)
            if kind == 1:
                sink.read_attr(obj, name, _getframe(1))
            elif kind:
                _read_slow(sink, obj, name, kind, _getframe(1))
        return value

    def sw(self, obj: Any, name: str) -> Any:
        """``obj.name = v`` target: record the write, return ``obj`` for the native store."""
        sink = _sink
        if sink is not None:
            try:
                kind = _writes[name][id(type(obj))]
            except KeyError:
                kind = _decide_write(type(obj), name, _writes, "__setattr__")
            if kind == 1:  # ACCESS
                sink.write_attr(obj, name, _getframe(1))
            elif kind:
                _write_slow(sink, obj, name, kind, _getframe(1))
        return obj

    def sd(self, obj: Any, name: str) -> Any:
        """``del obj.name`` target."""
        sink = _sink
        if sink is not None:
            _record_delete(sink, obj, name, _getframe(1))
        return obj

    def aw(self, obj: Any, name: str) -> Any:
        """``obj.name op= v`` target: a read then a write (one type id, one frame)."""
        sink = _sink
        if sink is not None:
            key = id(type(obj))
            try:
                rkind = _reads[name][key]
            except KeyError:
                rkind = _decide_read(type(obj), name)
            try:
                wkind = _writes[name][key]
            except KeyError:
                wkind = _decide_write(type(obj), name, _writes, "__setattr__")
            frame = _getframe(1)
            if rkind == 1:  # ACCESS
                sink.read_attr(obj, name, frame)
            elif rkind:
                _read_slow(sink, obj, name, rkind, frame)
            if wkind == 1:
                sink.write_attr(obj, name, frame)
            elif wkind:
                _write_slow(sink, obj, name, wkind, frame)
        return obj

    def gm(self, obj: Any, name: str) -> Any:
        """``obj.name`` where ``name`` is a container method name: the attribute value,
        wrapped to record the call when ``obj`` is a built-in container."""
        try:
            value = _B_GETATTR(obj, name)
        except BaseException as exc:
            _strip(exc)
            raise
        sink = _sink
        if sink is None:
            return value
        tp = type(obj)
        bits = _EXACT[tp] if tp in _EXACT else _container_kind(tp)
        if bits & C_METHODS:
            if name in _PLAIN_MUTATORS:
                return _MutationRecorder((value, obj))
            return _MethodRecorder((value, obj, CONTAINER_METHODS[name], bits))
        if name == "join" and isinstance(obj, _JOINERS):
            return _MethodRecorder((value, obj, CONTAINER_METHODS[name], bits))
        if not bits:
            _record_read(sink, obj, name, _getframe(1))
        return value

    # ---- subscripts --------------------------------------------------------------------

    def gi(self, c: Any, key: Any) -> Any:
        """``c[key]`` (load).  Recorded before the load: a read that raises KeyError
        because an unordered ``del`` won the race is still a read of that key."""
        sink = _sink
        if sink is not None:
            tp = type(c)
            bits = _EXACT[tp] if tp in _EXACT else _container_kind(tp)
            if bits & C_ITEMS:
                if type(key) is slice:
                    _record_item(sink, c, key, bits, False, _getframe(1))
                elif not bits & C_INDEXED:
                    if key is not None:  # None is _record_item's "no location" (as before)
                        sink.read_item(c, key, _getframe(1))
                else:
                    rkey = _norm_index(c, key)
                    if rkey is not None:
                        sink.read_item(c, rkey, _getframe(1))
        try:
            return c[key]
        except BaseException as exc:
            _strip(exc)
            raise

    def gsl(self, c: Any, lower: Any, upper: Any, step: Any) -> Any:
        """``c[lower:upper:step]`` (load)."""
        key = slice(lower, upper, step)
        try:
            value = c[key]
        except BaseException as exc:
            _strip(exc)
            raise
        sink = _sink
        if sink is not None:
            bits = _container_kind(type(c))
            if bits & C_ITEMS:
                _record_item(sink, c, key, bits, False, _getframe(1))
        return value

    def si(self, c: Any) -> Any:
        """Subscript store/del/augmented target: a recording proxy for a tracked
        container, the container itself otherwise."""
        if _sink is None:
            return c
        tp = type(c)
        bits = _EXACT[tp] if tp in _EXACT else _container_kind(tp)
        if bits & C_ITEMS:
            return _ItemProxy((c, bits))
        return c

    # ---- iteration ---------------------------------------------------------------------

    def it(self, c: Any) -> Any:
        """An iterable about to be iterated (for, comprehension, unpacking, ``*c``)."""
        sink = _sink
        if sink is not None:
            tp = type(c)
            bits = _EXACT[tp] if tp in _EXACT else _container_kind(tp)
            if bits & C_ITER:
                sink.iterate(c, _getframe(1))
            elif bits & C_VIEW:
                sink.iterate(c.mapping, _getframe(1))
        return c

    def isin(self, x: Any, c: Any) -> bool:
        """``x in c``: iterates a list/deque; reads ``(d, x)`` for a dict."""
        try:
            result = x in c
        except BaseException as exc:
            _strip(exc)
            raise
        sink = _sink
        if sink is not None:
            self._record_in(sink, x, c)
        return result

    def notin(self, x: Any, c: Any) -> bool:
        try:
            result = x not in c
        except BaseException as exc:
            _strip(exc)
            raise
        sink = _sink
        if sink is not None:
            self._record_in(sink, x, c)
        return result

    @staticmethod
    def _record_in(sink: AccessSink, x: Any, c: Any) -> None:
        bits = _container_kind(type(c))
        if bits & C_INDEXED and bits & C_ITER:
            sink.iterate(c, _getframe(2))
        elif bits & C_ITEMS:  # a dict
            try:
                hash(x)
            except Exception:
                return
            sink.read_item(c, x, _getframe(2))

    def cb(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """A call of a builtin consumer or of getattr/setattr/delattr/hasattr by name
        (``fn`` is whatever that name resolved to; a shadowing function is just called)."""
        sink = _sink
        if sink is not None:
            frame = _getframe(1)
            if fn in _CONSUMERS:
                for arg in args:
                    _record_iterate(sink, arg, frame)
            elif args[1:] and type(args[1]) is str:
                if fn is _B_GETATTR or fn is _B_HASATTR:
                    _record_read(sink, args[0], args[1], frame)
                elif fn is _B_SETATTR:
                    _record_write(sink, args[0], args[1], frame)
                elif fn is _B_DELATTR:
                    _record_delete(sink, args[0], args[1], frame)
        try:
            return fn(*args, **kwargs)
        except BaseException as exc:
            _strip(exc)
            raise

    # ---- globals (location: (module, name)) --------------------------------------------

    def rg(self, value: Any, name: str) -> Any:
        """A global read: ``value`` was loaded natively."""
        sink = _sink
        if sink is not None:
            sink.read_attr(self.module, name, _getframe(1))
        return value

    def rgn(self, name: str) -> None:
        """The read half of ``x op= v`` on a global (a statement before it)."""
        sink = _sink
        if sink is not None:
            sink.read_attr(self.module, name, _getframe(1))

    def wg(self, name: str) -> None:
        """A global was just bound or deleted (a statement after the binding)."""
        sink = _sink
        if sink is not None:
            sink.write_attr(self.module, name, _getframe(1))

    def wgv(self, value: Any, name: str) -> Any:
        """``(x := v)`` binding a global."""
        sink = _sink
        if sink is not None:
            sink.write_attr(self.module, name, _getframe(1))
        return value

    # ---- closure cells (location: (CellScope, name)) ----------------------------------

    def scope(self) -> CellScope:
        """At entry of a function whose variables inner functions capture."""
        return CellScope(_getframe(1).f_code.co_qualname)

    def rc(self, value: Any, scope: Any, name: str) -> Any:
        sink = _sink
        if sink is not None:
            sink.read_attr(scope, name, _getframe(1))
        return value

    def rcn(self, scope: Any, name: str) -> None:
        sink = _sink
        if sink is not None:
            sink.read_attr(scope, name, _getframe(1))

    def wc(self, scope: Any, name: str) -> None:
        sink = _sink
        if sink is not None:
            sink.write_attr(scope, name, _getframe(1))

    def wcv(self, value: Any, scope: Any, name: str) -> Any:
        sink = _sink
        if sink is not None:
            sink.write_attr(scope, name, _getframe(1))
        return value

    def lc(self, obj: Any, name: str) -> Any:
        """``obj.name(...)`` where ``name`` is a lock method name (:data:`LOCK_METHODS`):
        the callable the rewritten code calls.

        A raw ``_thread.lock``/``_thread.RLock`` (exact type: made before racecheck
        started, or by ``_thread.allocate_lock()``) gets a :class:`_RawLockCall` that
        performs the real call and reports the lock's edges around it, so explicit
        ``acquire()``/``release()`` in instrumented code need no profiler.  Anything else
        gets its attribute exactly as ``obj.name`` would: the read is recorded as ``rd``
        records it, then the attribute is loaded."""
        if type(obj) in _RAW_LOCK_TYPES:
            try:
                method = _B_GETATTR(obj, name)  # acquire_lock is gone on 3.13: same error
            except BaseException as exc:
                _strip(exc)
                raise
            return _RawLockCall((method, obj, name))
        sink = _sink
        if sink is not None:
            try:
                kind = _reads[name][id(type(obj))]
            except KeyError:
                kind = _decide_read(type(obj), name)
            if kind == 1:  # ACCESS
                sink.read_attr(obj, name, _getframe(1))
            elif kind:
                _read_slow(sink, obj, name, kind, _getframe(1))
        try:
            return _B_GETATTR(obj, name)
        except BaseException as exc:
            _strip(exc)
            raise

    # ---- with ----------------------------------------------------------------------------

    def wi(self, obj: Any) -> Any:
        """A ``with`` item: raw locks get a wrapper that reports their edges."""
        wrap = _wrap_with
        if wrap is None:
            wrap = _resolve_wrap_with()
        return wrap(obj)


class PyModuleHooks(_HookMethods):
    """``__rc__`` in a rewritten module, all in Python.  Creating one with no argument
    binds it to the caller's globals."""

    __slots__ = ("module", "__weakref__")

    def __init__(self, module: object | None = None) -> None:
        if module is None:
            module = _find_module(_getframe(1).f_globals)
        self.module = module


def _decide(op: int, tp: type, name: str, fresh: bool = True) -> int:
    """The decision for ``(tp, name)`` and op 0 read / 1 write / 2 delete / 3 "pure
    load" (``rd2``), for the C hooks.  ``fresh``: their own cache, keyed by the class's
    version tag, missed for the class as it is now, so it is decided anew (a class
    changed by uninstrumented code since is decided again; the Python tables, which only
    instrumented writes invalidate, could still hold the old answer).  Not fresh: the
    class has no version tag (CPython stops issuing them to a class modified ~1000
    times), so the C hooks ask on every access and the Python tables answer first."""
    table = _reads if op == 0 else _writes if op == 1 else _dels if op == 2 else _pure
    if not fresh:
        try:
            return table[name][id(tp)]
        except KeyError:
            pass
    if op == 0:
        return _decide_read(tp, name)
    if op == 3:
        return _decide_pure(tp, name)
    return _decide_write(tp, name, table, "__setattr__" if op == 1 else "__delattr__")


def _attr_slow(op: int, sink: AccessSink, obj: Any, name: str, kind: int, frame: Any) -> None:
    """The C hooks' way into the module, class and ``__getattr__`` kinds."""
    if op == 0:
        _read_slow(sink, obj, name, kind, frame)
    else:
        _write_slow(sink, obj, name, kind, frame)


def _load_native() -> Any:
    """The native module when the native hooks should run: built, and not
    ``RACECHECK_CORE=python`` (which selects the pure-Python reference everywhere)."""
    import os

    if os.environ.get("RACECHECK_CORE", "").strip().lower() == "python":
        return None
    try:
        from racecheck.engine import _native  # type: ignore[attr-defined]
    except ImportError:
        return None
    return _native


_native = _load_native()
ModuleHooks: type[_HookMethods]
"""What rewritten modules instantiate as ``__rc__``: the native hooks when available."""

if _native is not None:

    class NativeModuleHooks(_native.Hooks, _HookMethods):  # type: ignore[misc, name-defined]
        """``__rc__`` with its hottest hooks in C (see :class:`_HookMethods`)."""

        __slots__ = ()

        def __init__(self, module: object | None = None) -> None:
            if module is None:
                module = _find_module(_getframe(1).f_globals)
            self.module = module

    _native.hooks_configure(
        _decide,
        _attr_slow,
        _HookMethods.gi,
        _HookMethods.it,
        _HookMethods.gm,
        _HookMethods.si,
        CONTAINER_METHODS,
        deque,
    )
    ModuleHooks = NativeModuleHooks
else:
    ModuleHooks = PyModuleHooks


def _identity(obj: Any) -> Any:
    return obj


_wrap_with: Callable[[Any], Any] | None = None


def _resolve_wrap_with() -> Callable[[Any], Any]:
    """Import ``racecheck.instrument.stdlib.wrap_with`` on first use; identity when that
    module is not there."""
    global _wrap_with
    try:
        from racecheck.instrument.stdlib import wrap_with
    except ImportError:
        wrap_with = _identity
    _wrap_with = wrap_with
    return wrap_with


# --------------------------------------------------------------------------------------
# Explicit calls of raw lock methods
# --------------------------------------------------------------------------------------

LOCK_METHODS = frozenset(
    {"acquire", "acquire_lock", "release", "release_lock", "__enter__", "__exit__"}
)
"""Method names whose calls (``x.acquire(...)``) the rewriter routes through ``lc``; the
same names the sync backends watch (``backends.base.LOCK_METHOD_NAMES``)."""

_RAW_LOCK_TYPES: tuple[type, ...] = (_thread.LockType, _thread.RLock)
"""``stdlib_common.RAW_LOCK_TYPES``, spelled without importing it (and ``threading``)
into every rewritten module."""

_ACQUIRES = frozenset({"acquire", "acquire_lock", "__enter__"})
_RELEASES = frozenset({"release", "release_lock", "__exit__"})


class _RawLockCall(tuple):  # type: ignore[type-arg]
    """``raw_lock.name`` as returned by ``lc``: calling it performs the real call and
    reports the edges the sync backends would (``backends.base``): ``before_call``
    (publish the lock's token, lock-order release) before a release or ``__exit__``;
    after an acquire, ``raw_acquired`` (consume the token, lock-order acquire).

    The acquire side is more exact than a backend can be: the call's own result says
    whether the lock was taken (a failed ``acquire(False)`` or timed-out acquire adds no
    edge, even while another thread holds the lock), and the ``blocking`` argument goes
    to the lock-order graph, where a try-lock can close no cycle.  ``__enter__`` counts
    as the blocking acquire it is (the backends cannot see it).

    The real call is made from this frame, in racecheck's own file, so a running
    backend ignores it: the edges are not reported twice.  A ``(method, lock, name)``
    tuple subclass: built in C, no Python ``__init__``, keeps nothing alive beyond the
    call expression."""

    __slots__ = ()

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        method, lock, name = self
        edges = _lock_edges
        if edges is None:
            edges = _resolve_lock_edges()
        before_call, raw_acquired = edges
        if name in _RELEASES:
            before_call(lock, name)
        try:
            result = method(*args, **kwargs)
        except BaseException as exc:
            _strip(exc)
            raise
        if result and name in _ACQUIRES:
            if name == "__enter__":
                blocking = True
            elif args:
                blocking = bool(args[0])
            else:
                blocking = bool(kwargs.get("blocking", True))
            raw_acquired(lock, blocking, 1)
        return result

    def __getattr__(self, name: str) -> Any:
        return getattr(tuple.__getitem__(self, 0), name)

    def __eq__(self, other: object) -> bool:
        if type(other) is _RawLockCall:
            other = tuple.__getitem__(other, 0)
        return bool(tuple.__getitem__(self, 0) == other)

    def __ne__(self, other: object) -> bool:
        return not self == other

    def __hash__(self) -> int:
        return hash(tuple.__getitem__(self, 0))

    def __repr__(self) -> str:
        return repr(tuple.__getitem__(self, 0))


_lock_edges: _LockEdges | None = None


def _resolve_lock_edges() -> _LockEdges:
    """Import the backends' edge functions on first use: ``hooks`` is imported by every
    rewritten module and must stay light.  A racing first use imports twice and stores
    the same functions; a single reference store publishes them."""
    global _lock_edges
    from racecheck.instrument.backends.base import before_call
    from racecheck.instrument.stdlib_sync import raw_acquired

    _lock_edges = (before_call, raw_acquired)
    return _lock_edges
