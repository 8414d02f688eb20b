"""A light core install: ``pip install edgezo`` brings torch, numpy and tqdm, nothing else.

Everything else is an extra (pyproject.toml), and using a part whose extra is
missing raises :class:`edgezo.extras.MissingExtra`, which names the extra. Checked
four ways:

* the declared metadata: the core dependencies, and ``test`` covering every extra;
* statically (``ast``): every import of an extra's package in ``src/edgezo`` goes
  through :func:`edgezo.extras.require`, naming an extra that lists the package;
* in subprocesses where the extras' packages are made unimportable (a
  ``sys.meta_path`` blocker): the core imports and the README's first example run,
  and each extra's message appears where it is needed (the CLI reports it in one line);
* for real: ``pip install .`` in a fresh venv (no system site packages) installs
  only the core dependencies' closure, and the README's first example runs there.
"""

from __future__ import annotations

import ast
import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest

import edgezo
from edgezo.extras import DISTRIBUTIONS, MissingExtra, distribution, require

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: pip's copy of tomli
    from pip._vendor import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "edgezo"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
EXTRAS: dict[str, list[str]] = PYPROJECT["optional-dependencies"]
CORE = {"torch", "numpy", "tqdm"}
#: extras the library itself uses (``test`` is the tools plus these; ``hw-wasm`` is a yosys binary)
LIBRARY_EXTRAS = ("studies", "hf", "hw", "gpu", "runtime")
README_FIRST_EXAMPLE = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)[0]


def requirement_name(requirement: str) -> str:
    """``"scikit-learn>=1.2; ..."`` -> ``"scikit-learn"`` (PEP 503 normalised)."""
    name = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement).group(1)
    return re.sub(r"[-_.]+", "-", name).lower()


def modules_of(dist: str) -> set[str]:
    """Top-level import names of a distribution (installed metadata; else edgezo's table)."""
    found = {
        m
        for m, dists in importlib.metadata.packages_distributions().items()
        if dist in {requirement_name(d) for d in dists}
    }
    inverse = {requirement_name(v): k for k, v in DISTRIBUTIONS.items()}
    return found or {inverse.get(dist, dist.replace("-", "_"))}


def extra_modules() -> dict[str, str]:
    """Every top-level module of the library extras' packages -> its extra."""
    out = {}
    for extra in LIBRARY_EXTRAS:
        for requirement in EXTRAS[extra]:
            for module in modules_of(requirement_name(requirement)):
                out[module] = extra
    return out


OPTIONAL = extra_modules()


# -- the declared metadata -----------------------------------------------------------------------
def test_core_dependencies_are_torch_numpy_tqdm():
    assert {requirement_name(r) for r in PYPROJECT["dependencies"]} == CORE


def test_no_extra_package_is_a_core_dependency():
    core = {requirement_name(r) for r in PYPROJECT["dependencies"]}
    for extra in LIBRARY_EXTRAS:
        assert not core & {requirement_name(r) for r in EXTRAS[extra]}, extra


def test_the_test_extra_brings_every_library_extra():
    included = set()
    for requirement in EXTRAS["test"]:
        if requirement_name(requirement) == "edgezo":
            included |= set(
                re.search(r"\[(.*)\]", requirement).group(1).replace(" ", "").split(",")
            )
    assert included >= set(LIBRARY_EXTRAS), f"`make test` must exercise every extra: {included}"


def test_the_makefile_installs_studies_and_runtime_for_the_demo_and_test_for_the_tests():
    makefile = (ROOT / "Makefile").read_text()
    assert "-e '.[studies,runtime]'" in makefile and "-e '.[test]'" in makefile
    assert re.search(r"^demo: \$\(STUDIES_STAMP\)", makefile, re.M)
    assert re.search(r"^setup: \$\(TEST_STAMP\)", makefile, re.M)
    assert (ROOT / ".ci" / "run").read_text().strip().endswith("make test")


# -- require -------------------------------------------------------------------------------------
def test_require_returns_the_module():
    assert require("json.decoder", "studies").__name__ == "json.decoder"


def test_require_names_the_extra_the_package_and_who_needs_it():
    with pytest.raises(MissingExtra) as info:
        require("sklearn_is_not_here.datasets", "studies")
    error = info.value
    assert isinstance(error, ImportError)  # callers that catch ImportError keep working
    assert (error.package, error.extra, error.needed_by) == (
        "sklearn_is_not_here",
        "studies",
        __name__,
    )
    assert str(error) == (
        f"{__name__} needs sklearn_is_not_here, which is not installed: pip install 'edgezo[studies]'"
    )


def test_require_gives_pips_name_of_the_package():
    assert distribution("sklearn") == "scikit-learn" and distribution("PIL") == "pillow"
    assert distribution("zarr") == "zarr"


