"""Dataclass fields that describe themselves for a form.

``option(default, help, ...)`` is ``dataclasses.field(default=...)`` with ``metadata``:

* ``"help"``: what the field means, in words for the user (a widget's tooltip);
* ``"choices"``: the allowed texts of a ``str`` field (a widget shows a drop-down);
* ``"advanced"``: folded under "Advanced" in a widget (True unless ``advanced=False``);
* ``"label"``: the form label (default: the name with spaces).

The knobs of the core (``SegmentationParams``, ``TrainingConfig``) are declared with it and the
dock widgets build their forms from it (``_widgets.shared.forms.dataclass_form``).
"""

from __future__ import annotations

import dataclasses
from typing import Any


def option(
    default: Any,
    help: str = "",
    *,
    choices: tuple[str, ...] = (),
    advanced: bool = True,
    label: str | None = None,
) -> Any:
    """A dataclass field with default ``default`` and the form metadata above."""
    metadata: dict[str, Any] = {"help": help, "advanced": advanced}
    if choices:
        metadata["choices"] = tuple(choices)
    if label:
        metadata["label"] = label
    return dataclasses.field(default=default, metadata=metadata)
