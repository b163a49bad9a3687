"""Function-call verification: each rule in both directions, a generated corpus, and the environment."""

from __future__ import annotations

import itertools
import json
import random
from typing import Any

import pytest

from rewardkit import check_env, load_env
from rewardkit.config import ConfigError
from rewardkit.verifiers.function_call import DEFECTS, assign, check_calls, normalize_string, type_matches

WEATHER = {
    "name": "get_weather",
    "parameters": {
        "type": "object",
        "properties": {
            "city": {"type": "string"},
            "days": {"type": "integer"},
            "temp": {"type": "number"},
            "unit": {"type": ["string", "null"]},
            "metric": {"type": "boolean"},
            "hours": {"type": "array", "items": {"type": "integer"}},
            "where": {"type": "object", "properties": {"lat": {"type": "number"}}},
        },
        "required": ["city"],
    },
}
BFCL_TYPES = {  # BFCL's Python-flavoured type names, wrapped the OpenAI way
    "type": "function",
    "function": {
        "name": "f",
        "parameters": {
            "type": "dict",
            "properties": {"x": {"type": "float"}, "pair": {"type": "tuple"}, "opts": {"type": "dict"}},
        },
    },
}
F_ONLY: list[Any] = []  # no schema: types are inferred from the acceptable values


def _verdict(made, expected, functions=None):
    return check_calls([(name, args) for name, args in made], expected, functions)


def _defects(verdict) -> dict[str, float]:
    metrics = verdict.metrics()
    return {k: metrics[k] for k in (*DEFECTS, "extra_call", "missing_call") if metrics[k]}


