"""Collection for the whole checkout: the napari plugin's modules import napari's GUI
libraries, so their doctests are collected only where the ``napari`` extra is installed."""

import importlib.util

collect_ignore_glob = [] if importlib.util.find_spec("magicgui") else ["skunet/napari/*"]