def test_require_leaves_other_import_errors_alone(tmp_path, monkeypatch):
    (tmp_path / "broken_pkg_for_edgezo").mkdir()
    (tmp_path / "broken_pkg_for_edgezo" / "__init__.py").write_text("import no_such_dep_inside\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ModuleNotFoundError) as info:  # installed but broken: its own error
        require("broken_pkg_for_edgezo", "studies")
    assert not isinstance(info.value, MissingExtra)
    assert info.value.name == "no_such_dep_inside"


# -- statically: every optional import goes through require ---------------------------------------
#: packages imported directly without require, and why that is right
DIRECT_IMPORTS_ALLOWED = {
    "triton": "the GPU kernels are optional at run time: edgezo.kernels imports triton in a "
    "try and falls back to torch (EDGEZO_KERNELS=on reports a missing triton itself)",
}


def optional_import_problems(path: Path) -> list[str]:
    """Imports of an extra's package in ``path`` that no earlier ``require`` of it covers."""
    tree = ast.parse(path.read_text())
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}

    def scope(node: ast.AST) -> ast.AST:
        while node in parents and not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            node = parents[node]
        return node

    def type_checking_only(node: ast.AST) -> bool:
        while node in parents:
            node = parents[node]
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                return True
        return False

    required: dict[tuple[ast.AST, str], int] = {}  # (scope, top-level package) -> first line
    problems = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "require":
            module, extra = (ast.literal_eval(a) for a in node.args[:2])
            top = module.partition(".")[0]
            required.setdefault((scope(node), top), node.lineno)
            if top in OPTIONAL and OPTIONAL[top] != extra:
                problems.append(
                    f"line {node.lineno}: {top} is in extra {OPTIONAL[top]!r}, not {extra!r}"
                )
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        for top in {n.partition(".")[0] for n in names}:
            if top not in OPTIONAL or top in DIRECT_IMPORTS_ALLOWED or type_checking_only(node):
                continue
            first = required.get((scope(node), top))
            if first is None or first > node.lineno:
                problems.append(
                    f"line {node.lineno}: `{ast.unparse(node)}` without an earlier "
                    f'require("{top}", "{OPTIONAL[top]}") in the same scope'
                )
    return problems


def test_every_optional_import_in_the_library_goes_through_require():
    problems = {
        str(path.relative_to(SRC.parent)): found
        for path in sorted(SRC.rglob("*.py"))
        if (found := optional_import_problems(path))
    }
    assert not problems, "\n" + "\n".join(
        f"{path}: {p}" for path, found in problems.items() for p in found
    )