# (case, made calls, expected calls, schemas, the defect or None for an exact match)
RULES = [
    # 1. the function name, compared exactly
    ("same name", [("f", {"a": 1})], [{"f": {"a": [1]}}], F_ONLY, None),
    ("name differs in case", [("F", {"a": 1})], [{"f": {"a": [1]}}], F_ONLY, "wrong_function"),
    ("name with a space", [("f ", {"a": 1})], [{"f": {"a": [1]}}], F_ONLY, "wrong_function"),
    # 2. required arguments: no "" in the list, or the schema's "required"
    ("required given", [("f", {"a": 1})], [{"f": {"a": [1], "b": [2, ""]}}], F_ONLY, None),
    ("required left out", [("f", {"b": 2})], [{"f": {"a": [1], "b": [2, ""]}}], F_ONLY, "missing_arg"),
    (
        "optional left out",
        [("get_weather", {"city": "Paris"})],
        [{"get_weather": {"city": ["Paris"], "days": [3, ""]}}],
        [WEATHER],
        None,
    ),
    (
        "schema-required left out though ''",
        [("get_weather", {"days": 3})],
        [{"get_weather": {"city": ["Paris", ""], "days": [3]}}],
        [WEATHER],
        "missing_arg",
    ),
    # 3. no argument the expected call does not list
    ("only listed arguments", [("f", {"a": 1, "b": 2})], [{"f": {"a": [1], "b": [2, ""]}}], F_ONLY, None),
    (
        "an unlisted argument",
        [("f", {"a": 1, "c": 2})],
        [{"f": {"a": [1], "b": [2, ""]}}],
        F_ONLY,
        "unknown_arg",
    ),
    (
        "in the schema, not expected",
        [("get_weather", {"city": "Paris", "days": 2})],
        [{"get_weather": {"city": ["Paris"]}}],
        [WEATHER],
        "unknown_arg",
    ),
    # 4. types: int for number, tuples as lists, a bool is no int
    (
        "int where number declared",
        [("get_weather", {"city": "x", "temp": 20})],
        [{"get_weather": {"city": ["x"], "temp": [20.0]}}],
        [WEATHER],
        None,
    ),
    (
        "bool where number declared",
        [("get_weather", {"city": "x", "temp": True})],
        [{"get_weather": {"city": ["x"], "temp": [1.0]}}],
        [WEATHER],
        "wrong_type",
    ),
    (
        "int where integer declared",
        [("get_weather", {"city": "x", "days": 1})],
        [{"get_weather": {"city": ["x"], "days": [1]}}],
        [WEATHER],
        None,
    ),
    (
        "bool where integer declared",
        [("get_weather", {"city": "x", "days": True})],
        [{"get_weather": {"city": ["x"], "days": [1]}}],
        [WEATHER],
        "wrong_type",
    ),
    (
        "float where integer declared",
        [("get_weather", {"city": "x", "days": 1.0})],
        [{"get_weather": {"city": ["x"], "days": [1]}}],
        [WEATHER],
        "wrong_type",
    ),
    (
        "string where string declared",
        [("get_weather", {"city": "x"})],
        [{"get_weather": {"city": ["x"]}}],
        [WEATHER],
        None,
    ),
    (
        "number where string declared",
        [("get_weather", {"city": 5})],
        [{"get_weather": {"city": ["5"]}}],
        [WEATHER],
        "wrong_type",
    ),
    (
        "bool where boolean declared",
        [("get_weather", {"city": "x", "metric": False})],
        [{"get_weather": {"city": ["x"], "metric": [False]}}],
        [WEATHER],
        None,
    ),
    (
        "int where boolean declared",
        [("get_weather", {"city": "x", "metric": 0})],
        [{"get_weather": {"city": ["x"], "metric": [False]}}],
        [WEATHER],
        "wrong_type",
    ),
    (
        "null allowed by a type list",
        [("get_weather", {"city": "x", "unit": None})],
        [{"get_weather": {"city": ["x"], "unit": [None, "c"]}}],
        [WEATHER],
        None,
    ),
    (
        "number outside a type list",
        [("get_weather", {"city": "x", "unit": 3})],
        [{"get_weather": {"city": ["x"], "unit": [None, "c"]}}],
        [WEATHER],
        "wrong_type",
    ),
    (
        "array items of the declared type",
        [("get_weather", {"city": "x", "hours": [1, 2]})],
        [{"get_weather": {"city": ["x"], "hours": [[1, 2]]}}],
        [WEATHER],
        None,
    ),
    (
        "array items of another type",
        [("get_weather", {"city": "x", "hours": ["1", 2]})],
        [{"get_weather": {"city": ["x"], "hours": [[1, 2]]}}],
        [WEATHER],
        "wrong_type",
    ),
    (
        "object property of its type",
        [("get_weather", {"city": "x", "where": {"lat": 1}})],
        [{"get_weather": {"city": ["x"], "where": [{"lat": [1.0]}]}}],
        [WEATHER],
        None,
    ),
    (
        "object property of another type",
        [("get_weather", {"city": "x", "where": {"lat": "1"}})],
        [{"get_weather": {"city": ["x"], "where": [{"lat": [1.0]}]}}],
        [WEATHER],
        "wrong_type",
    ),
    ("BFCL float takes an int", [("f", {"x": 2})], [{"f": {"x": [2.0]}}], [BFCL_TYPES], None),
    ("BFCL float refuses a string", [("f", {"x": "2"})], [{"f": {"x": [2.0]}}], [BFCL_TYPES], "wrong_type"),
    ("BFCL tuple takes a list", [("f", {"pair": [1, 2]})], [{"f": {"pair": [(1, 2)]}}], [BFCL_TYPES], None),
    (
        "BFCL dict refuses a list",
        [("f", {"opts": [1]})],
        [{"f": {"opts": [{"k": [1]}]}}],
        [BFCL_TYPES],
        "wrong_type",
    ),
    ("no schema: tuple against a list", [("f", {"a": (1, 2)})], [{"f": {"a": [[1, 2]]}}], F_ONLY, None),
    ("no schema: bool against an int", [("f", {"a": True})], [{"f": {"a": [1]}}], F_ONLY, "wrong_type"),
    ("no schema: int against a float", [("f", {"a": 3})], [{"f": {"a": [3.0]}}], F_ONLY, None),
    ("no schema: string against an int", [("f", {"a": "3"})], [{"f": {"a": [3]}}], F_ONLY, "wrong_type"),
    # 5. values: any acceptable value, strings normalised, containers recursively
    ("a second acceptable value", [("f", {"a": 2})], [{"f": {"a": [1, 2]}}], F_ONLY, None),
    ("an unlisted value", [("f", {"a": 3})], [{"f": {"a": [1, 2]}}], F_ONLY, "wrong_value"),
    ("a close but unequal number", [("f", {"a": 3.1})], [{"f": {"a": [3]}}], F_ONLY, "wrong_value"),
    ("case and surrounding space", [("f", {"s": "  NEW york "})], [{"f": {"s": ["New York"]}}], F_ONLY, None),
    ("a different word", [("f", {"s": "Newark"})], [{"f": {"s": ["New York"]}}], F_ONLY, "wrong_value"),
    (
        "ignored punctuation",
        [("f", {"s": "new_york-city, n.y.!"})],
        [{"f": {"s": ["New York City NY"]}}],
        F_ONLY,
        None,
    ),
    (
        "punctuation that counts",
        [("f", {"s": "(new york)"})],
        [{"f": {"s": ["new york"]}}],
        F_ONLY,
        "wrong_value",
    ),
    ("'' only marks omission", [("f", {"s": ""})], [{"f": {"s": ["", "x"]}}], F_ONLY, "wrong_value"),
    ("a list element-wise", [("f", {"a": [1, "B"]})], [{"f": {"a": [[1, "b"]]}}], F_ONLY, None),
    ("a list in another order", [("f", {"a": [2, 1]})], [{"f": {"a": [[1, 2]]}}], F_ONLY, "wrong_value"),
    ("a longer list", [("f", {"a": [1, 2, 3]})], [{"f": {"a": [[1, 2]]}}], F_ONLY, "wrong_value"),
    (
        "a dict, optional key left out",
        [("f", {"d": {"k": 1}})],
        [{"f": {"d": [{"k": [1, 2], "o": ["x", ""]}]}}],
        F_ONLY,
        None,
    ),
    (
        "a dict missing a required key",
        [("f", {"d": {"o": "x"}})],
        [{"f": {"d": [{"k": [1, 2], "o": ["x", ""]}]}}],
        F_ONLY,
        "wrong_value",
    ),
    (
        "a dict with an unlisted key",
        [("f", {"d": {"k": 1, "z": 0}})],
        [{"f": {"d": [{"k": [1, 2], "o": ["x", ""]}]}}],
        F_ONLY,
        "wrong_value",
    ),
    (
        "a dict with a wrong value",
        [("f", {"d": {"k": 3}})],
        [{"f": {"d": [{"k": [1, 2], "o": ["x", ""]}]}}],
        F_ONLY,
        "wrong_value",
    ),
    ("dicts nested in a list", [("f", {"d": [{"k": "A"}]})], [{"f": {"d": [[{"k": ["a"]}]]}}], F_ONLY, None),
    (
        "a dict nested in a list, wrong",
        [("f", {"d": [{"k": "b"}]})],
        [{"f": {"d": [[{"k": ["a"]}]]}}],
        F_ONLY,
        "wrong_value",
    ),
    # 6. parallel calls as a multiset
    ("calls in another order", [("g", {}), ("f", {"a": 1})], [{"f": {"a": [1]}}, {"g": {}}], F_ONLY, None),
    (
        "same function, needs the optimal pairing",
        [("f", {"a": 1}), ("f", {"a": 2})],
        [{"f": {"a": [1, 2]}}, {"f": {"a": [1]}}],
        F_ONLY,
        None,
    ),
    ("a duplicated call", [("f", {"a": 1}), ("f", {"a": 1})], [{"f": {"a": [1]}}], F_ONLY, "extra_call"),
    ("a call left out", [("f", {"a": 1})], [{"f": {"a": [1]}}, {"g": {}}], F_ONLY, "missing_call"),
    ("nothing expected, nothing made", [], [], F_ONLY, None),
    ("nothing expected, a call made", [("f", {})], [], F_ONLY, "extra_call"),
]


