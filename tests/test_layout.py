"""The package layout: the data flow reads in one direction, and moved names keep their old paths for one release."""

from __future__ import annotations

import ast
import importlib
import warnings
from pathlib import Path

import pytest

import bloodcell as bc

SRC = Path(bc.__file__).resolve().parent


def _module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(("bloodcell", *parts))


def _imports(path: Path) -> set[str]:
    """Every ``bloodcell`` module a file imports, at module level or inside functions."""
    package = _module_name(path) if path.name == "__init__.py" else _module_name(path).rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # a relative import: resolve it against the file's package
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            found.add(module)
            # ``from bloodcell import training`` imports the subpackage
            found.update(f"{module}.{alias.name}" for alias in node.names)
    return {name for name in found if name == "bloodcell" or name.startswith("bloodcell.")}


def _files(package: str) -> list[Path]:
    path = SRC.joinpath(*package.split(".")[1:])
    return sorted(path.rglob("*.py")) if path.is_dir() else [path.with_suffix(".py")]


def _reaches(imported: str, package: str) -> bool:
    return imported == package or imported.startswith(package + ".")


# stage → the stages that come after it (load → clean → split → pipeline → model → train → evaluate),
# which it must never import. Augmenters are image-to-image layers the pipeline applies; the
# colour maths is a leaf that augmenters, corruptions and stain normalisers share.
LATER = {
    "bloodcell.stain.density": (
        "bloodcell.datasets",
        "bloodcell.augment",
        "bloodcell.pipeline",
        "bloodcell.training",
        "bloodcell.models",
        "bloodcell.robustness",
        "bloodcell.outliers",
    ),
    "bloodcell.augment": (
        "bloodcell.datasets",
        "bloodcell.pipeline",
        "bloodcell.training",
        "bloodcell.models",
        "bloodcell.metrics",
        "bloodcell.experiments",
        "bloodcell.cli",
    ),
    "bloodcell.datasets": (
        "bloodcell.augment",
        "bloodcell.outliers",
        "bloodcell.pipeline",
        "bloodcell.training",
        "bloodcell.models",
        "bloodcell.metrics",
        "bloodcell.experiments",
        "bloodcell.cli",
    ),
    "bloodcell.pipeline": (
        "bloodcell.training",
        "bloodcell.models",
        "bloodcell.metrics",
        "bloodcell.experiments",
        "bloodcell.cli",
    ),
}


@pytest.mark.parametrize("stage", sorted(LATER))
def test_no_import_runs_back_up_the_data_flow(stage):
    backwards = sorted(
        f"{_module_name(path)} imports {imported}"
        for path in _files(stage)
        for imported in _imports(path)
        if any(_reaches(imported, later) for later in LATER[stage])
    )
    assert not backwards, backwards


def test_the_import_scan_sees_function_level_and_relative_imports(tmp_path):
    """The scan above would pass vacuously if it missed the imports it looks for."""
    path = SRC / "pipeline.py"
    assert "bloodcell.augment.base" in _imports(path)  # imported inside to_tf_dataset()
    assert "bloodcell.datasets.core" in _imports(path)


# (old module or package, name, the module that now defines it)
MOVED = [
    ("bloodcell.augment", "oversample", "bloodcell.datasets.balance"),
    ("bloodcell.augment", "oversample_indices", "bloodcell.datasets.balance"),
    ("bloodcell.augment", "undersample", "bloodcell.datasets.balance"),
    ("bloodcell.augment", "undersample_indices", "bloodcell.datasets.balance"),
    ("bloodcell.augment", "smote", "bloodcell.datasets.balance"),
    ("bloodcell.augment", "class_weights", "bloodcell.datasets.balance"),
    ("bloodcell.augment", "ConsistencyModel", "bloodcell.training.consistency"),
    ("bloodcell.augment", "jensen_shannon", "bloodcell.training.consistency"),
    ("bloodcell.augment.balance", "oversample_indices", "bloodcell.datasets.balance"),
    ("bloodcell.augment.balance", "smote", "bloodcell.datasets.balance"),
    ("bloodcell.augment.consistency", "MultiView", "bloodcell.augment.multiview"),
    ("bloodcell.augment.consistency", "ConsistencyModel", "bloodcell.training.consistency"),
    ("bloodcell.augment.consistency", "jensen_shannon", "bloodcell.training.consistency"),
    ("bloodcell.augment.consistency", "JSD_WEIGHT", "bloodcell.training.consistency"),
    ("bloodcell.datasets", "to_tf_dataset", "bloodcell.pipeline"),
    ("bloodcell.datasets.tfdata", "to_tf_dataset", "bloodcell.pipeline"),
    ("bloodcell.datasets.tfdata", "batch_seeds", "bloodcell.pipeline"),
]


@pytest.mark.parametrize(("old", "name", "new"), MOVED, ids=[f"{o}.{n}" for o, n, _ in MOVED])
def test_an_old_path_gives_the_same_object_and_warns_with_the_new_path(old, name, new):
    module = importlib.import_module(old)
    with pytest.warns(DeprecationWarning, match=rf"{old}\.{name} moved to {new}\.{name}"):
        value = getattr(module, name)
    assert value is getattr(importlib.import_module(new), name)
    with pytest.warns(DeprecationWarning):  # every use warns, not only the first
        getattr(module, name)


def test_the_warning_points_at_the_line_that_uses_the_old_path():
    with pytest.warns(DeprecationWarning) as caught:
        from bloodcell.augment.balance import class_weights  # noqa: F401
    assert caught[0].filename == __file__


def test_an_old_module_still_runs_its_functions():
    with pytest.warns(DeprecationWarning):
        from bloodcell.augment import balance

        weights = balance.class_weights([0, 0, 0, 1])
    assert weights == bc.datasets.class_weights([0, 0, 0, 1])


def test_the_new_paths_do_not_warn():
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        from bloodcell.augment import MultiView  # noqa: F401
        from bloodcell.datasets import class_weights, oversample_indices, smote  # noqa: F401
        from bloodcell.pipeline import to_tf_dataset  # noqa: F401
        from bloodcell.training.consistency import ConsistencyModel, jensen_shannon  # noqa: F401

        assert bc.pipeline.to_tf_dataset is to_tf_dataset
        assert bc.augment.MultiView is MultiView


def test_an_unknown_name_is_still_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        bc.augment.nothing  # noqa: B018
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        importlib.import_module("bloodcell.augment.balance").nothing  # noqa: B018
