"""magicgui forms for the dock widgets: one widget per field of a core dataclass, combo boxes
listing the viewer's layers of one kind, and push buttons with their help and action."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
from magicgui.widgets import CheckBox, ComboBox, Container, FloatSpinBox, LineEdit, SpinBox
from qtpy.QtWidgets import QPushButton

AUTO = -1  # spin-box value shown as "auto" for a number field left at None


def chosen_path(file_edit) -> str | None:
    """The path in a magicgui ``FileEdit``, or None when left empty (it then reads ".")."""
    value = str(file_edit.value)
    return None if value in ("", ".") else value


def field_help(cls) -> dict[str, str]:
    """Per-field help of dataclass ``cls``: the ``"help"`` of its fields' metadata."""
    return {f.name: f.metadata["help"] for f in dataclasses.fields(cls) if f.metadata.get("help")}


def main_fields(cls) -> tuple[str, ...]:
    """Fields of dataclass ``cls`` that a form shows in view (metadata ``"advanced": False``);
    the others are folded under "Advanced"."""
    return tuple(f.name for f in dataclasses.fields(cls) if not f.metadata.get("advanced", True))


def _step(value: float) -> float:
    """A spin-box step fine enough to show ``value`` exactly (magicgui derives decimals)."""
    if value == 0:
        return 0.01
    decimals = 0
    while decimals < 6 and not np.isclose(round(value, decimals), value, rtol=0, atol=1e-9):
        decimals += 1
    magnitude = 10 ** np.floor(np.log10(abs(value))) / 10
    return float(min(magnitude, 10.0**-decimals) if decimals else magnitude)


def _number_widget(kind: str, value, label: str, tooltip: str):
    """A spin box for an int or float field (``value`` None: it starts at "auto")."""
    if kind == "int" and value is not None:
        return SpinBox(value=value, min=-(10**9), max=10**9, label=label, tooltip=tooltip)
    if kind == "int":  # a QDoubleSpinBox with whole steps: it can show "auto"
        widget = FloatSpinBox(value=AUTO, min=AUTO, max=10**6, step=1, label=label, tooltip=tooltip)
        widget.native.setDecimals(0)
        return widget
    span = max(abs(value or 0) * 100, 1000.0)
    return FloatSpinBox(
        value=AUTO if value is None else value,
        min=AUTO if value is None else -span,
        max=span,
        step=0.001 if value is None else _step(value),
        label=label,
        tooltip=tooltip,
    )


def _kind(field: dataclasses.Field, value) -> str:
    """The type name a field's widget is chosen by: its value's, or its annotation's when None."""
    return str(field.type).split("|")[0].strip() if value is None else type(value).__name__


def field_widget(field: dataclasses.Field, value):
    """The magicgui widget of one dataclass field at ``value``, or None for a field a form
    cannot show (neither bool, int, float nor str). Label, tooltip and choices come from the
    field's metadata (``"label"``, ``"help"``, ``"choices"``; :mod:`napari_chromosome_sort.fields`);
    a field whose default is None ("chosen automatically") gets an "auto" entry: the first item
    of a choice box or the lowest value of a spin box."""
    label = field.metadata.get("label") or field.name.replace("_", " ")
    tooltip = field.metadata.get("help") or label
    kind = _kind(field, value)
    choices = list(field.metadata.get("choices", ()))
    if kind == "bool":
        widget = CheckBox(value=value, label=label, tooltip=tooltip)
    elif kind in ("int", "float"):
        widget = _number_widget(kind, value, label, tooltip)
        if value is None:
            widget.native.setSpecialValueText("auto")
    elif kind == "str" and len(choices) > 1:
        if value is None:
            choices.insert(0, "auto")
        elif value not in choices:
            choices.insert(0, value)
        widget = ComboBox(choices=choices, value=value or "auto", label=label, tooltip=tooltip)
    elif kind == "str" and value is not None:
        widget = LineEdit(value=value, label=label, tooltip=tooltip)
    else:
        return None
    widget.native.setToolTip(tooltip)
    return widget


def dataclass_form(
    cls,
    skip: Iterable[str] = (),
    on_change: Callable[[], None] | None = None,
    keep: Iterable[str] | None = None,
):
    """A magicgui Container with one widget per simple field of dataclass ``cls`` (only the
    fields in ``keep`` when given, never those in ``skip``; see :func:`field_widget`).

    Returns ``(container, read, widgets)``; ``read()`` builds a ``cls`` instance from the
    widgets. Fields a form cannot show keep their default.
    """
    instance = cls()
    fields = {f.name: f for f in dataclasses.fields(cls)}
    keep = None if keep is None else set(keep)
    widgets: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if f.name in skip or f.name.startswith("_") or (keep is not None and f.name not in keep):
            continue
        widget = field_widget(f, getattr(instance, f.name))
        if widget is None:
            continue
        widgets[f.name] = widget
        if on_change is not None:
            widget.changed.connect(lambda *_: on_change())
    container = Container(widgets=list(widgets.values()), labels=True)
    optional = {f.name for f in dataclasses.fields(cls) if getattr(instance, f.name) is None}
    integers = {name for name in optional & set(widgets) if _kind(fields[name], None) == "int"}

    def read():
        """The dataclass instance the form shows now."""
        values = {}
        for name, widget in widgets.items():
            value = widget.value
            if name in optional and (value == "auto" or value == AUTO):
                value = None
            elif name in integers:
                value = int(round(value))
            values[name] = value
        return dataclasses.replace(instance, **values)

    return container, read, widgets


def layer_combo(viewer, layer_type: type, tooltip: str, nullable: bool = False) -> ComboBox:
    """A magicgui combo box of the viewer's layers of ``layer_type`` (its ``value`` is the chosen
    layer, or None), kept in step with the layer list: layers added, removed, moved, renamed."""
    combo = ComboBox(
        choices=lambda _widget: [
            (layer.name, layer) for layer in viewer.layers if isinstance(layer, layer_type)
        ],
        nullable=nullable,
        tooltip=tooltip,
    )
    combo.native.setToolTip(tooltip)
    events = viewer.layers.events
    for event in (events.inserted, events.removed, events.reordered, events.renamed):
        event.connect(combo.reset_choices)  # a bound method: held weakly by napari
    return combo


def push_button(text: str, tooltip: str, clicked: Callable) -> QPushButton:
    """A Qt push button showing ``text``, ``tooltip`` on hover, calling ``clicked`` when
    clicked."""
    button = QPushButton(text)
    button.setToolTip(tooltip)
    button.clicked.connect(clicked)
    return button