@pytest.mark.parametrize(
    ("made", "expected", "functions", "defect"), [r[1:] for r in RULES], ids=[r[0] for r in RULES]
)
def test_rule(made, expected, functions, defect):
    verdict = _verdict(made, expected, functions)
    if defect is None:
        assert verdict.all_ok and verdict.reward("all_or_nothing") == 1.0 and verdict.reward("partial") == 1.0
        assert _defects(verdict) == {}
    else:
        assert verdict.reward("all_or_nothing") == 0.0 and verdict.metrics()["correct"] == 0.0
        assert _defects(verdict) == {defect: 1.0}


def test_type_matches_keeps_bools_apart_from_numbers():
    for declared in ("integer", "number", "int", "float"):
        assert type_matches(1, {"type": declared}) and not type_matches(True, {"type": declared})
    assert type_matches(1.5, {"type": "number"}) and not type_matches(1.5, {"type": "integer"})
    assert type_matches(True, {"type": "boolean"}) and not type_matches(1, {"type": "boolean"})
    assert type_matches((1, 2), {"type": "array"}) and type_matches([1], {"type": "tuple"})
    assert type_matches("x", {"type": "some_future_type"}) and type_matches("x", {})


def test_normalize_string_drops_exactly_the_listed_characters():
    assert normalize_string(" A b\tC\n,.;:!?'\"-_/ ") == "abc"
    assert normalize_string("(a)[b]{c}&+=#@") == "(a)[b]{c}&+=#@"


