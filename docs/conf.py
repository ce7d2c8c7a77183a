"""Sphinx configuration for the bloodcell documentation."""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import bloodcell  # noqa: E402

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
