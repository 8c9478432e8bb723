"""The file of a small learned model: format-tagged JSON, checked when read, written atomically."""

from __future__ import annotations

import json
from dataclasses import asdict
from importlib import resources
from pathlib import Path
from typing import ClassVar

from napari_chromosome_sort.errors import ChromosortError
from napari_chromosome_sort.files.atomic import write_bytes_atomic


class JsonModel:
    """Mixin of a frozen dataclass kept as JSON: ``KIND`` names the model in messages,
    ``FORMAT`` tags its file, ``DEFAULT_FILE`` is the one shipped in the package data;
    ``TUPLES`` are the fields read back as tuples."""

    KIND: ClassVar[str]
    FORMAT: ClassVar[str]
    DEFAULT_FILE: ClassVar[str]
    TUPLES: ClassVar[tuple[str, ...]] = ("mean", "scale", "coef", "features")

    def to_json(self) -> str:
        """The model as JSON, tagged with its format."""
        return json.dumps({"format": self.FORMAT, **asdict(self)}, indent=1)

    def save(self, path: str | Path) -> Path:
        """Write the model as JSON to ``path`` (atomically); returns the path."""
        return write_bytes_atomic(path, self.to_json().encode())

    @classmethod
    def from_dict(cls, data: dict):
        """The model of a dict read from its JSON (an error if it is not one)."""
        if not isinstance(data, dict) or data.get("format") != cls.FORMAT:
            raise ChromosortError(f"not a {cls.KIND} model (expected format {cls.FORMAT!r})")
        fields = {k: v for k, v in data.items() if k != "format"}
        try:
            for key in cls.TUPLES:
                fields[key] = tuple(fields[key])
            return cls(**fields)
        except (KeyError, TypeError, ValueError) as exc:
            raise ChromosortError(f"{cls.KIND} model is incomplete or malformed: {exc}") from exc

    @classmethod
    def read(cls, path: str | Path | None = None):
        """The model in the file ``path``, or the one shipped in the package data."""
        try:
            if path is None:
                package_data = resources.files("napari_chromosome_sort") / "data"
                text = package_data.joinpath(cls.DEFAULT_FILE).read_text()
            else:
                text = Path(path).read_text()
            data = json.loads(text)
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            where = path or cls.DEFAULT_FILE
            raise ChromosortError(f"cannot read {cls.KIND} model {where}: {exc}") from exc
        return cls.from_dict(data)
