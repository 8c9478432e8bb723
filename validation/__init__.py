"""Validation of napari-chromosome-sort on real, annotated microscopy.

Run ``python -m validation --help`` from the repository root. Every figure is reported per spread,
with the worst spread, a naive baseline beside it, and leave-one-spread-out figures for anything
chosen on the data. This package is never imported by ``src/``.
"""
