"""What a person sees, the same in napari, the CLI's pictures and the plots.

* :mod:`.colours`: the colour of each class;
* :mod:`.cam_display`: the Grad-CAM palette, mask and colour bar;
* :mod:`.overlays`: spread pictures with each call outlined in its class colour.
"""
