"""The AST rewrite that makes user code report its memory accesses.

Every access racecheck understands becomes a call to a hook on ``__rc__``, the single
name added to a rewritten module (a :class:`racecheck.instrument.hooks.ModuleHooks`).
The user's operation still runs natively wherever the syntax allows, so semantics,
descriptors and error messages are unchanged:

====================================  =================================================
source                                rewritten
====================================  =================================================
``o.x`` (load)                        ``__rc__.rd(o, 'x').x``
``o.x = v`` / ``del o.x``             ``__rc__.sw(o, 'x').x = v`` / ``__rc__.sd(...)``
``o.x += v``                          ``__rc__.aw(o, 'x').x += v`` (read, then write)
``o.append`` (container method name)  ``__rc__.gm(o, 'append')`` (records the call)
``c[k]`` / ``c[a:b]``                 ``__rc__.gi(c, k)`` / ``__rc__.gsl(c, a, b, None)``
``c[k] = v`` / ``del c[k]`` / ``+=``  ``__rc__.si(c)[k] = v`` (a recording proxy)
``for x in c`` / comprehension /      ``for x in __rc__.it(c)``: iterate(c)
``a, b = c`` / ``f(*c)`` / ``**c``
``x in c``                            ``__rc__.isin(x, c)``
``list(c)``, ``sorted``, ``getattr``  ``__rc__.cb(list, c)`` (checks the builtin at run
...                                   time; a shadowing function is just called)
global ``g`` (load)                   ``__rc__.rg(g, 'g')``; a binding is followed by
                                      ``__rc__.wg('g')``; ``g += 1`` is bracketed
closure cell ``x``                    ``__rc__.rc(x, _rc_cells_N, 'x')`` / ``wc``
``with X:``                           ``with __rc__.wi(X):`` (raw locks get edges)
``X.acquire(...)``, ``X.release()``,  ``__rc__.lc(X, 'acquire')(...)``: a raw lock's
``acquire_lock``, ``release_lock``,   call reports its edges (no profiler needed);
``__enter__``, ``__exit__`` calls     any other ``X`` gets ``X.acquire`` as before
====================================  =================================================

The memory model this implements (what counts as an access):

* Attributes: location ``(obj, name)``; module attributes are globals of that module and
  class attributes ``(Cls, name)`` (the class along the MRO that holds the name).  Never
  an access: attributes resolving to a data descriptor (property etc.; ``__slots__``
  members are accesses), classes overriding ``__getattribute__`` (reads),
  ``__setattr__`` (writes), ``__delattr__`` (deletes), ``__getattr__`` misses,
  ``threading.local`` instances, racecheck's own objects, modules' dunder names, builtin
  (immutable) classes and instances with no ``__dict__`` (nothing can be written there).
* Globals: only names the module itself assigns (other than by ``def``/``class``/
  ``import`` alone) or declares ``global`` somewhere.  A name bound only by ``def``,
  ``class`` or ``import`` at module level is treated as a constant: reading it (every
  call of a module-level function!) is not recorded, so monkeypatching it from another
  module while threads run is not seen.  Dunder globals are never accesses.
* Closure cells: a function whose variables are captured by inner functions (``def`` or
  ``lambda``) creates a hidden local ``_rc_cells_N`` (N = its ``def`` nesting depth) at
  entry, one scope object per invocation; every access to such a variable, in the
  function or in the inner functions, is ``(scope, name)``.  Variables defined by a
  lambda or a comprehension and captured from there are not tracked.
* Subscripts, iteration, container methods: see ``racecheck.instrument.hooks``.
* Locals are never accesses.  Annotations, ``type`` statements and type parameters,
  match patterns (class patterns read attributes natively), and code run through
  ``exec``/``eval`` of strings are not instrumented (documented blind spots), nor is
  anything inside uninstrumented modules (C code iterating a list, ``json.dumps``...).

Elisions (an access that is not reported because reporting it provably changes no verdict):

* ``p.x OP p.x``: the two operands of one binary operation, both ``name.attr`` loads of
  the same attribute through the same function-local variable, on one line.  The left
  becomes ``__rc__.rd2(p, 'x')``, which records the read, performs the load and returns
  the value; the right stays a native load with no hook.  Why it is sound: nothing is
  evaluated between the two loads (operands are evaluated back to back, the operator
  runs after both), ``p`` is a fast local no other frame or thread can rebind, so the
  second read is of the same location by the same thread.  If the first load can run no
  Python code (generic ``__getattribute__``, no ``__getattr__``, the class attribute is
  absent, not a descriptor, or a C-implemented one: decided per type and cached), no
  synchronisation can happen between the two reads, the thread's epoch is unchanged and
  the engine would treat the second read as a same-epoch repeat of the first (a
  concurrent write in between is reported against the first read, at the same line).
  If the first load may run Python code (a Python ``__get__``, ``__getattr__``, class or
  module attributes), ``rd2`` records the second read itself right after the load,
  exactly where its own hook would have run.  The assumption is the hooks' usual one:
  asynchronous code (signal handlers, finalizers run by the garbage collector) does not
  synchronise between an access and its record; and attribute names are plain strings.
  Not elided: anything with an intervening evaluation (``p.x * k * p.x``), receivers
  that are globals, cells or expressions, and class or module scopes (their namespace
  can be a user mapping).

Line numbers and column offsets of every node are kept (new nodes copy the location of
the node they replace), the docstring stays first and ``from __future__`` imports stay
before the hooks import.
"""