def test_a_defect_is_reported_against_the_call_it_meant():
    verdict = _verdict([("g", {"b": 2}), ("f", {"a": 9})], [{"f": {"a": [1]}}, {"g": {"b": [2]}}])
    assert _defects(verdict) == {"wrong_value": 1.0}
    (bad,) = [c for c in verdict.checks if c.defects]
    assert (bad.expected, bad.made, bad.defects) == (0, 1, (("wrong_value", "a"),))


@pytest.mark.parametrize(
    ("made", "reward"),
    [
        ([("f", {}), ("g", {}), ("h", {})], 1.0),
        ([("f", {}), ("g", {})], 2 / 3),  # one missing call: no credit for it, no penalty either
        ([("f", {}), ("g", {}), ("x", {})], 2 / 3),  # x is paired with h: a wrong call earns nothing
        ([("f", {}), ("g", {}), ("h", {}), ("x", {})], 2 / 3),  # an extra call costs one matched call
        ([("x", {}), ("y", {}), ("z", {}), ("w", {}), ("v", {})], 0.0),  # clipped at 0
    ],
)
def test_partial_credit(made, reward):
    verdict = _verdict(made, [{"f": {}}, {"g": {}}, {"h": {}}])
    assert verdict.reward("partial") == pytest.approx(reward)
    assert verdict.reward("all_or_nothing") == float(reward == 1.0)


@pytest.mark.parametrize(
    ("expected", "functions", "message"),
    [
        ({"f": {}}, None, "must be a list"),
        ([{"f": {}, "g": {}}], None, "one function name"),
        ([{"f": {"a": 1}}], None, "list of acceptable values"),
        ([{"f": {"d": [{"k": 1}]}}], None, "list of acceptable values"),  # nested specs too
        ([{"f": {}}], [{"parameters": {}}], "has no name"),
        ([{"get_weather": {"days": [1]}}], [WEATHER], "leaves out required argument"),
    ],
)
def test_malformed_task_data_raises(expected, functions, message):
    with pytest.raises(ValueError, match=message):
        check_calls([], expected, functions)


