"""The environment registry: names, @reward_env, duplicates, and plugins found through entry points.

The plugin test pip-installs a real package (tests/fixtures/plugin_pkg) into a temporary --target
folder and looks it up from a fresh interpreter, the way a user's second package would be found. The
venv itself is never modified, so parallel or repeated runs cannot leave a stale plugin behind.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import rewardkit
from rewardkit import Environment, load_env, register_env, registry, reward_env
from rewardkit.registry import ENTRY_POINT_GROUP, FunctionEnv, RewardFunction, env_specs

PLUGIN_SRC = Path(__file__).parent / "fixtures" / "plugin_pkg"
PLUGIN_ENVS = ["rkdemo_factory", "rkdemo_keyword", "rkdemo_reexport", "rkdemo_shout"]


def _run_python(code: str, pythonpath: Path | None = None, timeout: int = 120) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    if pythonpath is not None:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(pythonpath), env.get("PYTHONPATH")]))
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
    )


def _skip_unless_pip_can_build() -> None:
    """Building without isolation needs pip and setuptools here (and wheel before setuptools 70.1)."""
    # Installed distributions are looked up, never imported or even find_spec'd: setuptools'
    # distutils hack reacts to a find_spec("pip") by switching this process to the stdlib distutils,
    # which then breaks a later import of setuptools (trl, torch) in the same test session.
    versions = {}
    for dist in ("pip", "setuptools", "wheel"):
        try:
            versions[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            versions[dist] = None
    for dist in ("pip", "setuptools"):
        if versions[dist] is None:
            pytest.skip(f"{dist} is not installed: cannot pip-install the test plugin package")
    major, minor = (int(x) for x in versions["setuptools"].split(".")[:2])
    if (major, minor) < (70, 1) and versions["wheel"] is None:
        pytest.skip("setuptools < 70.1 needs the wheel package to build the test plugin package")


@pytest.fixture(scope="module")
def plugin_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The fixture plugin, pip-installed into its own folder (put on PYTHONPATH by the tests)."""
    _skip_unless_pip_can_build()
    root = tmp_path_factory.mktemp("plugin")
    src = root / "src"
    shutil.copytree(PLUGIN_SRC, src)  # build in a copy: no build/ or egg-info in the repository
    site = root / "site"
    cmd = [sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index"]
    done = subprocess.run(
        [*cmd, "--quiet", "--disable-pip-version-check", "--target", str(site), str(src)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, f"pip install of the fixture plugin failed:\n{done.stdout}\n{done.stderr}"
    return site


def test_installed_plugin_is_found_in_a_fresh_interpreter(plugin_site):
    code = f"""
        import json, rewardkit
        from rewardkit.registry import env_specs
        out = {{"names": rewardkit.list_envs(), "sources": {{}}, "scores": {{}}, "checks": {{}}}}
        for name in {PLUGIN_ENVS!r}:
            env = rewardkit.load_env(name)
            out["scores"][name] = [s.reward for s in env.score_batch(
                [{{"completion": "HELLO PLUGIN!"}}, {{"completion": "quiet xx"}}])]
            out["checks"][name] = rewardkit.check_env(env)["gold_examples"]
            out["sources"][name] = env_specs()[name].source
            env.close()
        print(json.dumps(out))
    """
    done = _run_python(code, plugin_site)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert set(PLUGIN_ENVS) <= set(out["names"]) and {"format", "efficiency"} <= set(out["names"])
    assert out["scores"] == {
        "rkdemo_shout": [1.0, 0.0],
        "rkdemo_reexport": [1.0, 0.0],
        "rkdemo_keyword": [0.0, 0.0],  # its keyword is "plugin", lowercase
        "rkdemo_factory": [0.0, 1.0],  # the factory builds a keyword env for "x"
    }
    assert all(n >= 1 for n in out["checks"].values())
    assert set(out["sources"].values()) == {"rk-demo-plugin"}


def test_plugin_env_scores_in_worker_processes(plugin_site):
    """Workers import the plugin by name: it must be importable there too, not only in the parent."""
    code = """
        import rewardkit
        if __name__ == "__main__":
            with rewardkit.load_env("rkdemo_shout", executor="process", workers=2) as env:
                print([s.reward for s in env.score_batch([{"completion": c} for c in ["YES", "no", "OK"]])])
    """
    done = _run_python(code, plugin_site)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[1.0, 0.0, 1.0]"


def test_cli_envs_table_shows_the_plugin_and_its_package(plugin_site):
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(plugin_site), os.environ.get("PYTHONPATH")]))
    )
    done = subprocess.run(
        [sys.executable, "-m", "rewardkit", "envs"], capture_output=True, text=True, env=env, timeout=120
    )
    assert done.returncode == 0, done.stderr
    rows = {line.split()[0]: line.split()[1:] for line in done.stdout.splitlines() if line.strip()}
    assert all(rows[name] == ["rk-demo-plugin"] for name in PLUGIN_ENVS), done.stdout
    assert rows["format"] == ["rewardkit"]
    assert rows["reasoning_gym:NAME"][:2] == ["family,", "rewardkit.envs.adapters.reasoning_gym"]


