"""The napari plugin (``pip install "skunet[napari]"``): a Segment widget that runs a
pretrained or saved model on an image layer in a worker thread and adds its instances,
classes or probabilities; the bundled nuclei sample as sample data; and a reader that
opens ``.skunet`` model files in the widget.

The manifest (``napari.yaml``) is registered through the ``napari.manifest`` entry
point; napari imports these modules only when a contribution is used.
"""

__all__: list[str] = []