from __future__ import annotations

import ast
from types import CodeType
from typing import Any

from racecheck.instrument.hooks import BUILTIN_NAMES, CONTAINER_METHODS, LOCK_METHODS

HOOKS = "__rc__"
CELLS = "_rc_cells_"

_FUNCTION = "function"
_LAMBDA = "lambda"
_CLASS = "class"
_COMP = "comprehension"
_MODULE = "module"


class _Scope:
    __slots__ = ("kind", "parent", "bound", "global_decl", "nonlocal_decl", "cells", "depth")

    def __init__(self, kind: str, parent: _Scope | None, depth: int) -> None:
        self.kind = kind
        self.parent = parent
        self.bound: set[str] = set()
        self.global_decl: set[str] = set()
        self.nonlocal_decl: set[str] = set()
        self.cells: set[str] = set()
        self.depth = depth


# Resolution results.
LOCAL = "local"
GLOBAL = "global"
CELL = "cell"


def _resolve(scope: _Scope, name: str, marking: bool) -> tuple[str, _Scope | None]:
    """Where ``name`` used in ``scope`` lives.  With ``marking``, a free variable found
    across a ``def``/``lambda`` boundary marks its defining function's cell set; without,
    only already-marked cells resolve as CELL."""
    if scope.kind == _MODULE or name in scope.global_decl:
        return GLOBAL, None
    if name in scope.nonlocal_decl:
        crossed = True
    elif name in scope.bound:
        if scope.kind == _FUNCTION and name in scope.cells:
            return CELL, scope
        return LOCAL, None
    else:
        crossed = scope.kind in (_FUNCTION, _LAMBDA)
    outer = scope.parent
    while outer is not None and outer.kind != _MODULE:
        if outer.kind == _CLASS:  # class namespaces are invisible to nested scopes
            outer = outer.parent
            continue
        if name in outer.global_decl:
            return GLOBAL, None
        if name in outer.bound and name not in outer.nonlocal_decl:
            if outer.kind == _FUNCTION:
                if marking and crossed:
                    outer.cells.add(name)
                if name in outer.cells:
                    return CELL, outer
            return LOCAL, None
        if outer.kind in (_FUNCTION, _LAMBDA):
            crossed = True
        outer = outer.parent
    return GLOBAL, None


def _target_names(target: ast.AST) -> list[str]:
    """Names bound by an assignment target (not those inside attribute/subscript bases)."""
    if isinstance(target, ast.Name):
        return [target.id]
    if isinstance(target, (ast.Tuple, ast.List)):
        return [n for elt in target.elts for n in _target_names(elt)]
    if isinstance(target, ast.Starred):
        return _target_names(target.value)
    return []