def test_plugin_is_absent_without_the_install():
    done = _run_python("import rewardkit; print(rewardkit.list_envs())")
    assert done.returncode == 0, done.stderr
    assert "rkdemo_shout" not in done.stdout and "format" in done.stdout


def test_clashing_entry_point_is_skipped_with_a_warning(tmp_path):
    """A plugin that reuses a built-in name must not break list_envs/load_env for everyone."""
    dist = tmp_path / "clash_plugin-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: clash-plugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(f"[{ENTRY_POINT_GROUP}]\nformat = clash_plugin:Env\n")
    code = """
        import warnings, rewardkit
        from rewardkit.registry import env_specs
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            names = rewardkit.list_envs()
        print(env_specs()["format"].source, rewardkit.load_env("format").score("<think>a</think><answer>b</answer>").reward)
        print("|".join(str(w.message) for w in caught))
    """
    done = _run_python(code, tmp_path)
    assert done.returncode == 0, done.stderr
    first, warned = done.stdout.strip().splitlines()[-2:]
    assert first == "rewardkit 1.0"
    assert "ignoring entry point format" in warned and "clash-plugin" in warned


def test_broken_plugin_fails_only_its_own_name(tmp_path):
    dist = tmp_path / "broken_plugin-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-plugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(f"[{ENTRY_POINT_GROUP}]\nrkbroken = no_such_module_rk:Env\n")
    code = """
        import rewardkit
        assert "rkbroken" in rewardkit.list_envs()  # listed: entry points are imported only when loaded
        assert rewardkit.load_env("format").score("x").status == "ok"
        try:
            rewardkit.load_env("rkbroken")
        except ImportError as exc:
            print(exc)
    """
    done = _run_python(code, tmp_path)
    assert done.returncode == 0, done.stderr
    assert "environment 'rkbroken' from broken-plugin cannot be imported" in done.stdout
    assert "no_such_module_rk" in done.stdout


def test_entry_point_naming_a_plain_function(tmp_path):
    """An undecorated reward function is accepted as one; anything else fails naming what to write."""
    dist = tmp_path / "plain_plugin-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: plain-plugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        f"[{ENTRY_POINT_GROUP}]\nrkplain = plain_rk:shout\nrkwrong = plain_rk:not_a_reward\n"
    )
    (tmp_path / "plain_rk.py").write_text(
        "def shout(completion, *, answer=None, prompt=None, info=None):\n"
        "    return 1.0 if completion.isupper() else 0.0\n\n"
        "def not_a_reward(text):\n"
        "    return 0.0\n"
    )
    code = """
        import rewardkit
        env = rewardkit.load_env("rkplain", executor="inline")
        print(env.name, env.score("HI").reward, env.score("hi").reward)
        try:
            rewardkit.load_env("rkwrong")
        except TypeError as exc:
            print(exc)
    """
    done = _run_python(code, tmp_path)
    assert done.returncode == 0, done.stderr
    scored, error = done.stdout.strip().splitlines()[-2:]
    assert scored == "rkplain 1.0 0.0"
    assert "environment 'rkwrong' from plain-plugin names plain_rk:not_a_reward" in error
    for hint in ("@rewardkit.reward_env", "Environment subclass", "factory", "fn(completion, *, answer"):
        assert hint in error


# ---- in-process registry ---------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _forget_names_registered_here():
    """Names registered by a test are dropped afterwards, so other test files see a clean registry."""
    before = set(registry._registry)
    yield
    for name in set(registry._registry) - before:
        del registry._registry[name]


def test_unknown_name_lists_known_names_and_how_to_register():
    with pytest.raises(KeyError) as err:
        load_env("no_such_env")
    message = str(err.value)
    for name in ("format", "efficiency", "weighted"):
        assert name in message
    assert "register_env" in message and "reward_env" in message and ENTRY_POINT_GROUP in message


