"""The spreads of a batch run: every image below the input folder, one job each, with a sample
and spread id that is distinct and safe as a folder name."""

from __future__ import annotations

from dataclasses import dataclass
from fnmatch import fnmatch
from pathlib import Path

from napari_chromosome_sort.errors import ChromosortError
from napari_chromosome_sort.files.io import IMAGE_SUFFIXES
from napari_chromosome_sort.files.safety import unique_ids


@dataclass
class SpreadJob:
    """One spread to process: its sample, image file, unique stem and output folder."""

    sample: str
    image: str  # absolute path
    stem: str
    out_dir: str  # OUT_DIR/spreads/<sample>/<stem>
    digest: str = ""  # sha256 of the image's bytes when the run started ("" = not checked)


def _natural_id(path: Path, root: Path) -> tuple[str, str]:
    """(sample, stem) an image below ``root`` is named by: sample = first-level sub-folder
    (files directly in ``root`` form a sample named after it); nested sub-folders are joined
    to the stem with ``"__"``."""
    rel = path.relative_to(root)
    sample = rel.parts[0] if len(rel.parts) > 1 else root.name
    inner = rel.parts[1:] if len(rel.parts) > 1 else rel.parts
    return sample, "__".join([*inner[:-1], Path(inner[-1]).stem])


def find_spreads(
    input_dir, out_dir, exclude: tuple[str, ...] = (), extensions=IMAGE_SUFFIXES
) -> list[SpreadJob]:
    """Every image below ``input_dir``. Sample = first-level sub-folder (files directly in
    ``input_dir`` form a sample named after it). ``exclude``: glob patterns on file names
    (e.g. ``"*K.tif"`` for karyotype truth images)."""
    root = Path(input_dir).resolve()
    if not root.is_dir():
        raise ChromosortError(f"input folder {root} does not exist or is not a folder")
    spreads_root = Path(out_dir).resolve() / "spreads"
    found = []
    for path in sorted(root.rglob("*")):
        if not path.is_file() or path.suffix.lower() not in extensions:
            continue
        if path.name.startswith(".") or any(fnmatch(path.name, pat) for pat in exclude):
            continue
        if path.is_relative_to(Path(out_dir).resolve()):
            continue  # never pick up our own outputs
        found.append((*_natural_id(path, root), path))
    jobs = _unique_jobs(found, spreads_root)
    if not jobs:
        raise ChromosortError(
            f"no images ({', '.join(extensions)}) below {root}; put spreads in one sub-folder "
            "per sample"
        )
    return jobs


def _unique_jobs(found: list, spreads_root: Path) -> list[SpreadJob]:
    """One job per image with a distinct, safe sample and spread id (:func:`.safety.unique_ids`):
    ``x.png`` and ``x.jpg``, or ``sub/y.png`` and ``sub__y.png``, become ``x-2``/``x-3``; which
    image each id stands for is in its DONE marker and in every row (``image``)."""
    samples, _ = unique_ids(sorted({sample for sample, _, _ in found}))
    sample_id = dict(zip(sorted({sample for sample, _, _ in found}), samples, strict=True))
    jobs = []
    for sample in sorted(sample_id):
        members = [(path, stem) for s, stem, path in found if s == sample]
        stems, _ = unique_ids([stem for _, stem in members])
        for (path, _), stem in zip(members, stems, strict=True):
            sid = sample_id[sample]
            jobs.append(SpreadJob(sid, str(path), stem, str(spreads_root / sid / stem)))
    return jobs


def renamed_spreads(jobs: list[SpreadJob], input_dir) -> dict[str, str]:
    """{image: "sample/spread"} for the images whose ids are not their own names (collisions or
    unsafe characters), to be reported."""
    root = Path(input_dir).resolve()
    out = {}
    for job in jobs:
        if (job.sample, job.stem) != _natural_id(Path(job.image), root):
            out[job.image] = f"{job.sample}/{job.stem}"
    return out
