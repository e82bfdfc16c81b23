"""The package's import structure: no import cycle, a model folder that imports no task code, and an `import locvtp_hf`
that loads what the `Auto*` registration needs and nothing heavier.

The graph is read from the source with `ast`: every `import` and `from ... import` of `locvtp_hf` modules, relative or
absolute, at module level or inside a function (a function-level import runs too, and transformers ships the files a
checkpoint's remote code imports either way)."""

import ast
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest


PACKAGE = "locvtp_hf"
PACKAGE_DIR = Path(__file__).resolve().parents[1] / PACKAGE
# What a checkpoint's classes are made of, and so what `save_for_hub` ships as remote code.
MODEL_FOLDER_ROOTS = ("configuration_locvtp", "modeling_locvtp", "processing_locvtp", "video_processing_locvtp")
MODEL_FOLDER = {
    *MODEL_FOLDER_ROOTS,
    "video_io",
    "loss",
    "moment_geometry",
    "grounding_postprocessing",
}
# Heavy optional dependencies that belong to the task tools (data, index, plots, HDF5 features, ...).
HEAVY_MODULES = ("datasets", "pyarrow", "av", "faiss", "h5py", "matplotlib", "jinja2", "evaluate")


def package_modules(package_dir: Path = PACKAGE_DIR) -> dict[str, Path]:
    """`locvtp_hf` module name -> file, for every module of the package (subpackages included)."""
    modules = {}
    for path in sorted(package_dir.rglob("*.py")):
        parts = path.relative_to(package_dir.parent).with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