def test_builtins_are_listed():
    assert {"format", "efficiency", "weighted"} <= set(rewardkit.list_envs())
    assert env_specs()["format"].source == "rewardkit"


def test_reward_env_makes_a_loadable_environment():
    @reward_env(name="test_registry_upper", gold=[{"completion": "YES"}])
    def upper(completion, *, answer=None, prompt=None, info=None):
        return 1.0 if completion.isupper() else 0.0

    assert isinstance(upper, RewardFunction)
    assert upper("ABC") == 1.0 and upper.__name__ == "upper"  # still the plain function
    env = load_env("test_registry_upper", executor="inline")
    assert isinstance(env, FunctionEnv) and env.name == "test_registry_upper"
    assert [s.reward for s in env.score_batch([{"completion": "OK"}, {"completion": "no"}])] == [1.0, 0.0]
    assert rewardkit.check_env(env)["gold_examples"] == 1
    assert "test_registry_upper" in rewardkit.list_envs()


def test_reward_env_passes_answer_prompt_and_info_explicitly():
    seen = {}

    @reward_env(name="test_registry_seen", register=False)
    def spy(completion, *, answer=None, prompt=None, info=None):
        seen.update(completion=completion, answer=answer, prompt=prompt, info=info)
        return Score_ok_half()

    env = spy.env(executor="inline")
    score = env.score("c", answer="a", prompt="p", info={"k": 1})
    assert seen == {"completion": "c", "answer": "a", "prompt": "p", "info": {"k": 1}}
    assert score.reward == 0.5 and score.metrics == {"m": 1.0}
    assert "test_registry_seen" not in rewardkit.list_envs()  # register=False


def Score_ok_half():  # noqa: N802 - a tiny helper that returns a Score, not a float
    return rewardkit.Score.ok(0.5, {"m": 1.0})


def test_reward_env_rejects_a_wrong_signature():
    with pytest.raises(TypeError, match="fn\\(completion, \\*, answer=None"):

        @reward_env(name="test_registry_bad_sig")
        def bad(completion):
            return 0.0

    with pytest.raises(TypeError, match="completion"):
        reward_env(name="test_registry_no_args")(lambda: 0.0)


def test_duplicate_registration_is_an_error():
    class One(Environment):
        name = "one"

        def verify(self, completion, *, answer, prompt, info):
            return 1.0

    class Two(One):
        pass

    register_env("test_registry_dup", One)
    register_env("test_registry_dup", One)  # the same object again (a module imported twice) is fine
    with pytest.raises(ValueError, match="already registered"):
        register_env("test_registry_dup", Two)
    with pytest.raises(ValueError, match="already registered by rewardkit"):
        register_env("format", One)

    @reward_env(name="test_registry_dup_fn")
    def first(completion, *, answer=None, prompt=None, info=None):
        return 1.0

    with pytest.raises(ValueError, match="already registered"):

        @reward_env(name="test_registry_dup_fn")
        def second(completion, *, answer=None, prompt=None, info=None):
            return 0.0


@pytest.mark.parametrize("name", ["", "1abc", "has space", "a/b", None])
def test_invalid_names_are_rejected(name):
    with pytest.raises(ValueError, match="invalid environment name"):
        register_env(name, Environment)  # type: ignore[arg-type]


def test_factory_must_build_an_environment():
    register_env("test_registry_not_env", lambda **config: "a string")
    with pytest.raises(TypeError, match="not an Environment"):
        load_env("test_registry_not_env")


def test_a_registered_plain_reward_function_is_an_environment():
    def exact(completion, *, answer=None, prompt=None, info=None):
        return float(completion == answer)

    register_env("test_registry_plain_fn", exact)
    with load_env("test_registry_plain_fn", executor="inline") as env:
        assert env.score("4", answer="4").reward == 1.0 and env.score("5", answer="4").reward == 0.0


def test_a_function_that_is_neither_reward_nor_factory_is_named():
    def needs_a_path(path):
        return path

    register_env("test_registry_neither", needs_a_path)
    with pytest.raises(TypeError) as err:
        load_env("test_registry_neither")
    message = str(err.value)
    assert "environment 'test_registry_neither'" in message and "needs_a_path" in message
    assert "@rewardkit.reward_env" in message and "Environment subclass" in message


def test_registered_factory_receives_config():
    def make(*, tags=("a",), **config):
        return load_env("format", tags=tags, **config)

    register_env("test_registry_factory", make)
    env = load_env("test_registry_factory", tags=("x",), strict=False)
    assert env.config.tags == ("x",) and env.config.strict is False