def _brute_force(cost):
    n, m = len(cost), len(cost[0]) if cost else 0
    if n <= m:
        return min(sum(cost[i][j] for i, j in enumerate(p)) for p in itertools.permutations(range(m), n))
    return min(sum(cost[i][j] for j, i in enumerate(p)) for p in itertools.permutations(range(n), m))


def test_assignment_is_optimal_against_brute_force():
    rng = random.Random(0)
    for _ in range(400):
        n, m = rng.randint(1, 5), rng.randint(1, 5)
        cost = [[rng.randint(0, 9) for _ in range(m)] for _ in range(n)]
        result = assign(cost)
        columns = [j for j in result if j >= 0]
        assert len(columns) == min(n, m) == len(set(columns))
        assert sum(cost[i][j] for i, j in enumerate(result) if j >= 0) == _brute_force(cost)
    assert assign([]) == [] and assign([[], []]) == [-1, -1]


# ---- a generated corpus ------------------------------------------------------------------------------
WORDS = [
    "paris",
    "New York",
    "san_francisco",
    "tokyo",
    "red",
    "Blue Sky",
    "alpha-beta",
    "kg",
    "usd",
    "Mr. Smith",
]
KINDS = ("integer", "number", "string", "boolean", "array", "object")
MUTATIONS = (
    "wrong_function",
    "missing_arg",
    "unknown_arg",
    "wrong_type",
    "wrong_value",
    "extra_call",
    "missing_call",
)


def _schema(rng: random.Random, i: int) -> dict[str, Any]:
    """A function with 1-5 parameters of random kinds; the first is required, the rest may be optional."""
    kinds = [rng.choice(KINDS) for _ in range(rng.randint(1, 5))]
    properties: dict[str, Any] = {}
    for j, kind in enumerate(kinds):
        prop: dict[str, Any] = {"type": kind}
        if kind == "array":
            prop["items"] = {"type": "integer"}
        elif kind == "object":
            prop["properties"] = {"n": {"type": "integer"}, "s": {"type": "string"}}
        properties[f"p{j}_{kind}"] = prop
    required = [p for j, p in enumerate(properties) if j == 0 or rng.random() < 0.5]
    return {
        "name": f"fn_{i}",
        "parameters": {"type": "object", "properties": properties, "required": required},
    }


def _acceptable(rng: random.Random, kind: str) -> list[Any]:
    """1-3 distinct acceptable values of a kind (one for booleans, so a flipped bool is wrong)."""
    k = rng.randint(1, 3)
    if kind == "integer":
        return rng.sample(range(-20, 50), k)
    if kind == "number":  # whole floats too, so that an int can stand in for them
        return rng.sample([0.5, 2.0, 2.5, -1.25, 10.0, 3.75, 100.0], k)
    if kind == "string":
        return rng.sample(WORDS, k)
    if kind == "boolean":
        return [rng.random() < 0.5]
    if kind == "array":
        return [rng.sample(range(50), rng.randint(1, 3)) for _ in range(min(k, 2))]
    return [{"n": rng.sample(range(10), 2), "s": [rng.choice(WORDS), ""]}]


def _made_value(rng: random.Random, option: Any) -> Any:
    """A value equal to ``option`` under the rules, written differently where the rules allow."""
    if isinstance(option, str):
        return rng.choice(
            [option, option.upper(), f"  {option} ", option.replace(" ", "_"), option.replace("-", " ")]
        )
    if isinstance(option, float) and option.is_integer() and rng.random() < 0.5:
        return int(option)  # int for float
    if isinstance(option, list):
        return list(option) if rng.random() < 0.5 else tuple(option)
    if isinstance(
        option, dict
    ):  # a dict spec: one acceptable value per key, optional keys sometimes left out
        made = {
            key: _made_value(rng, rng.choice([o for o in opts if o != ""])) for key, opts in option.items()
        }
        if "" in option["s"] and rng.random() < 0.5:
            del made["s"]
        return made
    return option


