"""Pure helpers of the code environment: find the solution in a completion, compare program output.

Nothing here runs code; rewardkit.sandbox does that.
"""

from __future__ import annotations

import ast
import builtins
import math
import re

# An opening fence (``` or ~~~, optional info string), the body, and a closing fence of the same
# characters at the start of a line. Up to three spaces of indentation, as in CommonMark.
_FENCE = re.compile(
    r"^ {0,3}(?P<fence>`{3,}|~{3,})[^\n]*\n(?P<body>.*?)^ {0,3}(?P=fence)[ \t]*$", re.M | re.S
)


def extract_code(text: str) -> str:
    """The last fenced code block of ``text``, or all of ``text`` when it has none.

    The last block, not the first: models often show a broken attempt or an example first and the
    final program last. An unclosed fence is not a block (the completion was likely cut off).
    """
    blocks = [m.group("body") for m in _FENCE.finditer(text)]
    return blocks[-1] if blocks else text


def normalize_output(text: str) -> list[str]:
    """Lines with trailing whitespace removed and trailing blank lines dropped (leading space counts)."""
    lines = [line.rstrip() for line in text.replace("\r\n", "\n").split("\n")]
    while lines and not lines[-1]:
        lines.pop()
    return lines


def outputs_match(actual: str, expected: str, *, float_tolerance: float | None = None) -> bool:
    """Whether a program's output equals the expected output, ignoring trailing whitespace.

    With ``float_tolerance``, tokens that both parse as numbers match when they are within that
    absolute or relative tolerance (so ``0.3333333`` matches ``0.333333333``); other tokens must be
    equal, and the number of lines and tokens per line must agree.
    """
    got, want = normalize_output(actual), normalize_output(expected)
    if got == want:
        return True
    if float_tolerance is None or len(got) != len(want):
        return False
    return all(_line_close(a, b, float_tolerance) for a, b in zip(got, want))


def _line_close(got: str, want: str, tolerance: float) -> bool:
    got_tokens, want_tokens = got.split(), want.split()
    if len(got_tokens) != len(want_tokens):
        return False
    return all(_token_close(a, b, tolerance) for a, b in zip(got_tokens, want_tokens))


def _token_close(got: str, want: str, tolerance: float) -> bool:
    if got == want:
        return True
    try:
        a, b = float(got), float(want)
    except ValueError:
        return False
    if math.isnan(a) or math.isnan(b):
        return False
    return math.isclose(a, b, rel_tol=tolerance, abs_tol=tolerance)


def python_syntax_error(source: str) -> str | None:
    """The syntax error of ``source`` as a message, or None if it compiles. Compiling runs no code."""
    try:
        compile(source, "<solution>", "exec", dont_inherit=True)
    except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:  # ValueError: NUL bytes
        return f"{type(exc).__name__}: {exc}"
    return None


# ---- the assert-test harness (runs inside the sandbox) --------------------------------------------
HARNESS_COMPARE = "__rewardkit_compare__"
"""The name the rewritten tests call every comparison through (bound in the tests' own namespace)."""