def _import_names(node: ast.Import | ast.ImportFrom) -> list[str]:
    return [alias.asname or alias.name.split(".")[0] for alias in node.names if alias.name != "*"]


def _is_dunder(name: str) -> bool:
    return len(name) > 4 and name[:2] == "__" and name[-2:] == "__"


def _mangle(name: str, classname: str | None) -> str:
    """What the compiler turns a private name into inside class ``classname``."""
    if (
        classname is None
        or not name.startswith("__")
        or name.endswith("__")
        or "." in name
        or not classname.strip("_")
    ):
        return name
    return f"_{classname.lstrip('_')}{name}"


class _ScopeBuilder(ast.NodeVisitor):
    """First pass: every scope's bindings and declarations, then the closure cells."""

    def __init__(self) -> None:
        self.scopes: dict[ast.AST, _Scope] = {}
        self.refs: list[tuple[_Scope, str]] = []
        self.module_other: set[str] = set()
        self.all_global_decls: set[str] = set()
        self.module: _Scope = _Scope(_MODULE, None, 0)
        self.stack: list[_Scope] = [self.module]

    @property
    def cur(self) -> _Scope:
        return self.stack[-1]

    def bind(self, name: str, other: bool = True, scope: _Scope | None = None) -> None:
        scope = scope or self.cur
        scope.bound.add(name)
        self.refs.append((scope, name))
        if scope.kind == _MODULE and other:
            self.module_other.add(name)

    def _enter(self, node: ast.AST, kind: str) -> _Scope:
        parent = self.cur
        depth = parent.depth + 1 if kind == _FUNCTION else parent.depth
        scope = _Scope(kind, parent, depth)
        self.scopes[node] = scope
        self.stack.append(scope)
        return scope

    def build(self, tree: ast.Module) -> None:
        self.scopes[tree] = self.module
        for stmt in tree.body:
            self.visit(stmt)
        for scope, name in self.refs:
            _resolve(scope, name, marking=True)

    def _visit_list(self, nodes: list[Any]) -> None:
        for n in nodes:
            if n is not None:
                self.visit(n)

    def _bind_params(self, args: ast.arguments) -> None:
        for a in (*args.posonlyargs, *args.args, *args.kwonlyargs):
            self.cur.bound.add(a.arg)
        for star in (args.vararg, args.kwarg):
            if star is not None:
                self.cur.bound.add(star.arg)

    def visit_FunctionDef(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        self.bind(node.name, other=False)
        self._visit_list(node.decorator_list)
        self._visit_list(node.args.defaults)
        self._visit_list(node.args.kw_defaults)
        self._enter(node, _FUNCTION)
        self._bind_params(node.args)
        self._visit_list(node.body)
        self.stack.pop()

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_Lambda(self, node: ast.Lambda) -> None:
        self._visit_list(node.args.defaults)
        self._visit_list(node.args.kw_defaults)
        self._enter(node, _LAMBDA)
        self._bind_params(node.args)
        self.visit(node.body)
        self.stack.pop()

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        self.bind(node.name, other=False)
        self._visit_list(node.decorator_list)
        self._visit_list(node.bases)
        self._visit_list(node.keywords)
        self._enter(node, _CLASS)
        self._visit_list(node.body)
        self.stack.pop()

    def _visit_comp(self, node: Any, parts: list[ast.AST]) -> None:
        gens: list[ast.comprehension] = node.generators
        self.visit(gens[0].iter)
        self._enter(node, _COMP)
        for i, gen in enumerate(gens):
            self.visit(gen.target)
            if i:
                self.visit(gen.iter)
            self._visit_list(gen.ifs)
        self._visit_list(parts)
        self.stack.pop()

    def visit_ListComp(self, node: ast.ListComp | ast.SetComp | ast.GeneratorExp) -> None:
        self._visit_comp(node, [node.elt])

    visit_SetComp = visit_ListComp
    visit_GeneratorExp = visit_ListComp

    def visit_DictComp(self, node: ast.DictComp) -> None:
        self._visit_comp(node, [node.key, node.value])

    def visit_Name(self, node: ast.Name) -> None:
        if isinstance(node.ctx, ast.Load):
            self.refs.append((self.cur, node.id))
        else:
            self.bind(node.id)

    def visit_NamedExpr(self, node: ast.NamedExpr) -> None:
        self.visit(node.value)
        scope = self.cur
        while scope.kind == _COMP and scope.parent is not None:
            scope = scope.parent
        self.bind(node.target.id, scope=scope)

    def visit_Global(self, node: ast.Global) -> None:
        self.cur.global_decl.update(node.names)
        self.all_global_decls.update(node.names)

    def visit_Nonlocal(self, node: ast.Nonlocal) -> None:
        self.cur.nonlocal_decl.update(node.names)
        for name in node.names:
            self.refs.append((self.cur, name))

    def visit_Import(self, node: ast.Import | ast.ImportFrom) -> None:
        for name in _import_names(node):
            self.bind(name, other=False)

    visit_ImportFrom = visit_Import

    def visit_ExceptHandler(self, node: ast.ExceptHandler) -> None:
        if node.name:
            self.bind(node.name)
        self.generic_visit(node)

    def visit_MatchAs(self, node: ast.MatchAs) -> None:
        if node.name:
            self.bind(node.name)
        self.generic_visit(node)

    def visit_MatchStar(self, node: ast.MatchStar) -> None:
        if node.name:
            self.bind(node.name)

    def visit_MatchMapping(self, node: ast.MatchMapping) -> None:
        if node.rest:
            self.bind(node.rest)
        self.generic_visit(node)

    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:
        if node.value is not None:
            self.visit(node.target)
            self.visit(node.value)
        elif isinstance(node.target, ast.Name):  # ``x: int`` makes x local, binds nothing
            self.cur.bound.add(node.target.id)

    def visit_arg(self, node: ast.arg) -> None:  # annotations are not instrumented
        pass

    def visit_TypeAlias(self, node: Any) -> None:  # 3.12+: ``type X = ...``
        self.bind(node.name.id)


class _Rewriter(ast.NodeTransformer):
    """Second pass: replace accesses with hook calls."""

    def __init__(self, builder: _ScopeBuilder) -> None:
        self.scopes = builder.scopes
        self.module_bound = builder.module.bound | builder.all_global_decls
        self.tracked = {
            n for n in builder.module_other | builder.all_global_decls if not _is_dunder(n)
        }
        self.stack: list[_Scope] = [builder.module]
        self.classes: list[str | None] = [None]

    # ---- helpers -----------------------------------------------------------------------

    @property
    def cur(self) -> _Scope:
        return self.stack[-1]

    def mangle(self, name: str) -> str:
        return _mangle(name, self.classes[-1])

    def hook(self, method: str, args: list[ast.expr], like: ast.AST) -> ast.Call:
        func = ast.Attribute(value=ast.Name(id=HOOKS, ctx=ast.Load()), attr=method, ctx=ast.Load())
        call = ast.Call(func=func, args=args, keywords=[])
        for n in (func.value, func, call):
            ast.copy_location(n, like)
        return call

    def const(self, value: Any, like: ast.AST) -> ast.Constant:
        return ast.copy_location(ast.Constant(value=value), like)

    def cells_name(self, scope: _Scope, like: ast.AST) -> ast.Name:
        return ast.copy_location(ast.Name(id=f"{CELLS}{scope.depth}", ctx=ast.Load()), like)

    def classify(self, name: str, scope: _Scope | None = None) -> tuple[str, _Scope | None]:
        if name == "__class__" or name == HOOKS or name.startswith(CELLS):
            return LOCAL, None
        where, owner = _resolve(scope or self.cur, name, marking=False)
        if where == GLOBAL and name not in self.tracked:
            return LOCAL, None
        return where, owner

    def stmt(self, call: ast.Call, like: ast.AST) -> ast.Expr:
        return ast.copy_location(ast.Expr(value=call), like)

    def write_records(self, names: list[str], like: ast.AST) -> list[ast.stmt]:
        out: list[ast.stmt] = []
        for name in names:
            where, owner = self.classify(name)
            key = self.const(self.mangle(name), like)
            if where == GLOBAL:
                out.append(self.stmt(self.hook("wg", [key], like), like))
            elif where == CELL and owner is not None:
                out.append(
                    self.stmt(self.hook("wc", [self.cells_name(owner, like), key], like), like)
                )
        return out

    def visit_list(self, nodes: list[Any]) -> list[Any]:
        out: list[Any] = []
        for n in nodes:
            if n is None:
                out.append(None)
                continue
            r = self.visit(n)
            if isinstance(r, list):
                out.extend(r)
            elif r is not None:
                out.append(r)
        return out

    def body(self, stmts: list[ast.stmt], prefix: list[ast.stmt] = ()) -> list[ast.stmt]:  # type: ignore[assignment]
        return [*prefix, *self.visit_list(stmts)]

    # ---- module ------------------------------------------------------------------------

    def rewrite(self, tree: ast.Module) -> ast.Module:
        body = self.visit_list(tree.body)
        insert_at = 0
        if (
            body
            and isinstance(body[0], ast.Expr)
            and isinstance(body[0].value, ast.Constant)
            and isinstance(body[0].value.value, str)
        ):
            insert_at = 1
        while (
            insert_at < len(body)
            and isinstance(body[insert_at], ast.ImportFrom)
            and body[insert_at].module == "__future__"
        ):
            insert_at += 1
        like = body[insert_at - 1] if insert_at else (body[0] if body else tree)
        line = getattr(like, "lineno", 1)
        loc: dict[str, Any] = {
            "lineno": line,
            "col_offset": 0,
            "end_lineno": line,
            "end_col_offset": 0,
        }
        # ``__rc__ = __import__("racecheck.instrument.hooks", None, None,
        # ("ModuleHooks",)).ModuleHooks()``: bound by an assignment, not an import
        # statement, because CPython 3.12+ compiles ``x.m(...)`` as a plain attribute
        # load plus call (a bound method allocated per call) when ``x`` was bound by an
        # import, and every hook call is ``__rc__.m(...)``.
        hooks_module = ast.Call(
            func=ast.Name(id="__import__", ctx=ast.Load(), **loc),
            args=[
                ast.Constant(value="racecheck.instrument.hooks", **loc),
                ast.Constant(value=None, **loc),
                ast.Constant(value=None, **loc),
                ast.Tuple(elts=[ast.Constant(value="ModuleHooks", **loc)], ctx=ast.Load(), **loc),
            ],
            keywords=[],
            **loc,
        )
        prologue: list[ast.stmt] = [
            ast.Assign(
                targets=[ast.Name(id=HOOKS, ctx=ast.Store(), **loc)],
                value=ast.Call(
                    func=ast.Attribute(
                        value=hooks_module, attr="ModuleHooks", ctx=ast.Load(), **loc
                    ),
                    args=[],
                    keywords=[],
                    **loc,
                ),
                **loc,
            ),
        ]
        tree.body = [*body[:insert_at], *prologue, *body[insert_at:]]
        return ast.fix_missing_locations(tree)

    # ---- scopes ------------------------------------------------------------------------

    def visit_FunctionDef(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> Any:
        node.decorator_list = self.visit_list(node.decorator_list)
        node.args.defaults = self.visit_list(node.args.defaults)
        node.args.kw_defaults = self.visit_list(node.args.kw_defaults)
        scope = self.scopes[node]
        self.stack.append(scope)
        prefix: list[ast.stmt] = []
        if scope.cells:
            first = node.body[0]
            assign = ast.Assign(
                targets=[
                    ast.copy_location(ast.Name(id=f"{CELLS}{scope.depth}", ctx=ast.Store()), first)
                ],
                value=self.hook("scope", [], first),
            )
            prefix.append(ast.copy_location(assign, first))
        body = node.body
        if (
            prefix
            and isinstance(body[0], ast.Expr)
            and isinstance(body[0].value, ast.Constant)
            and isinstance(body[0].value.value, str)
        ):
            node.body = [body[0], *self.body(body[1:], prefix)]
        else:
            node.body = self.body(body, prefix)
        self.stack.pop()
        return [node, *self.write_records([node.name], node)]

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_Lambda(self, node: ast.Lambda) -> Any:
        node.args.defaults = self.visit_list(node.args.defaults)
        node.args.kw_defaults = self.visit_list(node.args.kw_defaults)
        self.stack.append(self.scopes[node])
        node.body = self.visit(node.body)
        self.stack.pop()
        return node

    def visit_ClassDef(self, node: ast.ClassDef) -> Any:
        node.decorator_list = self.visit_list(node.decorator_list)
        node.bases = self.visit_list(node.bases)
        node.keywords = self.visit_list(node.keywords)
        self.stack.append(self.scopes[node])
        self.classes.append(node.name)
        node.body = self.body(node.body)
        self.classes.pop()
        self.stack.pop()
        return [node, *self.write_records([node.name], node)]

    def _comp(self, node: Any, fields: tuple[str, ...]) -> Any:
        gens: list[ast.comprehension] = node.generators
        first = self.visit(gens[0].iter)
        gens[0].iter = first if gens[0].is_async else self.hook("it", [first], first)
        self.stack.append(self.scopes[node])
        for i, gen in enumerate(gens):
            gen.target = self.visit(gen.target)
            if i:
                it = self.visit(gen.iter)
                gen.iter = it if gen.is_async else self.hook("it", [it], it)
            gen.ifs = self.visit_list(gen.ifs)
        for name in fields:
            setattr(node, name, self.visit(getattr(node, name)))
        self.stack.pop()
        return node

    def visit_ListComp(self, node: ast.ListComp | ast.SetComp | ast.GeneratorExp) -> Any:
        return self._comp(node, ("elt",))

    visit_SetComp = visit_ListComp
    visit_GeneratorExp = visit_ListComp

    def visit_DictComp(self, node: ast.DictComp) -> Any:
        return self._comp(node, ("key", "value"))

    # ---- names -------------------------------------------------------------------------

    def visit_Name(self, node: ast.Name) -> Any:
        if not isinstance(node.ctx, ast.Load):
            return node
        where, owner = self.classify(node.id)
        key = self.const(self.mangle(node.id), node)
        if where == GLOBAL:
            return self.hook("rg", [node, key], node)
        if where == CELL and owner is not None:
            return self.hook("rc", [node, self.cells_name(owner, node), key], node)
        return node

    def visit_NamedExpr(self, node: ast.NamedExpr) -> Any:
        node.value = self.visit(node.value)
        scope = self.cur
        while scope.kind == _COMP and scope.parent is not None:
            scope = scope.parent
        where, owner = self.classify(node.target.id, scope)
        key = self.const(self.mangle(node.target.id), node)
        if where == GLOBAL:
            return self.hook("wgv", [node, key], node)
        if where == CELL and owner is not None:
            return self.hook("wcv", [node, self.cells_name(owner, node), key], node)
        return node

    # ---- statements --------------------------------------------------------------------

    def visit_Assign(self, node: ast.Assign) -> Any:
        unpack = any(isinstance(t, (ast.Tuple, ast.List)) for t in node.targets)
        node.targets = self.visit_list(node.targets)
        node.value = self.visit(node.value)
        if unpack:
            node.value = self.hook("it", [node.value], node.value)
        names = [n for t in node.targets for n in _target_names(t)]
        return [node, *self.write_records(names, node)]

    def visit_AnnAssign(self, node: ast.AnnAssign) -> Any:
        if node.value is None:
            return node
        node.target = self.visit(node.target)
        node.value = self.visit(node.value)
        return [node, *self.write_records(_target_names(node.target), node)]

    def visit_AugAssign(self, node: ast.AugAssign) -> Any:
        target = node.target
        node.value = self.visit(node.value)
        if isinstance(target, ast.Attribute):
            target.value = self.hook(
                "aw",
                [self.visit(target.value), self.const(self.mangle(target.attr), target)],
                target,
            )
            return node
        if isinstance(target, ast.Subscript):
            target.value = self.hook("si", [self.visit(target.value)], target)
            target.slice = self.visit(target.slice)
            return node
        if isinstance(target, ast.Name):
            where, owner = self.classify(target.id)
            key = self.const(self.mangle(target.id), target)
            if where == GLOBAL:
                before = self.stmt(self.hook("rgn", [key], node), node)
            elif where == CELL and owner is not None:
                before = self.stmt(
                    self.hook("rcn", [self.cells_name(owner, node), key], node), node
                )
            else:
                return node
            return [before, node, *self.write_records([target.id], node)]
        return node

    def visit_Delete(self, node: ast.Delete) -> Any:
        names = [n for t in node.targets for n in _target_names(t)]
        node.targets = self.visit_list(node.targets)
        return [node, *self.write_records(names, node)]

    def visit_For(self, node: ast.For | ast.AsyncFor) -> Any:
        it = self.visit(node.iter)
        node.iter = it if isinstance(node, ast.AsyncFor) else self.hook("it", [it], it)
        node.target = self.visit(node.target)
        prefix = self.write_records(_target_names(node.target), node.target)
        node.body = self.body(node.body, prefix)
        node.orelse = self.body(node.orelse)
        return node

    visit_AsyncFor = visit_For

    def visit_With(self, node: ast.With | ast.AsyncWith) -> Any:
        names: list[str] = []
        for item in node.items:
            ce = self.visit(item.context_expr)
            item.context_expr = ce if isinstance(node, ast.AsyncWith) else self.hook("wi", [ce], ce)
            if item.optional_vars is not None:
                item.optional_vars = self.visit(item.optional_vars)
                names.extend(_target_names(item.optional_vars))
        node.body = self.body(node.body, self.write_records(names, node))
        return node

    visit_AsyncWith = visit_With

    def visit_ExceptHandler(self, node: ast.ExceptHandler) -> Any:
        if node.type is not None:
            node.type = self.visit(node.type)
        prefix = self.write_records([node.name], node) if node.name else []
        node.body = self.body(node.body, prefix)
        return node

    def visit_Import(self, node: ast.Import | ast.ImportFrom) -> Any:
        return [node, *self.write_records(_import_names(node), node)]

    visit_ImportFrom = visit_Import

    def visit_match_case(self, node: ast.match_case) -> Any:
        # Patterns are not expressions (a value pattern must stay a dotted name).
        if node.guard is not None:
            node.guard = self.visit(node.guard)
        node.body = self.body(node.body)
        return node

    def visit_TypeAlias(self, node: Any) -> Any:
        return [node, *self.write_records([node.name.id], node)]

    def visit_arguments(self, node: ast.arguments) -> Any:
        return node  # handled by the function visitors; annotations are left alone

    # ---- expressions -------------------------------------------------------------------

    def visit_Attribute(self, node: ast.Attribute) -> Any:
        value = self.visit(node.value)
        key = self.const(self.mangle(node.attr), node)
        if isinstance(node.ctx, ast.Load):
            if node.attr in CONTAINER_METHODS:
                return self.hook("gm", [value, key], node)
            node.value = self.hook("rd", [value, key], node)
        elif isinstance(node.ctx, ast.Store):
            node.value = self.hook("sw", [value, key], node)
        else:
            node.value = self.hook("sd", [value, key], node)
        return node

    def visit_BinOp(self, node: ast.BinOp) -> Any:
        left, right = node.left, node.right
        if self.same_local_attribute(left, right):
            assert isinstance(left, ast.Attribute)
            key = self.const(self.mangle(left.attr), left)
            node.left = self.hook("rd2", [left.value, key], left)
            return node  # ``right`` stays a native load: rd2 stands for its read
        node.left = self.visit(left)
        node.right = self.visit(right)
        return node

    def same_local_attribute(self, a: ast.expr, b: ast.expr) -> bool:
        """Are ``a`` and ``b`` the same ``name.attr`` load on one line, ``name`` a
        function-local variable (nothing but this frame can rebind it), so that when
        evaluated back to back (a binary operation's operands) they read one location
        with nothing in between?  See "Elisions" in the module docstring."""
        if not (
            isinstance(a, ast.Attribute)
            and isinstance(b, ast.Attribute)
            and isinstance(a.ctx, ast.Load)
            and isinstance(b.ctx, ast.Load)
            and a.attr == b.attr
            and a.attr not in CONTAINER_METHODS
            and isinstance(a.value, ast.Name)
            and isinstance(b.value, ast.Name)
            and a.value.id == b.value.id
            and a.lineno == a.end_lineno == b.lineno == b.end_lineno
        ):
            return False
        name = a.value.id
        if self.cur.kind not in (_FUNCTION, _LAMBDA, _COMP) or name == "__class__":
            return False
        return _resolve(self.cur, name, marking=False)[0] == LOCAL

    def visit_Subscript(self, node: ast.Subscript) -> Any:
        value = self.visit(node.value)
        sl = node.slice
        if isinstance(node.ctx, ast.Load):
            if isinstance(sl, ast.Slice):
                parts = [
                    self.visit(p) if p is not None else self.const(None, node)
                    for p in (sl.lower, sl.upper, sl.step)
                ]
                return self.hook("gsl", [value, *parts], node)
            node.slice = self.visit(sl)
            if isinstance(sl, ast.Tuple) and any(isinstance(e, ast.Slice) for e in sl.elts):
                node.value = value
                return node
            return self.hook("gi", [value, node.slice], node)
        node.value = self.hook("si", [value], node)
        node.slice = self.visit(sl)
        return node

    def visit_Starred(self, node: ast.Starred) -> Any:
        node.value = self.visit(node.value)
        if isinstance(node.ctx, ast.Load):
            node.value = self.hook("it", [node.value], node.value)
        return node

    def visit_Dict(self, node: ast.Dict) -> Any:
        node.keys = self.visit_list(node.keys)
        values = self.visit_list(node.values)
        node.values = [
            self.hook("it", [v], v) if k is None else v
            for k, v in zip(node.keys, values, strict=True)
        ]
        return node

    def visit_YieldFrom(self, node: ast.YieldFrom) -> Any:
        node.value = self.visit(node.value)
        node.value = self.hook("it", [node.value], node.value)
        return node

    def visit_Compare(self, node: ast.Compare) -> Any:
        node.left = self.visit(node.left)
        node.comparators = self.visit_list(node.comparators)
        if len(node.ops) == 1 and isinstance(node.ops[0], (ast.In, ast.NotIn)):
            method = "isin" if isinstance(node.ops[0], ast.In) else "notin"
            return self.hook(method, [node.left, node.comparators[0]], node)
        return node

    def visit_Call(self, node: ast.Call) -> Any:
        func = node.func
        builtin = (
            isinstance(func, ast.Name)
            and func.id in BUILTIN_NAMES
            and func.id not in self.module_bound
            and _resolve(self.cur, func.id, marking=False)[0] == GLOBAL
        )
        if (
            isinstance(func, ast.Attribute)
            and isinstance(func.ctx, ast.Load)
            and func.attr in LOCK_METHODS
        ):
            # ``x.acquire(...)``: the hook checks the receiver's type at run time.
            node.func = self.hook("lc", [self.visit(func.value), self.const(func.attr, func)], func)
        else:
            node.func = func if builtin else self.visit(func)
        node.args = self.visit_list(node.args)
        for kw in node.keywords:
            kw.value = self.visit(kw.value)
            if kw.arg is None:
                kw.value = self.hook("it", [kw.value], kw.value)
        if builtin:
            call = self.hook("cb", [func, *node.args], node)
            call.keywords = node.keywords
            return call
        return node


def rewrite_module(tree: ast.Module, filename: str) -> ast.Module:
    """Instrument a parsed module in place (and return it).  ``filename`` is only used
    in error messages; locations come from the tree."""
    builder = _ScopeBuilder()
    builder.build(tree)
    return _Rewriter(builder).rewrite(tree)


def compile_instrumented(source: str | bytes, filename: str) -> CodeType:
    """Parse, instrument and compile a module's source, like ``compile(source, filename,
    "exec")`` (a syntax error raises the same ``SyntaxError``)."""
    tree = ast.parse(source, filename, "exec")
    rewrite_module(tree, filename)
    code: CodeType = compile(tree, filename, "exec", dont_inherit=True)
    return code