def _wrong_type(kind: str, rng: random.Random) -> Any:
    return {
        "integer": rng.choice(["7", True]),
        "number": rng.choice([True, "1.5"]),
        "string": rng.choice([42, ["x"]]),
        "boolean": rng.choice([1, "true"]),
        "array": "1,2",
        "object": [1],
    }[kind]


def _wrong_value(kind: str, options: list[Any], rng: random.Random) -> Any:
    if kind == "boolean":
        return not options[0]
    if kind == "array":
        return [*options[0], 999]  # longer than every acceptable list
    fixed = {"integer": 999, "number": 1000.5, "object": {"n": 999}}
    return fixed[kind] if kind in fixed else f"qx{rng.randrange(10**6)}"


def _sample(rng: random.Random, schemas: list[dict[str, Any]]):
    """Expected calls for 1-4 distinct functions, a correct made variant, and the schemas (or none)."""
    chosen = rng.sample(schemas, rng.randint(1, 4))
    expected, made = [], []
    for schema in chosen:
        spec, args = {}, {}
        for arg, prop in schema["parameters"]["properties"].items():
            options = _acceptable(rng, prop["type"])
            if arg not in schema["parameters"]["required"]:
                options.append("")
            spec[arg] = options
            if "" not in options or rng.random() < 0.6:
                args[arg] = _made_value(rng, rng.choice([o for o in options if o != ""]))
        expected.append({schema["name"]: spec})
        made.append((schema["name"], args))
    rng.shuffle(made)  # parallel calls in any order
    return expected, made, chosen if rng.random() < 0.7 else None


def _mutate(rng: random.Random, mutation: str, expected, made):
    """``made`` with exactly one defect of the kind ``mutation`` (None when it does not apply)."""
    made = [(name, dict(args)) for name, args in made]
    k = rng.randrange(len(made))
    name, args = made[k]
    (spec,) = [next(iter(e.values())) for e in expected if name in e]
    required = [a for a, opts in spec.items() if "" not in opts and a in args]
    if mutation == "wrong_function":
        made[k] = (name + "_v2", args)
    elif mutation == "missing_arg":
        if not required:
            return None
        del args[rng.choice(required)]
    elif mutation == "unknown_arg":
        args["not_a_parameter"] = 1
    elif mutation == "extra_call":
        made.append(rng.choice(made))
    elif mutation == "missing_call":
        del made[k]
    else:
        arg = rng.choice(sorted(args)) if args else None
        if arg is None:
            return None
        kind = arg.split("_", 1)[1]  # parameter names carry their kind: p0_integer
        args[arg] = _wrong_type(kind, rng) if mutation == "wrong_type" else _wrong_value(kind, spec[arg], rng)
    return made


def _corpus():
    rng = random.Random(0)
    schemas = [_schema(rng, i) for i in range(40)]
    cases = []
    for i in range(500):
        expected, made, functions = _sample(rng, schemas)
        for offset in range(len(MUTATIONS)):  # the first mutation that applies, round-robin over kinds
            mutation = MUTATIONS[(i + offset) % len(MUTATIONS)]
            wrong = _mutate(rng, mutation, expected, made)
            if wrong is not None:
                break
        cases.append((expected, functions, made, wrong, mutation))
    return cases


CORPUS = _corpus()


def test_corpus_is_large_and_covers_every_defect():
    assert sum(len(expected) for expected, *_ in CORPUS) >= 1000
    assert {mutation for *_, mutation in CORPUS} == set(MUTATIONS)
    assert sum(functions is None for _, functions, *_ in CORPUS) > 50  # some without schemas


def test_corpus_correct_variants_score_one():
    for expected, functions, made, _, _ in CORPUS:
        verdict = check_calls(made, expected, functions)
        assert verdict.reward("all_or_nothing") == 1.0, (expected, made, _defects(verdict))
        assert verdict.reward("partial") == 1.0