HARNESS = r'''"""rewardkit test harness: runs a solution, then its tests, and prints a done-marker if they pass.

The solution, the tests and the marker arrive on stdin as one JSON object; nothing secret is in this
file. The marker is kept only in an audit hook that refuses frames, gc, ctypes and /proc to the program
(see _rk_guard). The tests run in their own namespace (a copy of the solution's globals over a copy
of the builtins taken before the solution ran), with every comparison rewritten to a strict one.
"""


def _rk_read_payload(os, json):
    chunks = []
    while True:
        chunk = os.read(0, 1 << 16)
        if not chunk:
            break
        chunks.append(chunk)
    return json.loads(b"".join(chunks).decode("utf-8", "surrogatepass"))


def _rk_trusted_readers(traceback, unittest_result):
    """Code that may read a traceback's frames: each maps to the code that must be consuming it.

    They turn frames into text (or clear them) and never hand a frame on: the traceback module's
    extraction (what print_exc, format_exc and TracebackException use), clear_frames, and the private
    unittest's own traceback check. walk_tb yields frames, so it is trusted only under that extraction.
    """
    summary = traceback.StackSummary
    readers = {traceback.clear_frames.__code__: ()}
    extract = summary.extract.__func__.__code__
    gen = [c for c in extract.co_consts if getattr(c, "co_name", "") == "extended_frame_gen"]
    if hasattr(summary, "_extract_from_extended_frame_gen"):  # Python 3.11 and later
        core = summary._extract_from_extended_frame_gen.__func__.__code__
        readers[core] = ()
        if gen:
            readers[traceback.walk_tb.__code__] = (gen[0], core)
        if hasattr(traceback, "_walk_tb_with_full_positions"):
            readers[traceback._walk_tb_with_full_positions.__code__] = (core,)
    else:
        readers[extract] = ()
        readers[traceback.walk_tb.__code__] = (extract,)
    if unittest_result is not None and hasattr(unittest_result.TestResult, "_is_relevant_tb_level"):
        readers[unittest_result.TestResult._is_relevant_tb_level.__code__] = ()
    return readers


def _rk_guard(sys, os, get_ident, marker, readers):
    """The audit hook that keeps the program under test out of frames, memory and file descriptors.

    Added (for good: hooks cannot be removed) just before the solution runs, it refuses, with an
    exception, every way to a frame object or to arbitrary objects and memory, and holds the marker,
    which it writes only when the harness's own frame announces the verdict ("rewardkit.verdict").
    Nothing but the interpreter refers to the hook, so its closure is out of the program's reach.
    """
    getframe, realpath, fspath, fsdecode = sys._getframe, os.path.realpath, os.fspath, os.fsdecode
    write, exit_now = os.write, os._exit
    _str, _bytes, _int, _getattr, _isinstance = str, bytes, int, getattr, isinstance
    owner = getframe(1)  # the harness's frame: only it may announce the verdict
    inside = set()
    banned = frozenset((
        "sys._getframe", "sys._current_frames", "sys._current_exceptions", "sys.settrace",
        "sys.setprofile", "sys.addaudithook", "gc.get_objects", "gc.get_referrers", "gc.get_referents",
        "function.__new__",
    ))
    frame_attrs = frozenset(("tb_frame", "gi_frame", "cr_frame", "ag_frame", "f_code"))
    code_attrs = frozenset(("__code__", "gi_code", "cr_code", "ag_code"))
    path_events = frozenset(("open", "os.listdir", "os.scandir", "os.chdir"))

    class IntrospectionRefused(RuntimeError, ValueError):
        """ValueError too: the standard library's frame lookups (namedtuple, enum, logging) fall back."""

        __module__, __qualname__ = "rewardkit", "IntrospectionRefused"

    def refuse(what):
        raise IntrospectionRefused(
            what + " is refused: programs under test cannot reach frames, the interpreter's objects or "
            "memory, or their own file descriptors (rewardkit test harness)"
        )

    def trusted(frame):
        consumers = readers.get(frame.f_code)
        if consumers is None:
            return False
        for code in consumers:
            frame = frame.f_back
            if frame is None or frame.f_code is not code:
                return False
        return True

    def blocked_path(path):
        if path is None or _isinstance(path, _int):
            return False  # the work dir, or a descriptor the program already holds
        if not _isinstance(path, (_str, _bytes)):
            return True  # a path object could name another file on its second __fspath__ call
        target = realpath(fsdecode(_str.__str__(path) if _isinstance(path, _str) else _bytes(path)))
        return target == "/proc" or target.startswith(("/proc/", "/dev/fd"))

    def check(event, args):
        if event == "rewardkit.verdict":
            if getframe(2) is not owner:  # 0 check, 1 hook, 2 whoever called sys.audit
                refuse("announcing the verdict")
            write(1, b"\n" + marker + b"\n")
            exit_now(0)
        if event in banned or event.startswith("ctypes."):
            refuse(event)
        if event == "object.__getattr__" or event == "object.__setattr__":
            obj, name = args[0], args[1]
            if name in frame_attrs and not (event == "object.__getattr__" and trusted(getframe(2))):
                refuse("reading ." + name)
            if name in code_attrs:
                if event == "object.__setattr__":
                    refuse("replacing ." + name)
                if _getattr(_getattr(obj, name, None), "co_filename", None) == "<tests>":
                    refuse("reading the tests' code")
        elif event == "import" and (args[0] in ("ctypes", "_ctypes") or _str(args[0]).startswith("ctypes.")):
            refuse("importing ctypes")
        elif event in path_events and args and blocked_path(args[0]):
            refuse(event + " of " + repr(args[0]))

    def hook(event, args):
        ident = get_ident()
        if ident in inside:
            return  # the hook's own frame and attribute reads
        inside.add(ident)
        try:
            check(event, args)
        finally:
            inside.discard(ident)

    return hook


def _rk_main():
    import ast
    import builtins
    import json
    import linecache
    import operator
    import os
    import sys
    import threading
    import traceback
    import types

    real_builtins = dict(builtins.__dict__)
    _type, _issubclass, _id, _len, _bool, _tuple = type, issubclass, id, len, bool, tuple
    _int, _float, _str, _bytes, _bytearray, _complex = int, float, str, bytes, bytearray, complex
    _list, _dict, _set, _frozenset, _range = list, dict, set, frozenset, range
    _assertion, _base_exception, _system_exit = AssertionError, BaseException, SystemExit
    exit_now = os._exit
    stdout, stderr = sys.stdout, sys.stderr
    gettrace, getprofile, audit, excepthook = sys.gettrace, sys.getprofile, sys.audit, sys.__excepthook__

    def fail(why, exc=None):
        try:
            if exc is not None:  # printed in C: no frame has to be read from Python
                excepthook(_type(exc), exc, exc.__traceback__)
            stderr.write("rewardkit: " + why + "\n")
            stderr.flush()
        finally:
            exit_now(1)

    payload = _rk_read_payload(os, json)
    tests_tree = ast.parse(payload.pop("tests"), "<tests>")

    # ---- strict comparison: plain values compared by their builtin contents -----------------------
    opaque = object()
    scalars = (_type(None), _bool, _int, _float, _complex, _str, _bytes, _range, _type(...))
    keys_t, values_t, items_t = _type({}.keys()), _type({}.values()), _type({}.items())
    real_desc, imag_desc = _complex.__dict__["real"], _complex.__dict__["imag"]

    def plain(value, path):
        t = _type(value)
        if t in scalars or t is _type:
            return value
        if _issubclass(t, _int):
            return _int.__int__(value)
        if _issubclass(t, _float):
            return _float.__float__(value)
        if _issubclass(t, _str):
            return _str.__str__(value)
        if _issubclass(t, _bytes):
            return _bytes.__getitem__(value, slice(None))
        if _issubclass(t, _complex):
            return _complex(real_desc.__get__(value), imag_desc.__get__(value))
        if _id(value) in path:
            return opaque  # a cycle
        path = path | {_id(value)}
        if _issubclass(t, _bytearray):
            return _bytearray.__getitem__(value, slice(None))
        if _issubclass(t, _list):
            items = [plain(x, path) for x in _list.__iter__(value)]
            return opaque if any(x is opaque for x in items) else items
        if _issubclass(t, _tuple):
            items = [plain(x, path) for x in _tuple.__iter__(value)]
            return opaque if any(x is opaque for x in items) else _tuple(items)
        if _issubclass(t, _dict) or t is items_t:
            pairs = [(plain(k, path), plain(v, path)) for k, v in (_dict.items(value) if t is not items_t else value)]
            if any(k is opaque or v is opaque for k, v in pairs):
                return opaque
            if t is items_t:
                try:
                    return _frozenset(pairs)
                except TypeError:
                    return pairs
            return _dict(pairs)
        if _issubclass(t, (_set, _frozenset)) or t is keys_t or t is values_t:
            items = [plain(x, path) for x in (_set.__iter__(value) if _issubclass(t, _set) else
                     _frozenset.__iter__(value) if _issubclass(t, _frozenset) else value)]
            if any(x is opaque for x in items):
                return opaque
            if t is values_t:
                return items
            return _set(items) if _issubclass(t, _set) else _frozenset(items)
        return opaque

    def canonical(value):
        try:
            return plain(value, _frozenset())
        except RecursionError:
            return opaque

    operators = {
        "==": operator.eq, "!=": operator.ne, "<": operator.lt, "<=": operator.le, ">": operator.gt,
        ">=": operator.ge, "in": lambda a, b: a in b, "not in": lambda a, b: a not in b,
        "is": operator.is_, "is not": operator.is_not,
    }

    def compare_one(op, a, b):
        how = operators[op]
        if op in ("is", "is not"):
            return how(a, b)
        pa, pb = canonical(a), canonical(b)
        if pa is opaque and pb is opaque:  # both of the program's own types: their own rule
            return _bool(how(a, b))
        if pa is opaque or pb is opaque:
            odd = a if pa is opaque else b
            raise _assertion(
                "strict comparison: a %s compared (%s) with a plain value; tests compare plain values "
                "(builtin scalars and containers) by their contents" % (_type(odd).__name__, op)
            )
        return _bool(how(pa, pb))

    def compare(ops, *operands):
        for i in _range(_len(ops)):
            if not compare_one(ops[i], operands[i], operands[i + 1]):
                return False
        return True

    def strict_isinstance(obj, classes):
        return _issubclass(_type(obj), classes)

    names = {ast.Eq: "==", ast.NotEq: "!=", ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">=",
             ast.In: "in", ast.NotIn: "not in", ast.Is: "is", ast.IsNot: "is not"}

    class Rewrite(ast.NodeTransformer):
        def visit_Compare(self, node):
            self.generic_visit(node)
            ops = ast.Tuple([ast.Constant(names[_type(op)]) for op in node.ops], ast.Load())
            call = ast.Call(ast.Name(HELPER, ast.Load()), [ops, node.left, *node.comparators], [])
            return ast.copy_location(call, node)

    tests_code = compile(ast.fix_missing_locations(Rewrite().visit(tests_tree)), "<tests>", "exec")
    del tests_tree

    # ---- tracing and profiling are refused: a trace function can jump over lines ------------------
    tampered = []

    def refuse(name):
        def refused(*args, **kwargs):
            tampered.append(name)
            raise RuntimeError(name + " is not available to programs under test")
        return refused

    for module, name in ((sys, "settrace"), (sys, "setprofile"), (threading, "settrace"),
                         (threading, "setprofile"), (threading, "settrace_all_threads"),
                         (threading, "setprofile_all_threads")):
        if hasattr(module, name):
            setattr(module, name, refuse(module.__name__ + "." + name))

    # ---- a private unittest, imported before the solution runs and out of its reach ---------------
    private = {}
    results = []
    if payload.pop("unittest"):
        def ours(name):
            return name == "unittest" or name.startswith("unittest.")
        saved = {k: m for k, m in sys.modules.items() if ours(k)}
        for k in saved:
            del sys.modules[k]
        __import__("unittest")
        private = {k: m for k, m in sys.modules.items() if ours(k)}
        for k in private:
            del sys.modules[k]
        sys.modules.update(saved)
        unittest = private["unittest"]
        result_init = unittest.TestResult.__init__

        def registered_init(self, *args, **kwargs):
            results.append(self)
            result_init(self, *args, **kwargs)

        unittest.TestResult.__init__ = registered_init

        def strict_method(original):
            def method(self, first, second, *args, **kwargs):
                pa, pb = canonical(first), canonical(second)
                if pa is opaque and pb is opaque:
                    return original(self, first, second, *args, **kwargs)
                if pa is opaque or pb is opaque:
                    odd = first if pa is opaque else second
                    raise _assertion("strict comparison: a %s compared with a plain value" % _type(odd).__name__)
                return original(self, pa, pb, *args, **kwargs)
            return method

        case = unittest.TestCase
        for name in ("assertEqual", "assertNotEqual", "assertAlmostEqual", "assertNotAlmostEqual",
                     "assertIn", "assertNotIn", "assertListEqual", "assertTupleEqual", "assertDictEqual",
                     "assertSetEqual", "assertSequenceEqual", "assertMultiLineEqual", "assertCountEqual",
                     "assertLess", "assertLessEqual", "assertGreater", "assertGreaterEqual"):
            setattr(case, name, strict_method(getattr(case, name)))
        is_instance = case.assertIsInstance

        def assert_is_instance(self, obj, cls, msg=None):
            if not _issubclass(_type(obj), cls):
                raise _assertion("%s is not an instance of %r" % (_type(obj).__name__, cls))
            return is_instance(self, obj, cls, msg)

        case.assertIsInstance = assert_is_instance
    real_import = real_builtins["__import__"]

    def tests_import(name, globals=None, locals=None, fromlist=(), level=0):
        module = private.get(name) if level == 0 else None
        if module is not None:
            if not fromlist:
                return private["unittest"]
            if all(hasattr(module, item) for item in fromlist):
                return module
        return real_import(name, globals, locals, fromlist, level)

    # ---- the guard: no frames, gc, ctypes or /proc from here on --------------------------------------
    for name in [k for k in sys.modules if k in ("ctypes", "_ctypes") or k.startswith("ctypes.")]:
        del sys.modules[name]
    readers = _rk_trusted_readers(traceback, private.get("unittest.result"))
    sys.addaudithook(_rk_guard(sys, os, threading.get_ident, payload.pop("marker").encode(), readers))
    del readers

    # ---- the solution, in its own module -----------------------------------------------------------
    path = __file__
    solution = payload.pop("solution")
    linecache.cache["<solution>"] = (_len(solution), None, solution.splitlines(True), "<solution>")
    main = types.ModuleType("__main__")
    main.__file__ = path
    main.__builtins__ = builtins
    sys.modules["__main__"] = main
    try:
        exec(compile(solution, "<solution>", "exec"), main.__dict__)
    except _system_exit:
        fail("the solution exited before the tests ran")
    except _base_exception as exc:
        fail("the solution raised before the tests ran", exc)
    del solution

    # ---- the tests, in their own namespace ---------------------------------------------------------
    sys.stdout, sys.stderr = stdout, stderr
    tests_builtins = _dict(real_builtins, isinstance=strict_isinstance, __import__=tests_import)
    namespace = _dict(main.__dict__)
    for name in PROTECTED:
        if name in namespace and namespace[name] is not real_builtins.get(name):
            del namespace[name]  # a solution's own isinstance or len does not judge the tests
    tests = types.ModuleType("__main__")
    tests.__dict__.update(namespace)
    tests.__dict__.update(__builtins__=tests_builtins, __name__="__main__", __file__=path)
    tests.__dict__[HELPER] = compare
    sys.modules["__main__"] = tests
    box = [tests_code]  # no local of this frame holds the tests' code while they run
    del tests_code
    try:
        exec(box.pop(), tests.__dict__)
    except _system_exit:
        fail("the program exited before the tests finished")
    except _base_exception as exc:
        fail("a test failed", exc)

    # ---- the verdict ---------------------------------------------------------------------------------
    if tampered or gettrace() is not None or getprofile() is not None:
        fail("the program tried to trace or profile the tests: " + ", ".join(tampered))
    for result in results:
        if _len(result.failures) or _len(result.errors) or _len(result.unexpectedSuccesses):
            fail("unittest reported failures or errors")
    try:
        stdout.flush()
    except _base_exception:
        fail("could not flush the program's output")
    audit("rewardkit.verdict")  # the guard writes the marker and exits 0
    fail("the guard did not write the marker")


HELPER = "@HELPER@"
PROTECTED = (@PROTECTED@)
_rk_main()
'''

