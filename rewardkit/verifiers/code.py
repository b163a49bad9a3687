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
HARNESS_EMIT = "__rewardkit_emit__"
"""The name the split tests send a literal comparison's computed side through, to the judge."""
HARNESS_EMIT_ID = "__rewardkit_emit_id__"
"""The same for ``is None`` / ``is True`` / ``is False`` checks (only which singleton the value is)."""

HARNESS = r'''"""rewardkit test harness: runs a solution and its tests, and prints a done-marker if they pass.

The solution, the tests and the marker arrive on stdin as one JSON object; nothing secret is in this
file. The harness forks before it reads them. The parent (the judge) reads stdin, splits the tests
(_rk_split): every comparison of a test's result with a literal becomes an emission of the result
alone, its expected literal kept by the judge; the rest stays in the tests, rewritten to a strict
comparison. The child (the program) gets only the solution and those split tests, runs them under an
audit hook that refuses frames, gc, ctypes and /proc (_rk_guard), and sends each emitted value to the
judge over a pipe. The judge compares, and writes the marker only when every split comparison was
emitted and held and the child said, with a token only its audit hook holds, that the tests finished.
"""


def _rk_read_fd(os, fd):
    chunks = []
    while True:
        chunk = os.read(fd, 1 << 16)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def _rk_write_fd(os, fd, data):
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


# ---- splitting the tests (in the judge): literal comparisons leave the program -------------------------
_RK_UNITTEST = {  # method: (operator, required type of both sides, number of compared operands)
    "assertEqual": ("==", None, 2), "assertEquals": ("==", None, 2), "assertNotEqual": ("!=", None, 2),
    "assertIn": ("in", None, 2), "assertNotIn": ("not in", None, 2), "assertLess": ("<", None, 2),
    "assertLessEqual": ("<=", None, 2), "assertGreater": (">", None, 2),
    "assertGreaterEqual": (">=", None, 2), "assertListEqual": ("==", "list", 2),
    "assertTupleEqual": ("==", "tuple", 2), "assertDictEqual": ("==", "dict", 2),
    "assertSetEqual": ("==", "set", 2), "assertIs": ("is", None, 2), "assertIsNot": ("is not", None, 2),
    "assertIsNone": ("is", None, 1), "assertIsNotNone": ("is not", None, 1),
}
_RK_OPS = {"Eq": "==", "NotEq": "!=", "Lt": "<", "LtE": "<=", "Gt": ">", "GtE": ">=", "In": "in",
           "NotIn": "not in", "Is": "is", "IsNot": "is not"}
_RK_HOLE = object()
"""Where the program's emitted value goes among a check's operands."""


class _RkSplit:
    """Splits a parsed test module: ``tree`` is rewritten in place for the program, ``checks`` keeps,
    per emission index, what the judge compares the emitted value with.

    A comparison leaves the program only where the tests, run to the end, surely reach it: an
    ``assert`` (each operand of a top-level ``and``) or a unittest ``assert*`` call statement, on the
    straight-line path of the module, of a class body, of a function the tests call (or a ``test*``
    method when they run unittest), of a ``for`` over a non-empty literal or ``range`` and of a
    ``with self.subTest(...)``. A statement that may return, break, continue or raise ends the
    straight line of its block. Exactly one operand may be computed; the others must be literals.
    """

    def __init__(self, ast, tree):
        self.ast, self.checks = ast, []
        self.called = {n.func.id if isinstance(n.func, ast.Name) else n.func.attr
                       for n in ast.walk(tree) if isinstance(n, ast.Call)
                       and isinstance(n.func, (ast.Name, ast.Attribute))}
        self.runs_unittest = bool(self.called & {"main", "run", "TextTestRunner"})
        tree.body = self.block(tree.body, in_class=False)

    def literal(self, node):
        try:
            return True, self.ast.literal_eval(node)
        except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
            return False, None

    def block(self, stmts, in_class):
        out, live = [], True
        for stmt in stmts:
            out.extend(self.stmt(stmt, in_class) if live else [stmt])
            live = live and not self.diverts(stmt)
        return out

    def diverts(self, stmt):
        ast = self.ast
        if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            return False
        todo = [(stmt, False)]
        while todo:
            node, guarded = todo.pop()
            if isinstance(node, (ast.Return, ast.Break, ast.Continue)):
                return True
            if isinstance(node, ast.Raise) and not guarded:
                return True
            if isinstance(node, ast.Call) and isinstance(node.func, (ast.Name, ast.Attribute)):
                name = node.func.id if isinstance(node.func, ast.Name) else node.func.attr
                if name in ("skipTest", "skip", "fail", "exit", "_exit"):
                    return True
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)):
                continue
            inner = guarded or isinstance(node, (ast.Try, ast.With))
            todo.extend((child, inner) for child in ast.iter_child_nodes(node))
        return False

    def skipped(self, node):
        for deco in node.decorator_list:
            for sub in self.ast.walk(deco):
                name = getattr(sub, "id", None) or getattr(sub, "attr", None) or ""
                if name.startswith("skip") or name == "expectedFailure":
                    return True
        return False

    def stmt(self, stmt, in_class):
        ast = self.ast
        if isinstance(stmt, ast.Assert):
            return self.split_assert(stmt)
        if isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Call):
            return [self.unittest_call(stmt)]
        if isinstance(stmt, ast.FunctionDef) and not self.skipped(stmt):
            generator = any(isinstance(n, (ast.Yield, ast.YieldFrom)) for n in ast.walk(stmt))
            runs = stmt.name in self.called or (in_class and stmt.name.startswith("test")
                                                and self.runs_unittest)
            if runs and not generator:
                stmt.body = self.block(stmt.body, in_class=False)
        elif isinstance(stmt, ast.ClassDef) and not self.skipped(stmt):
            stmt.body = self.block(stmt.body, in_class=True)
        elif isinstance(stmt, ast.For) and self.nonempty(stmt.iter):
            stmt.body = self.block(stmt.body, in_class=False)
        elif isinstance(stmt, ast.With) and all(
            isinstance(item.context_expr, ast.Call) and isinstance(item.context_expr.func, ast.Attribute)
            and item.context_expr.func.attr == "subTest" for item in stmt.items
        ):
            stmt.body = self.block(stmt.body, in_class=False)
        return [stmt]

    def nonempty(self, node):
        ok, value = self.literal(node)
        if ok:
            return isinstance(value, (list, tuple, set, dict, str, bytes)) and len(value) > 0
        ast = self.ast
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "range":
            args = [self.literal(a) for a in node.args]
            if not node.keywords and 1 <= len(args) <= 3 and all(ok and type(v) is int for ok, v in args):
                try:
                    return len(range(*[v for _, v in args])) > 0
                except (ValueError, OverflowError):
                    return False
        return False

    def split_assert(self, stmt):
        ast = self.ast
        test = stmt.test
        parts = test.values if isinstance(test, ast.BoolOp) and isinstance(test.op, ast.And) else [test]
        out = []
        for part in parts:
            emitted = self.compare(part, stmt) if isinstance(part, ast.Compare) else None
            if emitted is None:
                emitted = ast.Assert(part, stmt.msg)
            out.append(ast.copy_location(emitted, stmt))
        return out

    def compare(self, node, stmt):
        ops = [_RK_OPS.get(type(op).__name__) for op in node.ops]
        operands = [node.left, *node.comparators]
        return self.emission(ops, operands, None, stmt.lineno, stmt.msg)

    def unittest_call(self, stmt):
        ast = self.ast
        call = stmt.value
        spec = _RK_UNITTEST.get(call.func.attr) if isinstance(call.func, ast.Attribute) else None
        if spec is None or any(k.arg != "msg" for k in call.keywords):
            return stmt
        op, kind, arity = spec
        if not arity <= len(call.args) <= arity + 1 or any(isinstance(a, ast.Starred) for a in call.args):
            return stmt
        operands = list(call.args[:arity]) + ([ast.Constant(None)] if arity == 1 else [])
        msg = call.args[arity] if len(call.args) > arity else next((k.value for k in call.keywords), None)
        emitted = self.emission([op], operands, kind, stmt.lineno, msg, via_unittest=True)
        return stmt if emitted is None else ast.copy_location(emitted, stmt)

    def emission(self, ops, operands, kind, line, msg, via_unittest=False):
        """The emission statement that replaces a check, or None where it must stay in the program."""
        ast = self.ast
        if None in ops:
            return None
        values, holes = [], []
        for i, node in enumerate(operands):
            ok, value = self.literal(node)
            values.append(value if ok else _RK_HOLE)
            if not ok:
                holes.append(i)
        if len(holes) != 1:
            return None
        identity = any(op in ("is", "is not") for op in ops)
        if identity and not (all(op in ("is", "is not") for op in ops) and all(
                v is None or v is True or v is False for v in values if v is not _RK_HOLE)):
            return None
        text = None
        if msg is not None:
            text = msg.value if isinstance(msg, ast.Constant) else ast.unparse(msg)
        self.checks.append({"ops": ops, "operands": values, "kind": kind, "identity": identity,
                            "line": line, "msg": text, "unittest": via_unittest})
        helper = EMIT_ID if identity else EMIT
        args = [ast.Constant(len(self.checks) - 1), operands[holes[0]]]
        return ast.Expr(ast.Call(ast.Name(helper, ast.Load()), args, []))


def _rk_strict_tree(ast, tree):
    """Every comparison left in the tests becomes a call of the strict helper (line numbers kept)."""
    class Rewrite(ast.NodeTransformer):
        def visit_Compare(self, node):
            self.generic_visit(node)
            ops = ast.Tuple([ast.Constant(_RK_OPS[type(op).__name__]) for op in node.ops], ast.Load())
            call = ast.Call(ast.Name(HELPER, ast.Load()), [ops, node.left, *node.comparators], [])
            return ast.copy_location(call, node)

    return ast.fix_missing_locations(Rewrite().visit(tree))


# ---- the judge (the parent): expected values and the verdict never enter the program's process -------
def _rk_decode(value):
    """An emitted value (tagged JSON, see the program's encode) as a plain Python value; ValueError if malformed."""
    if type(value) is not list or not value or type(value[0]) is not str:
        raise ValueError("not a tagged value")
    tag, args = value[0], value[1:]
    shapes = {"n": (), "e": (), "o": (), "b": (bool,), "i": (str,), "f": (str,), "c": (str, str),
              "s": (str,), "y": (str,), "Y": (str,), "r": (str, str, str), "l": (list,), "t": (list,),
              "d": (list,), "S": (list,), "F": (list,)}
    if tag not in shapes or tuple(type(a) for a in args) != shapes[tag]:
        raise ValueError("malformed value")
    simple = {"n": lambda: None, "e": lambda: ..., "o": object, "b": lambda: args[0],
              "i": lambda: int(args[0], 16), "f": lambda: float.fromhex(args[0]),
              "c": lambda: complex(float.fromhex(args[0]), float.fromhex(args[1])),
              "s": lambda: args[0], "y": lambda: bytes.fromhex(args[0]),
              "Y": lambda: bytearray.fromhex(args[0]), "r": lambda: range(*[int(a, 16) for a in args])}
    if tag in simple:
        return simple[tag]()
    if tag == "d":
        pairs = [(_rk_decode(p[0]), _rk_decode(p[1])) for p in args[0] if type(p) is list and len(p) == 2]
        if len(pairs) != len(args[0]):
            raise ValueError("malformed dict")
        return dict(pairs)
    return {"l": list, "t": tuple, "S": set, "F": frozenset}[tag](_rk_decode(x) for x in args[0])


def _rk_holds(check, value):
    """Whether the check holds with the emitted value in its computed operand's place."""
    import operator

    how = {"==": operator.eq, "!=": operator.ne, "<": operator.lt, "<=": operator.le, ">": operator.gt,
           ">=": operator.ge, "in": lambda a, b: a in b, "not in": lambda a, b: a not in b,
           "is": operator.is_, "is not": operator.is_not}
    operands = [value if v is _RK_HOLE else v for v in check["operands"]]
    kinds = {"list": list, "tuple": tuple, "dict": dict, "set": (set, frozenset), None: object}
    if not all(isinstance(v, kinds[check["kind"]]) for v in operands):
        return False
    for i, op in enumerate(check["ops"]):
        if not how[op](operands[i], operands[i + 1]):
            return False
    return True


class _RkJudge:
    """Reads the program's emissions until end of file: each one must match its check's expected value."""

    def __init__(self, os, pid, checks, token):
        self.os, self.pid, self.checks, self.token = os, pid, checks, token
        self.seen, self.done = set(), False

    def fail(self, why):
        os = self.os
        try:
            os.kill(self.pid, 9)
        except OSError:
            pass
        try:
            _rk_write_fd(os, 2, ("\nrewardkit: " + why + "\n").encode("utf-8", "backslashreplace"))
        finally:
            os._exit(1)

    def where(self, index):
        check = self.checks[index]
        text = "<tests> line %d" % check["line"]
        return text + (": " + str(check["msg"]) if check["msg"] is not None else "")

    def line(self, raw):
        import json

        if self.done:
            self.fail("the program wrote to the harness after the tests finished")
        try:
            message = json.loads(raw.decode("ascii"))
        except (ValueError, RecursionError, MemoryError):
            self.fail("the program sent the harness something that is not an emission")
        if message == ["d", self.token]:
            self.done = True
            return
        ok = type(message) is list and len(message) == 3 and message[0] == "v" and type(message[1]) is int
        if not ok or not 0 <= message[1] < len(self.checks):
            self.fail("the program sent the harness something that is not an emission")
        index, value = message[1], message[2]
        if type(value) is list and value[:1] == ["x"]:
            self.fail("a test failed: %s: strict comparison: %s" % (self.where(index), str(value[1:])[:200]))
        try:
            got = _rk_decode(value)
            held = _rk_holds(self.checks[index], got)
        except (ValueError, TypeError, RecursionError, MemoryError, OverflowError) as exc:
            self.fail("a test failed: %s (%s: %s)" % (self.where(index), type(exc).__name__, exc))
        if not held:
            what = "unittest reported failures" if self.checks[index]["unittest"] else "a test failed"
            self.fail("AssertionError (checked by the judge): %s (got %.300r)\nrewardkit: %s"
                      % (self.where(index), got, what))
        self.seen.add(index)

    def run(self, fd):
        os, buf = self.os, bytearray()
        while True:
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                break
            buf += chunk
            start = 0
            while True:
                end = buf.find(b"\n", start)
                if end < 0:
                    break
                self.line(bytes(buf[start:end]))
                start = end + 1
            del buf[:start]
        if buf:
            self.fail("the program sent the harness a partial emission")
        _, status = os.waitpid(self.pid, 0)
        if not self.done:
            self.fail("the tests did not finish (the program's wait status %d)" % status)
        if status != 0:
            self.fail("the program exited with wait status %d after the tests" % status)
        missing = [self.where(i) for i in range(len(self.checks)) if i not in self.seen]
        if missing:
            self.fail("a test never ran: " + missing[0] + (" and %d more" % (len(missing) - 1) if len(missing) > 1 else ""))


def _rk_not_dumpable():
    """The judge's /proc entries become root-owned and it cannot be ptrace-attached (best effort)."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE, 0
    except Exception:
        pass


def _rk_judge(os, pid, setup_w, emit_r):
    import ast
    import json
    import marshal

    _rk_not_dumpable()
    try:
        payload = json.loads(_rk_read_fd(os, 0).decode("utf-8", "surrogatepass"))
        tree = ast.parse(payload["tests"], "<tests>")
        checks = _RkSplit(ast, tree).checks
        code = compile(_rk_strict_tree(ast, tree), "<tests>", "exec")
        token = os.urandom(16).hex()
        setup = marshal.dumps((payload["solution"], code, bool(payload["unittest"]), token))
        marker = payload["marker"].encode()
    except BaseException as exc:  # the host sends a valid payload: anything else is a harness failure
        _RkJudge(os, pid, [], "").fail("could not prepare the tests: %s: %s" % (type(exc).__name__, exc))
    del payload, tree, code
    try:
        _rk_write_fd(os, setup_w, setup)
    except OSError:
        pass  # the program died: the judge sees it below
    os.close(setup_w)
    judge = _RkJudge(os, pid, checks, token)
    judge.run(emit_r)
    _rk_write_fd(os, 1, b"\n" + marker + b"\n")
    os._exit(0)


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


def _rk_guard(sys, os, get_ident, done, readers):
    """The audit hook that keeps the program under test out of frames, memory and file descriptors.

    Added (for good: hooks cannot be removed) just before the solution runs, it refuses, with an
    exception, every way to a frame object or to arbitrary objects and memory, and holds the judge's
    token (``done``: the descriptor and the line to write), which it sends only when the harness's own
    frame announces that the tests finished ("rewardkit.verdict").
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
            view = memoryview(done[1])
            while view:
                view = view[write(done[0], view):]
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


def _rk_program(os, setup_r, emit_w):
    """The program's process: runs the solution, then the split tests, emitting to the judge on ``emit_w``."""
    import builtins
    import json
    import marshal
    import linecache
    import operator
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

    setup = [marshal.loads(_rk_read_fd(os, setup_r))]  # (solution, tests' code, unittest, token)
    os.close(setup_r)
    solution, tests_code, uses_unittest, token = setup.pop()

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

    # ---- emissions: the computed side of a literal comparison, sent to the judge -------------------------
    _hex, _fhex, _dumps, _write = hex, _float.hex, json.dumps, os.write

    def encode(value):
        t = _type(value)
        if value is None or value is ...:
            return ["n" if value is None else "e"]
        simple = {_bool: lambda: ["b", value], _int: lambda: ["i", _hex(value)],
                  _float: lambda: ["f", _fhex(value)], _str: lambda: ["s", value],
                  _complex: lambda: ["c", _fhex(value.real), _fhex(value.imag)],
                  _bytes: lambda: ["y", value.hex()], _bytearray: lambda: ["Y", value.hex()],
                  _range: lambda: ["r", _hex(value.start), _hex(value.stop), _hex(value.step)]}
        if t in simple:
            return simple[t]()
        if t is _dict:
            return ["d", [[encode(k), encode(v)] for k, v in value.items()]]
        tags = {_list: "l", _tuple: "t", _set: "S", _frozenset: "F"}
        if t in tags:
            return [tags[t], [encode(x) for x in value]]
        raise TypeError(t.__name__)

    def send(index, data):
        try:
            line = _dumps(["v", index, data]).encode("ascii") + b"\n"
        except (TypeError, ValueError, RecursionError):
            line = _dumps(["v", index, ["x", "unserialisable value"]]).encode("ascii") + b"\n"
        view = memoryview(line)
        while view:
            view = view[_write(emit_w, view):]

    def emit(index, value):
        """A literal comparison's computed side, as a plain value (the strict rule), to the judge."""
        plain_value = canonical(value)
        if plain_value is opaque:
            return send(index, ["x", "a %s compared with a plain value" % _type(value).__name__])
        try:
            data = encode(plain_value)
        except (TypeError, RecursionError) as exc:
            data = ["x", "a %s compared with a plain value" % exc]
        send(index, data)

    def emit_identity(index, value):
        """For ``is None`` / ``is True`` / ``is False`` checks: which singleton the value is, if any."""
        send(index, ["n"] if value is None else ["b", value] if value is True or value is False else ["o"])

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
    if uses_unittest:
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
    done = (emit_w, _dumps(["d", token]).encode("ascii") + b"\n")
    sys.addaudithook(_rk_guard(sys, os, threading.get_ident, done, readers))
    del readers, done, token

    # ---- the solution, in its own module -----------------------------------------------------------
    path = __file__
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
    tests.__dict__.update({HELPER: compare, EMIT: emit, EMIT_ID: emit_identity})
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
    audit("rewardkit.verdict")  # the guard tells the judge, with its token, and exits 0
    fail("the guard did not tell the judge")


def _rk_main():
    """Forks first: the judge reads the payload only after, so the program's process never held it."""
    import os

    setup_r, setup_w = os.pipe()
    emit_r, emit_w = os.pipe()
    try:
        pid = os.fork()
    except OSError as exc:
        os.write(2, ("rewardkit: could not fork the program's process: %s\n" % exc).encode())
        os._exit(1)
    if pid:
        os.close(setup_r)
        os.close(emit_w)
        _rk_judge(os, pid, setup_w, emit_r)
    try:
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)  # the payload's pipe: the program's stdin is empty
        os.close(null)
        os.close(setup_w)
        os.close(emit_r)
    except BaseException:
        os._exit(1)
    _rk_program(os, setup_r, emit_w)


HELPER = "@HELPER@"
EMIT = "@EMIT@"
EMIT_ID = "@EMIT_ID@"
PROTECTED = (@PROTECTED@)
_rk_main()
'''

PROTECTED_BUILTINS = (
    "isinstance", "issubclass", "type", "len", "repr", "str", "int", "float", "bool", "list", "tuple",
    "dict", "set", "frozenset", "sorted", "abs", "round", "all", "any", "hasattr", "getattr", "id", "hash",
    "print", "iter", "next", "range", "zip", "enumerate", "AssertionError", "Exception", "BaseException",
)  # fmt: skip
"""Builtins the tests always see as the real ones, even where the solution defines a global of that name."""

HARNESS_SOURCE = (
    HARNESS.replace("@HELPER@", HARNESS_COMPARE)
    .replace("@EMIT_ID@", HARNESS_EMIT_ID)
    .replace("@EMIT@", HARNESS_EMIT)
    .replace("@PROTECTED@", ", ".join(repr(n) for n in PROTECTED_BUILTINS) + ",")
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