def test_corpus_wrong_variants_score_zero_and_name_the_defect():
    for expected, functions, _, wrong, mutation in CORPUS:
        verdict = check_calls(wrong, expected, functions)
        assert verdict.reward("all_or_nothing") == 0.0, (expected, wrong)
        assert verdict.reward("partial") < 1.0
        assert _defects(verdict) == {mutation: 1.0}, (expected, wrong, functions)


def _hermes(made) -> str:
    return "\n".join(
        f"<tool_call>{json.dumps({'name': name, 'arguments': args})}</tool_call>" for name, args in made
    )


def test_corpus_through_the_environment():
    samples, want = [], []
    for expected, functions, made, wrong, _ in CORPUS[:200]:
        info = (
            {"expected_calls": expected}
            if functions is None
            else {"expected_calls": expected, "functions": functions}
        )
        samples += [{"completion": _hermes(made), "info": info}, {"completion": _hermes(wrong), "info": info}]
        want += [1.0, 0.0]
    with load_env("function_call") as env:
        scores = env.score_batch(samples)
    assert [s.reward for s in scores] == want
    assert all(s.status == "ok" for s in scores)


# ---- the environment ---------------------------------------------------------------------------------
INFO = {"expected_calls": [{"get_weather": {"city": ["Paris"], "days": [3, ""]}}], "functions": [WEATHER]}


@pytest.fixture(scope="module")
def env():
    with load_env("function_call") as env:
        yield env


def test_registry_builds_it_and_it_passes_check_env(env):
    assert type(env).__name__ == "FunctionCallEnv" and env.correctness_metric == "correct"
    assert check_env(env)["gold_examples"] >= 3
    with load_env("function_call", mode="partial") as partial:
        assert check_env(partial)["name"] == "function_call"


def test_text_and_openai_messages(env):
    text = 'Sure. <tool_call>{"name": "get_weather", "arguments": {"city": "paris", "days": 3}}</tool_call>'
    assert env.score(text, info=INFO).reward == 1.0
    call = {"type": "function", "function": {"name": "get_weather", "arguments": '{"city": "PARIS"}'}}
    messages = [
        {"role": "user", "content": "weather?"},
        {"role": "assistant", "content": None, "tool_calls": [call]},
    ]
    assert env.score(messages, info=INFO).reward == 1.0
    score = env.score(
        '<tool_call>{"name": "get_weather", "arguments": {"city": "Lyon"}}</tool_call>', info=INFO
    )
    assert score.reward == 0.0 and score.metrics["wrong_value"] == 1.0
    assert score.info["calls"] == [{"expected": "get_weather", "made": 0, "defects": ["wrong_value:city"]}]
    assert env.score("I think it is sunny.", info=INFO).metrics["missing_call"] == 1.0


def test_unreadable_calls_score_zero_without_raising(env):
    good = '<tool_call>{"name": "get_weather", "arguments": {"city": "Paris"}}</tool_call>'
    for text in ("<tool_call>{not json</tool_call>", good + "<tool_call>[1]</tool_call>", "<tool_call>"):
        score = env.score(text, info=INFO)
        assert (score.status, score.reward, score.metrics["correct"]) == ("ok", 0.0, 0.0)
        assert score.metrics["parse_error"] == 1.0 and len(score.info["parse_errors"]) == 1
    with load_env("function_call", mode="partial") as partial:
        assert partial.score(good + "<tool_call>{bad</tool_call>", info=INFO).reward == 0.0


def test_partial_mode_through_the_environment():
    info = {"expected_calls": [{"f": {}}, {"g": {}}]}
    with load_env("function_call", mode="partial") as env:
        assert env.score('<tool_call>{"name": "g", "arguments": {}}</tool_call>', info=info).reward == 0.5


def test_broken_task_data_is_an_error_not_a_zero(env):
    assert env.score("<tool_call>{}</tool_call>").status == "error"  # no info["expected_calls"]
    assert env.score("x", info={"expected_calls": {"f": {}}}).status == "error"


def test_bad_mode_is_refused():
    with pytest.raises(ConfigError, match="all_or_nothing"):
        load_env("function_call", mode="some")
