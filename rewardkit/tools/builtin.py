"""Built-in tools: an arithmetic calculator, a Python runner (through the sandbox), and keyword search.

The calculator evaluates arithmetic from a parsed syntax tree (never ``eval``) and refuses work whose
size it cannot bound (``9**9**9``), so a call costs microseconds whatever the model writes. The Python
tool runs the model's program in ``rewardkit.sandbox`` (another process, with rlimits and a kill on
timeout): a thread cannot be killed, a process can. Tool objects here pickle cleanly (environments are
shipped to scoring workers); the sandbox is created lazily in the process that first runs code.
"""

from __future__ import annotations

import ast
import operator
import re
import threading
from collections.abc import Sequence
from typing import Any

from rewardkit.tools.schema import Tool, tool_schema

MAX_EXPRESSION_CHARS = 1000
MAX_RESULT_BITS = 200_000
"""About 60,000 decimal digits: far past any task here, small enough to compute in microseconds."""

_BINARY = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
}


# ---- calculator -------------------------------------------------------------------------------------
def calculator(expression: str) -> str:
    """Evaluate an arithmetic expression exactly, with integers of any size.

    Args:
        expression: numbers with + - * / // % ** and parentheses, e.g. "123456789 * 987654321 + 42".
    """
    if len(expression) > MAX_EXPRESSION_CHARS:
        raise ValueError(f"expression is longer than {MAX_EXPRESSION_CHARS} characters")
    cleaned = expression.replace("^", "**").replace("×", "*").replace("÷", "/")
    cleaned = re.sub(r"(?<=\d)[_,](?=\d{3})", "", cleaned)  # 1,234,567 and 1_234_567
    try:
        tree = ast.parse(cleaned.strip(), mode="eval")
    except SyntaxError as exc:
        raise ValueError(f"not an arithmetic expression: {exc.msg}") from None
    return _format_number(_evaluate(tree.body))


def _evaluate(node: ast.AST) -> int | float:
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        return node.value
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        value = _evaluate(node.operand)
        return -value if isinstance(node.op, ast.USub) else value
    if isinstance(node, ast.BinOp):
        left, right = _evaluate(node.left), _evaluate(node.right)
        if isinstance(node.op, ast.Pow):
            return _power(left, right)
        if isinstance(node.op, ast.Div):
            if isinstance(left, int) and isinstance(right, int) and right and left % right == 0:
                return left // right  # exact quotients stay exact integers
            return left / right
        if type(node.op) in _BINARY:
            result = _BINARY[type(node.op)](left, right)
            if isinstance(result, int) and result.bit_length() > MAX_RESULT_BITS:
                raise ValueError("result is too large")
            return result
    raise ValueError(f"unsupported element {type(node).__name__} (only numbers and + - * / // % **)")


def _power(base: int | float, exponent: int | float) -> int | float:
    if isinstance(base, int) and isinstance(exponent, int) and exponent > 0:
        if max(base.bit_length(), 1) * exponent > MAX_RESULT_BITS and abs(base) > 1:
            raise ValueError("result is too large")
    elif abs(exponent) > 10_000:
        raise ValueError("exponent is too large")
    return base**exponent


def _format_number(value: int | float) -> str:
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return str(int(value))
    return str(value)


def calculator_tool(timeout_s: float | None = None) -> Tool:
    return Tool("calculator", calculator, tool_schema(calculator), timeout_s)


# ---- python (sandboxed) -----------------------------------------------------------------------------
def python(code: str) -> str:
    """Run a Python 3 program and return what it prints (stdout, then stderr if any).

    Args:
        code: a complete program; print() the values you need to see.
    """
    raise RuntimeError("python() is a schema stub; use python_tool() to get a runnable tool")


class SandboxPython:
    """The callable behind ``python_tool``: runs code in a sandbox created on first use."""

    def __init__(self, kind: str = "local", timeout_s: float = 5.0, memory_mb: int = 256) -> None:
        self.kind, self.timeout_s, self.memory_mb = kind, timeout_s, memory_mb
        self._sandbox: Any = None
        self._lock = threading.Lock()

    def __call__(self, code: str) -> str:
        result = self._get().run(code, timeout_s=self.timeout_s, memory_mb=self.memory_mb)
        if result.timed_out:
            return f"Error: the program ran past its {self.timeout_s:g} s limit.\n{result.stdout}"
        text = result.stdout
        if result.stderr.strip():
            text += ("\n" if text else "") + f"stderr:\n{result.stderr}"
        if result.exit_code not in (0, None):
            text += f"\n(exit code {result.exit_code})"
        return text if text.strip() else "(the program printed nothing; use print())"

    def available(self) -> bool:
        """Whether the sandbox can be built here (it is built on first use otherwise)."""
        try:
            self._get()
        except Exception:  # noqa: BLE001 - any failure means: not here
            return False
        return True

    def _get(self) -> Any:
        with self._lock:
            if self._sandbox is None:
                from rewardkit.sandbox import get_sandbox

                self._sandbox = get_sandbox(self.kind)
            return self._sandbox

    def __getstate__(self) -> dict[str, Any]:
        return {"kind": self.kind, "timeout_s": self.timeout_s, "memory_mb": self.memory_mb}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(**state)


def python_tool(*, sandbox: str = "local", timeout_s: float = 5.0, memory_mb: int = 256) -> Tool:
    """A ``python`` tool that runs code in ``get_sandbox(sandbox)``. The call limit leaves the sandbox
    time to start a process and kill the program itself (it is the one that can)."""
    runner = SandboxPython(sandbox, timeout_s, memory_mb)
    return Tool("python", runner, tool_schema(python), timeout_s + 5.0)


# ---- search -----------------------------------------------------------------------------------------
def search(query: str) -> str:
    """Search the knowledge base; returns the best matching entries, one per line.

    Args:
        query: keywords, e.g. a name and the fact you need ("Velmora founded").
    """
    raise RuntimeError("search() is a schema stub; use search_tool(documents) to get a runnable tool")


_WORD_RE = re.compile(r"[a-z0-9]+")


def words(text: str) -> set[str]:
    return set(_WORD_RE.findall(text.lower()))


class KeywordSearch:
    """Ranks documents by how many query words they contain (title words count double)."""

    def __init__(self, documents: Sequence[tuple[str, str]], top_k: int = 3) -> None:
        self.documents = [(title, text) for title, text in documents]
        self.top_k = top_k
        self._index = [(words(title), words(text)) for title, text in self.documents]

    def __call__(self, query: str) -> str:
        wanted = words(query)
        if not wanted:
            return "No results: the query has no words."
        ranked = sorted(
            (
                (2 * len(wanted & title) + len(wanted & body), -i)
                for i, (title, body) in enumerate(self._index)
            ),
            reverse=True,
        )
        hits = [-neg for score, neg in ranked[: self.top_k] if score > 0]
        if not hits:
            return "No results."
        return "\n".join(f"{self.documents[i][0]}: {self.documents[i][1]}" for i in hits)


def search_tool(
    documents: Sequence[tuple[str, str]], *, top_k: int = 3, timeout_s: float | None = None
) -> Tool:
    """A ``search`` tool over ``(title, text)`` documents."""
    return Tool("search", KeywordSearch(documents, top_k), tool_schema(search), timeout_s)
