"""The layers: the core (``sparsify`` and its modules) needs torch only; no layer imports one
above it; the old import paths warn once and give the same objects."""

import ast
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import sparsify
from sparsify.renamed import RENAMED

ROOT = Path(__file__).resolve().parents[1]
CORE = Path(sparsify.__file__).parent
# Not core: the application, the Lightning side, the Hugging Face adapters, the CLI entry.
NOT_CORE = {"app", "lightning", "callbacks", "datamodules", "configs", "hf", "__main__"}
FRAMEWORKS = {
    "lightning",
    "lightning_fabric",
    "pytorch_lightning",
    "torchmetrics",
    "transformers",
    "matplotlib",
    "wandb",
}
LIGHTNING_SIDE = ("sparsify.lightning", "sparsify.callbacks", "sparsify.datamodules")


def run_python(code: str) -> str:
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def core_files() -> list[Path]:
    files = [p for p in CORE.glob("*.py") if p.stem not in NOT_CORE]
    return files + sorted((CORE / "models").glob("*.py"))


def module_name(path: Path) -> str:
    parts = path.relative_to(CORE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_names(path: Path) -> list[str]:
    """Every module an ``import`` or ``from … import`` statement in ``path`` names, at any depth
    (inside functions too); the project has no relative imports."""
    names = []
    for node in ast.walk(ast.parse(path.read_text())):
        assert not (isinstance(node, ast.ImportFrom) and node.level), path
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            names += [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
    return names


def reaches(names: list[str], layers) -> list[str]:
    return [n for n in names if any(n == layer or n.startswith(layer + ".") for layer in layers)]


def test_core_loads_no_framework_in_a_fresh_interpreter():
    modules = ["sparsify"] + [module_name(p) for p in core_files()]
    loaded = run_python(
        f"""
        import importlib, sys
        for name in {modules!r}:
            importlib.import_module(name)
        print(" ".join(sorted({{m.split(".")[0] for m in sys.modules}})))
        """
    ).split()
    assert "torch" in loaded and "sparsify" in loaded
    assert FRAMEWORKS.isdisjoint(loaded), sorted(FRAMEWORKS & set(loaded))


def test_no_core_module_imports_a_layer_above_it():
    above = ("sparsify.app", *LIGHTNING_SIDE, "sparsify.hf")
    for path in core_files():
        assert reaches(imported_names(path), above) == [], path
        assert reaches(imported_names(path), FRAMEWORKS) == [], path


def test_the_lightning_side_does_not_import_the_application():
    files = [*(ROOT / "callbacks").glob("*.py"), *(ROOT / "datamodules").glob("*.py")]
    files += (CORE / "lightning").glob("*.py")
    assert len(files) > 20
    for path in files:
        assert reaches(imported_names(path), ["sparsify.app"]) == [], path


def test_an_old_import_path_warns_once_and_gives_the_same_objects():
    out = run_python(
        """
        import importlib, json, warnings
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            from sparsify.module import ImageClassifier
            import sparsify.module
            from sparsify.module import Regressor
            from sparsify.launchers.local import run_local
            import sparsify.launchers.job
            from sparsify.export import main
            from sparsify.export import main as again
        import sparsify.app.export, sparsify.app.launchers.local, sparsify.lightning.module
        same = {
            "ImageClassifier": ImageClassifier is sparsify.lightning.module.ImageClassifier,
            "module": sparsify.module is sparsify.lightning.module,
            "run_local": run_local is sparsify.app.launchers.local.run_local,
            "job": sparsify.launchers.job is importlib.import_module("sparsify.app.launchers.job"),
            "main": main is again is sparsify.app.export.main,
        }
        renamed = {}
        for old, new in sparsify.renamed.RENAMED.items():
            renamed[old] = importlib.import_module(old) is importlib.import_module(new)
        warned = [(w.category.__name__, str(w.message)) for w in caught]
        print(json.dumps({"same": same, "renamed": renamed, "warned": warned}))
        """
    )
    result = json.loads(out.splitlines()[-1])
    assert all(result["same"].values()), result["same"]
    assert all(result["renamed"].values()) and set(result["renamed"]) == set(RENAMED)
    renames = [
        ("sparsify.module", "sparsify.lightning.module"),
        ("sparsify.launchers", "sparsify.app.launchers"),
        ("sparsify.export.main", "sparsify.app.export.main"),
    ]
    expected = [["FutureWarning", f"{old} is deprecated: use {new}"] for old, new in renames]
    assert result["warned"] == expected


def test_a_config_with_an_old_class_path_still_runs(tmp_path):
    config = tmp_path / "model.yaml"
    config.write_text("model:\n  class_path: sparsify.module.ImageClassifier\n")
    result = subprocess.run(
        [sys.executable, "-m", "sparsify", "fit", "--config", "data/digits"]
        + ["--config", str(config), "--print_config"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "class_path: sparsify.module.ImageClassifier" in result.stdout
    warning = "sparsify.module is deprecated: use sparsify.lightning.module"
    assert result.stderr.count(warning) == 1, result.stderr