@pytest.mark.parametrize(
    ("name", "config", "error"),
    [
        ("format", {"tags": []}, ValueError),
        ("format", {"tags": ["a", "a"]}, ValueError),
        ("format", {"no_such_option": 1}, TypeError),
        ("efficiency", {"length_penalty": "quadratic"}, ValueError),
        ("efficiency", {"max_length": 0}, ValueError),
        ("efficiency", {"tokenizer": "/no/such/tokenizer"}, ValueError),
        ("weighted", {"components": {}}, ValueError),
        ("weighted", {"components": {"no_such_env": 1.0}}, KeyError),
        ("format", {"executor": "gpu"}, ValueError),
    ],
)
def test_bad_configuration_raises_at_load_env(name, config, error):
    with pytest.raises(error):
        load_env(name, **config)


# ---- docs/plugins.md -------------------------------------------------------------------------

DOC = Path(__file__).resolve().parents[1] / "docs" / "plugins.md"
BLOCK_RE = re.compile(r"(?:<!-- file: (?P<file>\S+) -->\n)?```(?P<lang>\w+)\n(?P<code>.*?)```", re.S)


def _doc_blocks() -> tuple[dict[str, str], list[str]]:
    """The page's files (blocks marked ``<!-- file: NAME -->``) and its other python blocks, in order."""
    files, scripts = {}, []
    for match in BLOCK_RE.finditer(DOC.read_text()):
        if match["file"]:
            files[match["file"]] = match["code"]
        elif match["lang"] == "python":
            scripts.append(match["code"])
    return files, scripts


def _expected_prints(script: str) -> list[str]:
    """``print(...)  # output`` comments that state the output in full (no "...")."""
    return [
        m.group(1).strip()
        for m in re.finditer(r"print\(.*\)\s+# (.*)$", script, re.M)
        if "..." not in m.group(1)
    ]


def test_plugin_docs_examples_run(tmp_path):
    """Install the page's package exactly as written, then run its python blocks as one script."""
    _skip_unless_pip_can_build()
    files, scripts = _doc_blocks()
    assert set(files) == {"my_rewards.py", "pyproject.toml"} and len(scripts) >= 4
    package = tmp_path / "my-rewards"
    package.mkdir()
    for name, code in files.items():
        (package / name).write_text(code)
    site = tmp_path / "site"
    done = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index", "--quiet"]
        + ["--disable-pip-version-check", "--target", str(site), str(package)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, f"the docs' pyproject.toml does not install:\n{done.stderr}"

    # A real script without a __main__ guard: workers must not re-run it (they are clean interpreters).
    script = tmp_path / "plugins_doc_examples.py"
    script.write_text("\n\n".join(scripts))
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")]))
    )
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=120, cwd=tmp_path
    )
    assert done.returncode == 0, f"docs/plugins.md examples failed:\n{done.stdout}\n{done.stderr}"
    printed = done.stdout.splitlines()
    expected = _expected_prints("\n".join(scripts))
    assert expected and all(line in printed for line in expected), (expected, printed)
    assert "broken fails check_env" in done.stdout and "bad config:" in done.stdout
    assert all(printed.count(line) == 1 for line in expected), "the script ran more than once"


# ---- families: PREFIX:ARG ------------------------------------------------------------------------------
def make_family_env(arg, **config):
    return FamilyEnv(arg=arg, **config)


class FamilyEnv(rewardkit.Environment):
    name = "family"

    def __init__(self, arg, **config):
        super().__init__(executor="inline", **config)
        self.arg = arg

    def verify(self, completion, *, answer, prompt, info):
        return float(completion == self.arg)


def test_a_family_name_calls_its_factory_with_the_part_after_the_colon(monkeypatch):
    from rewardkit import registry

    monkeypatch.setitem(registry.ENV_FAMILIES, "fam", f"{__name__}:make_family_env")
    env = rewardkit.load_env("fam:hello", timeout_s=3.0)
    assert isinstance(env, FamilyEnv) and env.arg == "hello" and env.scoring.timeout_s == 3.0
    assert env.score("hello").reward == 1.0
    with pytest.raises(KeyError, match="needs a name after the colon"):
        rewardkit.load_env("fam:")


def test_a_family_whose_adapter_is_missing_says_which(monkeypatch):
    from rewardkit import registry

    monkeypatch.setitem(registry.ENV_FAMILIES, "gone", "rewardkit_no_such_module:load")
    with pytest.raises(ImportError, match="the gone adapter cannot be imported"):
        rewardkit.load_env("gone:x")
