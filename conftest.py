"""Collection for the whole checkout: the napari plugin's modules import napari's GUI
libraries, so their doctests are collected only where the ``napari`` extra is installed."""

import importlib.util
import os

# figures in the tests draw off screen: with a display (pytest-xvfb's Xvfb, started for
# the napari tests) matplotlib would pick Qt, and a Qt figure fails if that X server does
# not answer in time (it happened once, on a loaded machine)
os.environ.setdefault("MPLBACKEND", "Agg")

collect_ignore_glob = [] if importlib.util.find_spec("magicgui") else ["skunet/napari/*"]