def test_the_static_check_sees_a_bare_optional_import(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text(
        "from edgezo.extras import require\n\n"
        "def plot():\n    import matplotlib.pyplot as plt\n\n"
        "def chart():\n    require('matplotlib', 'studies')\n    import matplotlib.pyplot as plt\n"
    )
    assert [p.split(":")[0] for p in optional_import_problems(bad)] == ["line 4"]


# -- with the extras' packages made unimportable --------------------------------------------------
BLOCKER = """
import sys
class Blocker:
    def __init__(self, names):
        self.names = set(names)
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in self.names:
            raise ModuleNotFoundError(f"No module named {name!r} (blocked)", name=name)
        return None
sys.meta_path.insert(0, Blocker(NAMES))
"""


def run_blocked(names, code: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter where the packages ``names`` cannot be imported.

    It imports the edgezo this test imports (a checkout's ``src`` on ``PYTHONPATH`` included).
    """
    here = str(Path(edgezo.__file__).resolve().parents[1])
    path = os.pathsep.join([here, *filter(None, [os.environ.get("PYTHONPATH")])])
    return subprocess.run(
        [sys.executable, "-c", BLOCKER.replace("NAMES", repr(sorted(names))) + code],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": path},
        timeout=300,
        check=False,
    )


def test_the_core_imports_and_the_readme_example_run_without_any_extra():
    code = (
        "import edgezo\n"
        "from edgezo import ZO, ParamSpace, presets\n"
        "from edgezo.directions import *\n"
        "from edgezo.fixedpoint import quantize_model\n"
        "import edgezo.distributed, edgezo.train\n" + README_FIRST_EXAMPLE
    )
    done = run_blocked(OPTIONAL, code)
    assert done.returncode == 0, done.stderr[-3000:]
    assert re.fullmatch(r"loss \d\.\d{3} after 100 steps, 200 forward passes\n", done.stdout)


def test_the_cli_starts_without_any_extra():
    entry = PYPROJECT["scripts"]["edgezo"]  # "module:function"
    module, function = entry.split(":")
    done = run_blocked(
        OPTIONAL, f"from {module} import {function}\nraise SystemExit({function}(['--help']))"
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "demo" in done.stdout


#: (blocked package, extra, code that needs it, who the message says needs it)
SITES = [
    (
        "PIL",
        "studies",
        "from edgezo.figures import save_png; save_png(None, 'x.png', 72)",
        "edgezo.figures",
    ),
    (
        "matplotlib",
        "studies",
        "from edgezo.analysis.memory import plot_memory; plot_memory([], 'x.png')",
        "the memory chart",
    ),
    (
        "markdown_it",
        "studies",
        "from pathlib import Path; from edgezo.analysis.report import to_html; to_html('# x', Path('.'))",
        "edgezo report",
    ),
    (
        "zarr",
        "studies",
        "from edgezo.data.mnist import load_mnist; load_mnist('test')",
        "edgezo.data.mnist",
    ),
    (
        "scipy",
        "studies",
        "import numpy as np; from edgezo.data.keywords import to_clip; to_clip(np.ones(800), 8000)",
        "edgezo.data.keywords",
    ),
    ("amaranth", "hw", "import edgezo.hw.designs", "edgezo.hw"),
    ("transformers", "hf", "import edgezo.integrations.hf", "edgezo.integrations.hf"),
    ("transformers", "hf", "import edgezo.integrations.prompts", "edgezo.integrations.prompts"),
    (
        "transformers",
        "hf",
        "import edgezo.integrations.arguments",
        "edgezo.integrations.arguments",
    ),
]


@pytest.mark.parametrize(
    ("package", "extra", "code", "needed_by"), SITES, ids=[s[0] for s in SITES]
)
def test_a_missing_extra_is_named_where_it_is_needed(tmp_path, package, extra, code, needed_by):
    done = run_blocked({package}, code, cwd=tmp_path)
    assert done.returncode != 0
    last = done.stderr.strip().splitlines()[-1]
    assert last == (
        f"edgezo.extras.MissingExtra: {needed_by} needs {distribution(package)}, "
        f"which is not installed: pip install 'edgezo[{extra}]'"
    )


def test_the_digits_say_which_extra_brings_scikit_learn(tmp_path):
    done = run_blocked(
        {"sklearn"}, "from edgezo.data.digits import load_digits; load_digits()", tmp_path
    )
    assert "pip install 'edgezo[studies]'" in done.stderr.strip().splitlines()[-1]


def test_the_cli_reports_a_missing_extra_in_one_line(tmp_path):
    module, function = PYPROJECT["scripts"]["edgezo"].split(":")
    code = (
        f"from {module} import {function}\n"
        f"raise SystemExit({function}(['hw', 'report', '--out', 'out']))"
    )
    done = run_blocked({"amaranth"}, code, cwd=tmp_path)
    assert done.returncode != 0 and "Traceback" not in done.stderr, done.stderr[-3000:]
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "edgezo.hw needs amaranth, which is not installed: " in lines[0]
    assert "pip install 'edgezo[hw]'" in lines[0]


# -- for real: a fresh venv ----------------------------------------------------------------------
CLOSURE = """
import importlib.metadata as md, json, re
from pip._vendor.packaging.requirements import Requirement
norm = lambda n: re.sub(r"[-_.]+", "-", n).lower()
needed, todo = set(), ["edgezo"]
while todo:
    name = todo.pop()
    if name in needed:
        continue
    needed.add(name)
    for text in md.requires(name) or []:
        r = Requirement(text)
        if r.marker is None or r.marker.evaluate({"extra": ""}):
            todo.append(norm(r.name))
installed = {norm(d.metadata["Name"]) for d in md.distributions()}
print(json.dumps({"needed": sorted(needed), "installed": sorted(installed)}))
"""


def copy_project(to: Path) -> Path:
    """What ``pip install .`` reads: pyproject.toml, README.md and src/ (no build leftovers)."""
    to.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, to / name)
    shutil.copytree(
        ROOT / "src", to / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info")
    )
    return to


def test_pip_install_in_a_fresh_venv_brings_only_the_core(tmp_path):
    """About 40 s on 2 shared cores: torch comes from pip's cache or local wheels.

    torch is installed first at the version this interpreter runs (as the Makefile
    does: a plain ``pip install torch`` could pick a multi-GB CUDA build).
    """
    env_dir = tmp_path / "venv"
    clean = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    venv.EnvBuilder(with_pip=True, system_site_packages=False).create(env_dir)
    python = str(env_dir / "bin" / "python")

    def pip(*args: str) -> None:
        done = subprocess.run(
            [python, "-m", "pip", "install", "--quiet", *args],
            cwd=tmp_path,
            env=clean,
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
        assert done.returncode == 0, done.stderr[-3000:]

    pip(f"torch=={importlib.metadata.version('torch')}")
    pip(str(copy_project(tmp_path / "project")))

    done = subprocess.run(
        [python, "-c", CLOSURE],
        cwd=tmp_path,
        env=clean,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    found = json.loads(done.stdout)
    extras = {requirement_name(r) for e in LIBRARY_EXTRAS for r in EXTRAS[e]}
    assert not extras & set(found["installed"]), "an extra's package came with the core install"
    assert CORE | {"edgezo"} <= set(found["needed"])
    tools = {"pip", "setuptools", "wheel"}
    assert set(found["installed"]) - tools == set(found["needed"]) - tools, (
        "installed beyond what edgezo's core dependencies need"
    )

    run = subprocess.run(
        [python, "-c", README_FIRST_EXAMPLE],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=clean,
        check=False,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert re.fullmatch(r"loss \d\.\d{3} after 100 steps, 200 forward passes\n", run.stdout)
