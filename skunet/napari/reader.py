"""Opening a ``.skunet`` model file in napari selects it in the Segment widget."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["get_reader"]


def get_reader(path: str | list[str]) -> Callable | None:
    """napari's reader hook: a function for one ``.skunet`` file, else None."""
    if isinstance(path, list) or Path(path).suffix != ".skunet":
        return None
    return _open_model


def _open_model(path: str) -> list[tuple[Any, ...]]:
    """Dock the Segment widget with the model chosen; adds no layer (napari's
    ``[(None,)]``: read, nothing to show)."""
    import napari

    viewer = napari.current_viewer()
    if viewer is not None:
        _, widget = viewer.window.add_plugin_dock_widget("skunet", "Segment")
        widget.use_model_file(path)
    return [(None,)]
