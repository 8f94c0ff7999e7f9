"""Progress bars: widgets in notebooks that have ipywidgets, text everywhere else."""

from __future__ import annotations

from importlib.util import find_spec
from typing import Any

__all__ = ["in_notebook", "tqdm", "use_widgets"]


def in_notebook() -> bool:
    """Whether this code runs in a Jupyter kernel (where figures and bars display live)."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and type(shell).__name__ == "ZMQInteractiveShell"


def use_widgets() -> bool:
    """Widget bars need a notebook and ipywidgets; without ipywidgets tqdm's notebook bar
    raises, so text bars are used instead."""
    return in_notebook() and find_spec("ipywidgets") is not None


def tqdm(*args: Any, **kwargs: Any):
    """``tqdm.auto.tqdm`` that falls back to a text bar when ipywidgets is missing."""
    if use_widgets():
        from tqdm.notebook import tqdm as bar
    else:
        from tqdm import tqdm as bar
    return bar(*args, **kwargs)
