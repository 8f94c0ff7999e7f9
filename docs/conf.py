"""Sphinx configuration of skunet's documentation.

Sphinx because the docstrings already are Sphinx's: numpydoc sections and ``:func:`` /
``:class:`` cross-references, which numpydoc and autodoc render as they stand; the guide
pages are Markdown (MyST), as the README was. Built in CI with warnings as errors:
``python -m sphinx -W --keep-going -b html docs docs/_build/html``.
"""

import skunet

project = "skunet"
author = "the skunet developers"
copyright = "2026, the skunet developers"
release = skunet.__version__
version = release

extensions = [
    "myst_parser",
    "numpydoc",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.viewcode",
]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
exclude_patterns = ["_build"]
myst_heading_anchors = 3

autodoc_default_options = {"members": True, "show-inheritance": True}
autodoc_typehints = "none"  # the numpydoc sections say the types
autosummary_generate = False
numpydoc_show_class_members = False
numpydoc_xref_param_type = False

html_theme = "pydata_sphinx_theme"
html_title = "skunet"
html_theme_options = {"navigation_depth": 2, "show_toc_level": 2}


def _skip_metadata_requests(app, what, name, obj, skip, options):
    """scikit-learn's generated ``set_*_request`` methods: documented by scikit-learn."""
    if name.startswith("set_") and name.endswith("_request"):
        return True
    return None


def setup(app):
    app.connect("autodoc-skip-member", _skip_metadata_requests)
