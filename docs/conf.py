"""Sphinx configuration for the bloodcell documentation."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path.insert(0, str(ROOT / "src"))
# sphinx-gallery imports its callables by name ("conf.gallery_argv"): that needs this folder on the path.
sys.path.insert(0, str(DOCS))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import bloodcell  # noqa: E402

# Sphinx lets every logger's INFO through; TensorFlow's (strategy set-up, all-reduce, retracing
# notes) would fill the build log and the examples' output.
logging.getLogger("tensorflow").setLevel(logging.ERROR)

project = "bloodcell"
author = "The bloodcell developers"
copyright = "2026, The bloodcell developers"
release = bloodcell.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "sphinx.ext.intersphinx",
    "sphinx.ext.viewcode",
    "sphinx_gallery.gen_gallery",
]

autosummary_generate = True
autodoc_default_options = {"members": True, "show-inheritance": True}
autodoc_typehints = "description"
autodoc_member_order = "bysource"
napoleon_google_docstring = True
napoleon_numpy_docstring = True
intersphinx_mapping = {
    "python": ("https://docs.python.org/3", None),
    "numpy": ("https://numpy.org/doc/stable", None),
}
# intersphinx needs the network; without it Sphinx only warns, which -W would turn into errors.
if os.environ.get("BLOODCELL_DOCS_OFFLINE", "1") == "1":
    intersphinx_mapping = {}

templates_path = ["_templates"]
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store"]
html_theme = "furo"
html_title = f"bloodcell {release}"
html_static_path = ["_static"]
nitpicky = False
# Classes re-exported by their package (bloodcell.datasets.BloodCellDataset is
# bloodcell.datasets.core.BloodCellDataset) are documented under both names; a type hint then has
# two equally good targets, which is not an error.
suppress_warnings = ["ref.python"]

# -- Gallery of examples ------------------------------------------------------------------------
# Every script in examples/ runs during the build, with --smoke, and the build stops at the first
# one that fails: the gallery is also the examples' test. `make docs SPHINXOPTS="-D plot_gallery=0"`
# builds the pages without running them.

#: Reading order of the gallery (examples not listed follow, by file name).
EXAMPLE_ORDER = (
    "quickstart.py",
    "outliers.py",
    "augmentation_gallery.py",
    "custom_backbone_head.py",
    "distributed.py",
    "export_model.py",
    "reproduce_report.py",
)


def gallery_argv(gallery_conf: dict, script_vars: dict) -> list[str]:
    """Command-line arguments of every example in the gallery: the quick run."""
    return ["--smoke"]


class ExampleOrder:
    """Sort key of the examples: EXAMPLE_ORDER first, then the others by name."""

    def __init__(self, src_dir: str) -> None:
        self.src_dir = src_dir

    def __call__(self, filename: str) -> tuple[int, str]:
        name = Path(filename).name
        rank = EXAMPLE_ORDER.index(name) if name in EXAMPLE_ORDER else len(EXAMPLE_ORDER)
        return rank, name

    def __repr__(self) -> str:  # sphinx-gallery compares configs by repr between builds
        return f"ExampleOrder({EXAMPLE_ORDER})"


sphinx_gallery_conf = {
    "examples_dirs": "../examples",
    "gallery_dirs": "auto_examples",
    "filename_pattern": r"\.py$",  # execute every example, not only plot_*.py
    "within_subsection_order": "conf.ExampleOrder",
    "reset_argv": "conf.gallery_argv",
    "abort_on_example_error": True,
    "image_scrapers": ("matplotlib",),
    "min_reported_time": 0,
    "remove_config_comments": True,
    "download_all_examples": False,
}


def setup(app: object) -> None:
    """Split the CPU in two logical devices before TensorFlow starts.

    The gallery runs all examples in this one process, and TensorFlow can make logical devices only
    before it initialises; examples/distributed.py then finds the two CPUs it needs for its
    MirroredStrategy, whichever example ran first.
    """
    from bloodcell.training import logical_cpus

    logical_cpus(2)