PROTECTED_BUILTINS = (
    "isinstance", "issubclass", "type", "len", "repr", "str", "int", "float", "bool", "list", "tuple",
    "dict", "set", "frozenset", "sorted", "abs", "round", "all", "any", "hasattr", "getattr", "id", "hash",
    "print", "iter", "next", "range", "zip", "enumerate", "AssertionError", "Exception", "BaseException",
)  # fmt: skip
"""Builtins the tests always see as the real ones, even where the solution defines a global of that name."""

HARNESS_SOURCE = HARNESS.replace("@HELPER@", HARNESS_COMPARE).replace(
    "@PROTECTED@", ", ".join(repr(n) for n in PROTECTED_BUILTINS) + ","
)
"""The test program of an assert-style (``test_code``) Python test: fixed, it holds no secret."""


# ---- an independent check of passing solutions (``CodeEnv.suspicious``) ----------------------------
_POKING_IMPORTS = ("inspect", "gc", "ctypes")


def solution_red_flags(solution: str, test_code: object = None, entry_point: object = None) -> str | None:
    """Why a passing ``solution`` looks like a hack, or None: read from its source, never by running it.

    Flags a solution that does not define a function the tests call (``square(`` in the tests, no
    ``def square`` / ``square =`` / import of it in the solution), defines ``__eq__`` (or ``__ne__``),
    reads ``__file__`` or ``/proc``, imports ``inspect``, ``gc`` or ``ctypes``, or touches frames or
    closure cells.
    """
    try:
        tree = ast.parse(solution)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None
    reasons: list[str] = []
    defined = _bound_names(tree)
    called = set(_called_names(test_code)) if isinstance(test_code, str) else set()
    if isinstance(test_code, str):
        try:
            called -= _bound_names(ast.parse(test_code))
        except (SyntaxError, ValueError, RecursionError, MemoryError):
            called = set()
    if isinstance(entry_point, str) and entry_point:
        called.add(entry_point)
    missing = sorted(n for n in called if n not in defined and not hasattr(builtins, n))
    if missing:
        reasons.append(f"the tests call {', '.join(missing)}() but the solution never defines it")
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name in ("__eq__", "__ne__"):
            reasons.append(f"defines {node.name}")
        elif (isinstance(node, ast.Name) and node.id == "__file__") or (
            isinstance(node, ast.Attribute) and node.attr == "__file__"
        ):
            reasons.append("reads __file__")
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and "/proc" in node.value:
            reasons.append("reads /proc")
        elif isinstance(node, ast.Import | ast.ImportFrom):
            modules = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            reasons += [f"imports {m}" for m in modules if m.split(".")[0] in _POKING_IMPORTS]
        elif isinstance(node, ast.Attribute) and node.attr in (
            "_getframe",
            "f_back",
            "f_globals",
            "f_locals",
        ):
            reasons.append(f"touches frames ({node.attr})")
        elif isinstance(node, ast.Attribute) and node.attr in ("__closure__", "cell_contents"):
            reasons.append(f"reaches into closures ({node.attr})")
    unique = list(dict.fromkeys(reasons))
    return "; ".join(unique) if unique else None


def _bound_names(tree: ast.AST) -> set[str]:
    """Every name a module binds anywhere: defs, classes, assignments, imports, loop targets."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, ast.Import | ast.ImportFrom):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
    return names


def _called_names(test_code: str) -> list[str]:
    try:
        tree = ast.parse(test_code)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return []
    return [n.func.id for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)]