def _is_type_checking_block(node: ast.AST) -> bool:
    test = getattr(node, "test", None)
    return isinstance(node, ast.If) and (
        (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING")
        or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")
    )


def _import_nodes(node: ast.AST, with_type_checking: bool):
    """Every import statement under `node`, nested ones included; those under `if TYPE_CHECKING:` only on request."""
    if isinstance(node, ast.Import | ast.ImportFrom):
        yield node
    skip_body = _is_type_checking_block(node) and not with_type_checking
    for child in node.orelse if skip_body else ast.iter_child_nodes(node):
        yield from _import_nodes(child, with_type_checking)


def imported_modules(name: str, path: Path, modules: dict[str, Path], with_type_checking: bool = False) -> set[str]:
    """The `locvtp_hf` modules that module `name` (file `path`) imports."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in _import_nodes(ast.parse(path.read_text(encoding="utf-8")), with_type_checking):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        else:
            if node.level:
                parts = package.split(".")
                base = ".".join([*parts[: len(parts) - node.level + 1], *([node.module] if node.module else [])])
            else:
                base = node.module
            # `from . import modeling_locvtp` imports a module; `from .loss import LocVTPLoss` a name of one
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names]
        for target in targets:
            while target and target not in modules:  # `import locvtp_hf.x.y` of a name `y`: module `locvtp_hf.x`
                target = target.rpartition(".")[0]
            if target.split(".")[0] == PACKAGE and target != name:
                found.add(target)
    return found


def import_graph(package_dir: Path = PACKAGE_DIR, with_type_checking: bool = False) -> dict[str, set[str]]:
    """Module -> the package's modules it imports (a parent package's `__init__` is not counted for a submodule)."""
    modules = package_modules(package_dir)
    return {name: imported_modules(name, path, modules, with_type_checking) for name, path in modules.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A cycle of `graph` as `[a, b, ..., a]`, or `None`."""
    state, stack = {}, []  # state: 1 on the DFS stack, 2 done

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for child in sorted(graph.get(node, ())):
            if state.get(child) == 1:
                return [*stack[stack.index(child) :], child]
            if child not in state and (cycle := visit(child)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def reachable(graph: dict[str, set[str]], roots) -> dict[str, str]:
    """Every module reachable from `roots`, with the module that imports it (a root maps to itself)."""
    parents = {root: root for root in roots}
    todo = list(roots)
    while todo:
        node = todo.pop()
        for child in sorted(graph[node]):
            if child not in parents:
                parents[child] = node
                todo.append(child)
    return parents


def test_the_graph_reader_resolves_relative_absolute_and_nested_imports(tmp_path):
    package = tmp_path / PACKAGE
    (package / "sub").mkdir(parents=True)
    files = {
        "__init__.py": "from .a import A\n",
        "a.py": "import os\nfrom . import b\n\ndef f():\n    from locvtp_hf.sub.c import C\n",
        "b.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .a import A\n",
        "sub/__init__.py": "",
        "sub/c.py": "from ..b import x\nimport locvtp_hf.a\n",
    }
    for name, text in files.items():
        (package / name).write_text(text)

    graph = import_graph(package)

    assert graph == {
        PACKAGE: {f"{PACKAGE}.a"},
        f"{PACKAGE}.a": {f"{PACKAGE}.b", f"{PACKAGE}.sub.c"},
        f"{PACKAGE}.b": set(),
        f"{PACKAGE}.sub": set(),
        f"{PACKAGE}.sub.c": {f"{PACKAGE}.b", f"{PACKAGE}.a"},
    }
    assert import_graph(package, with_type_checking=True)[f"{PACKAGE}.b"] == {f"{PACKAGE}.a"}
    assert find_cycle(graph) == [f"{PACKAGE}.a", f"{PACKAGE}.sub.c", f"{PACKAGE}.a"]


def test_no_import_cycle_in_the_package():
    cycle = find_cycle(import_graph())
    assert cycle is None, f"Import cycle: {' -> '.join(cycle)}"


def test_the_model_folder_imports_only_model_folder_modules():
    """The classes a checkpoint is made of (and `save_for_hub` ships as remote code) import no task code: no
    evaluation, index, data sets, synthetic world, training, Hub or model card. Imports under `TYPE_CHECKING` count:
    transformers ships every file the remote code names."""
    graph = import_graph(with_type_checking=True)
    parents = reachable(graph, [f"{PACKAGE}.{name}" for name in MODEL_FOLDER_ROOTS])

    outside = {}
    for module in parents:
        if module.removeprefix(f"{PACKAGE}.") not in MODEL_FOLDER:
            chain = [module]
            while chain[-1] != parents[chain[-1]]:
                chain.append(parents[chain[-1]])
            outside[module] = " <- ".join(chain)
    assert not outside, "The model folder imports task code:\n" + "\n".join(outside.values())


def test_import_loads_only_what_the_registration_needs():
    """`import locvtp_hf` registers the Auto classes and the pipeline, and imports none of the heavy optional
    dependencies beyond those transformers' own registration imports load (transformers imports jinja2 itself); the
    batch encoding module and the clip feature files import none either."""
    script = textwrap.dedent(
        f"""
        import json, sys, tempfile
        from transformers import AutoConfig, AutoModel, AutoModelForPreTraining, AutoProcessor, AutoVideoProcessor
        from transformers.pipelines import PIPELINE_REGISTRY

        heavy = {list(HEAVY_MODULES)!r}
        before = {{module for module in heavy if module in sys.modules}}
        import locvtp_hf
        after = {{module for module in heavy if module in sys.modules}}
        import locvtp_hf.encoding, locvtp_hf.grounding_features
        after_encoding = {{module for module in heavy if module in sys.modules}}

        from transformers.models.auto.modeling_auto import MODEL_FOR_PRETRAINING_MAPPING, MODEL_MAPPING
        from transformers.models.auto.processing_auto import PROCESSOR_MAPPING

        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from testing_utils import make_config

        config = make_config()
        with tempfile.TemporaryDirectory() as folder:
            config.save_pretrained(folder)
            locvtp_hf.LocVTPVideoProcessor().save_pretrained(folder)
            video_processor = AutoVideoProcessor.from_pretrained(folder)
        print(json.dumps({{
            "imported_by_transformers": sorted(before),
            "imported_by_locvtp_hf": sorted(after - before),
            "imported_by_encoding": sorted(after_encoding - after),
            "config": type(AutoConfig.for_model("locvtp")).__name__,
            "model": type(AutoModel.from_config(config)).__name__,
            "pretraining": MODEL_FOR_PRETRAINING_MAPPING[type(config)].__name__,
            "base": MODEL_MAPPING[type(config)].__name__,
            "video_processor": type(video_processor).__name__,
            "processor": PROCESSOR_MAPPING[type(config)].__name__,
            "pipeline": PIPELINE_REGISTRY.check_task("video-temporal-grounding")[1]["impl"].__name__,
        }}))
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=os.environ, timeout=300
    )
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout.strip().splitlines()[-1])

    assert found["imported_by_locvtp_hf"] == [], f"`import locvtp_hf` imports {found['imported_by_locvtp_hf']}"
    assert not {"datasets", "av", "faiss", "h5py", "matplotlib"} & set(found["imported_by_transformers"])
    # batch encoding and the feature files need no data set library
    assert found["imported_by_encoding"] == [], f"`locvtp_hf.encoding` imports {found['imported_by_encoding']}"
    assert found["config"] == "LocVTPConfig" and found["model"] == found["base"] == "LocVTPModel"
    assert found["pretraining"] == "LocVTPForPreTraining"
    assert found["video_processor"] == "LocVTPVideoProcessor" and found["processor"] == "LocVTPProcessor"
    assert found["pipeline"] == "VideoTemporalGroundingPipeline"


def test_lazy_names_are_importable_and_listed():
    import locvtp_hf

    missing = [name for name in locvtp_hf.__all__ if not hasattr(locvtp_hf, name)]
    assert not missing, f"In `locvtp_hf.__all__` but not importable: {missing}"
    assert set(locvtp_hf.__all__) <= set(dir(locvtp_hf))
    assert locvtp_hf.VideoIndex.__module__ == "locvtp_hf.retrieval_index"
    with pytest.raises(AttributeError, match="no_such_name"):
        locvtp_hf.no_such_name
