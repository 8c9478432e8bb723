"""Atomic writes keep the old file when writing fails and leave no temporary files."""

import pandas as pd
import pytest

from napari_chromosome_sort.files.atomic import atomic_path, write_bytes_atomic, write_csv_atomic


def test_failed_write_keeps_the_old_file(tmp_path):
    target = tmp_path / "model.safetensors"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("crash mid-write")
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.safetensors"]


def test_writes_replace_and_keep_extension(tmp_path):
    seen = []
    with atomic_path(tmp_path / "sub" / "table.csv") as tmp:
        seen.append(tmp.suffix)
        tmp.write_text("a\n1\n")
    assert seen == [".csv"]
    write_bytes_atomic(tmp_path / "b.bin", b"new")
    assert (tmp_path / "b.bin").read_bytes() == b"new"
    write_csv_atomic(pd.DataFrame({"x": [1, 2]}), tmp_path / "t.csv")
    assert pd.read_csv(tmp_path / "t.csv")["x"].tolist() == [1, 2]


def test_written_files_get_normal_permissions(tmp_path):
    import os

    write_bytes_atomic(tmp_path / "m.bin", b"x")
    plain = tmp_path / "plain.bin"
    plain.write_bytes(b"x")
    assert os.stat(tmp_path / "m.bin").st_mode & 0o777 == os.stat(plain).st_mode & 0o777


def test_a_folder_that_cannot_be_written_names_the_users_file(tmp_path, monkeypatch):
    """The error names the file asked for, not the hidden temporary file beside it."""
    import tempfile

    def refuse(*args, **kwargs):
        raise PermissionError(1, "Operation not permitted", str(tmp_path / ".c.csv.x.tmp.csv"))

    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    with pytest.raises(PermissionError) as error:
        write_bytes_atomic(tmp_path / "c.csv", b"x")
    assert f"cannot write {tmp_path / 'c.csv'}: Operation not permitted" in str(error.value)
    assert ".tmp" not in str(error.value)
