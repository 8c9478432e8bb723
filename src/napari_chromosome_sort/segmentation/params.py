"""The knobs of the segmentation, the statuses it gives and the columns of its object table."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from napari_chromosome_sort.errors import ChromosortError
from napari_chromosome_sort.fields import option

POLARITIES = ("dark_on_light", "bright_on_dark")
BACKGROUND_METHODS = ("opening", "masked")
CROSSING_SCORES = ("auto", "on", "off")
#: the status vocabulary: what the segmentation gives an object, and what a user's review adds
KEPT = "chromosome"  # a single chromosome, cropped and classified
CROSSING_RESOLVED = "crossing-resolved"  # one of the two chromosomes of a resolved crossing
REJECTED = "rejected"  # set aside by the user
STATUSES = (KEPT, "nucleus", "cluster", "debris", "border", CROSSING_RESOLVED)
REVIEW_STATUSES = (*STATUSES, REJECTED)

OBJECT_COLUMNS = [
    "label",
    "status",
    "reason",
    "area",
    "bbox_y0",
    "bbox_x0",
    "bbox_y1",
    "bbox_x1",
    "centroid_y",
    "centroid_x",
    "eccentricity",
    "solidity",
    "major_axis",
    "minor_axis",
    "orientation",
    "mean_intensity",
    "n_parts",
]


@dataclass
class SegmentationParams:
    """Every knob of :func:`segment_spread`. Sizes are relative to the spread's median object
    unless the name says ``_px``; intensities are relative to the median object peak.

    Each knob's help (the segmentation widget's tooltip), choices and whether the widget folds
    it under "Advanced" are its field metadata (see :func:`..fields.option`)."""

    polarity: str | None = option(
        None, 'None = auto ("dark_on_light" | "bright_on_dark")', choices=POLARITIES, advanced=False
    )
    smooth_sigma: float = option(0.7, "px, Gaussian before thresholding")
    max_noise: float = option(
        0.01, "noisier images (after smooth_sigma, x range) are denoised first"
    )
    background_fraction: float = option(1 / 8, "background opening size as a fraction of min(H, W)")
    background_downsample: int = 4
    background_method: str = option(
        "opening",
        '"opening" (large grey opening) | "masked" (smooth fit to the background pixels only; '
        "keeps objects of any size)",
        choices=BACKGROUND_METHODS,
    )
    background_k: float = option(3.0, "background pixels: below median + k x noise sigma")
    flatten_brightness: str = option(
        "auto",
        "divide the signal by a smooth field of local chromosome brightness, so that a dim side "
        'of the spread is thresholded like a bright one: "auto" = fluorescence (bright-on-dark) '
        'spreads only, "on", "off"',
        choices=CROSSING_SCORES,
    )
    flatten_scale: float = option(
        1 / 16, "... the field's smoothing, x the image's shorter side (chosen slide-out)"
    )
    threshold: float | None = option(
        None, "absolute threshold on the corrected signal (None = auto)"
    )
    peak_fraction: float = option(0.5, "object threshold = this x median object peak (>= Otsu)")
    peak_quantile: float = option(
        0.9,
        "an object's peak: this quantile of its pixels (1 = brightest pixel; a lower quantile is "
        "not set by a few bright spots, e.g. DAPI-bright heterochromatin)",
    )
    faint_fraction: float = option(
        0.5, "kept objects fainter than this x the typical one -> debris"
    )
    grow_fraction: float = option(
        0.2, "objects are grown back down to this x the peak (0 = off) ..."
    )
    grow_max_factor: float = option(0.5, "... by at most this x the chromatid width")
    min_area_px: int = option(6, "smaller connected pieces are noise and dropped entirely")
    debris_area_fraction: float = option(
        0.12, "area < this x median object -> debris", advanced=False
    )
    # nuclei
    nucleus_area_factor: float = option(
        6.0, "low-threshold component area >= this x median -> candidate"
    )
    nucleus_min_solidity: float = 0.85
    nucleus_max_eccentricity: float = 0.9
    nucleus_opening_factor: float = option(0.5, "opening radius = this x sqrt(median object area)")
    nucleus_smooth_factor: float = option(0.1, "smoothing sigma = this x sqrt(median object area)")
    nucleus_noise_k: float = option(
        4.0, "stain floor = background + k x noise sigma (<= low threshold)"
    )
    nucleus_min_fill: float = option(0.8, "fraction of a nucleus' pixels that are stained, i.e.")
    nucleus_fill_level: float = option(
        0.3,
        "... above this x its 90th percentile (a group of chromosomes with halos between them is "
        "not uniformly stained)",
    )
    nucleus_convex_solidity: float = option(
        0.95,
        "an object set aside as too large for one chromosome that is this convex (solidity) ...",
    )
    nucleus_convex_area_factor: float = option(
        3.0,
        "... and at least this x the median core is named a nucleus (heaped or crossing "
        "chromosomes are not convex)",
    )
    nucleus_rim_factor: float = option(
        0.25, "rim width (x sqrt(median area)) where pieces stay separate"
    )
    nucleus_enclosed_min_peak: float = option(
        0.8,
        "pieces mostly surrounded by a nucleus stay apart from it only when their peak is at "
        "least this x the typical chromosome peak",
    )
    # chromatid pairing (type C)
    pair_chromatids: bool = option(True, advanced=False)
    pair_max_gap_factor: float = option(1.2, "max gap between the two blobs, x median blob width")
    pair_max_angle_deg: float = option(40.0, "max difference in orientation of elongated blobs")
    pair_min_elongation: float = option(
        2.2, "orientation only compared when both blobs are this elongated"
    )
    pair_max_area_ratio: float = option(1.5, "sisters are copies: near-equal areas")
    pair_max_union_factor: float = option(2.0, "a grouped pair is at most this x the median object")
    pair_max_width_ratio: float = option(
        0.7,
        "each blob of a pair at most this x the median object width: sister chromatids are half a "
        "chromosome wide, whole ones full width (0.7 ~ sqrt 1/2)",
    )
    pair_twin_area_ratio: float = option(1.15, "near-identical blobs pair in any arrangement ...")
    pair_twin_penalty: float = option(1.0, "... but rank after side-by-side pairs")
    pair_twin_width_factor: float = option(1.25, "... and only if as thin as paired chromatids")
    pair_gap_weight: float = option(0.0, "weight of the gap (in blob widths) in the pairing score")
    pair_max_axial_offset: float = option(0.6, "centroid offset along the axis, x mean blob length")
    # touching neighbours
    split_touching: bool = option(True, advanced=False)
    cluster_area_factor: float = option(
        2.6, "area > this x median object -> split attempt / cluster"
    )
    split_min_piece_factor: float = option(
        0.25,
        "every watershed piece must be >= this x median (the smallest chromosomes are about a "
        "quarter of the median one)",
    )
    split_partial: bool = option(
        False, "True: keep the good pieces of a split, the rest stay cluster"
    )
    split_max_piece_factor: float = option(2.3, "... and at most this x median (one chromosome)")
    split_min_solidity: float = option(0.6, "... and at least this solid")
    split_seed_factor: float = option(0.2, "seeds smaller than this x median object are ignored")
    split_neck_factor: float = option(
        0.4,
        "objects of chromosome size are split too where their watershed pieces meet only along "
        "cuts shorter than this x the chromatid width (a neck), unless the pieces pair as "
        "sister chromatids (0 = off)",
    )
    split_by_outline: bool = option(
        False,
        "the neck split also looks at the outline alone (blind to dark bands, which cut a "
        "banded chromosome's stain but not its outline), and the pieces of a split are never "
        "joined again as band cuts (off: it also cuts DAPI chromosomes at a pinched centromere)",
    )
    border_margin_px: int = option(
        1, "objects within this many px of the edge -> border", advanced=False
    )
    # one chromosome cut at a dark band (segmentation/bands.py)
    join_bands: bool = option(
        True, "join kept pieces meeting end to end into one chromosome when ..."
    )
    join_min_contact: float = option(
        0.9, "... they meet along at least this x the chromatid width ..."
    )
    join_contact_brightness: float = option(
        0.75, "... with a contact this x the dimmer piece's median"
    )
    join_min_elongation: float = option(2.5, "... into one unbranched rod this x as long as wide")
    # crossing / overlapping chromosomes kept as one piece (X or T shape with a brighter
    # double-DNA region where they overlap) -> cluster
    detect_crossings: bool = option(True, advanced=False)
    crossing_min_area_factor: float = option(1.2, "larger than this x the median object ...")
    crossing_max_solidity: float = option(0.8, "... not convex (X/T/V shape) ...")
    crossing_prune_factor: float = option(
        0.75, "... skeleton branched after pruning spurs < this x width"
    )
    crossing_brightness: float = option(
        1.6, "... and a plateau brighter than this x the object median"
    )
    crossing_min_plateau: float = option(
        0.1, "... covering at least this x chromatid width squared"
    )
    crossing_shape_area_factor: float = option(
        2.2, "without a bright overlap: branched, larger than"
    )
    crossing_shape_max_solidity: float = option(
        0.7, "... this x the median and less solid than this"
    )
    crossing_contact_brightness: float = option(
        1.15,
        "two kept objects meeting along a cut at least this x brighter than both objects' median "
        "(a crossing cut through its overlap) -> both cluster (0 = off) ...",
    )
    crossing_contact_min_length: float = option(
        0.5, "... along at least this x the chromatid width"
    )
    crossing_score: str = option(
        "off",
        'learned shape score (crossing_model.py) -> cluster: "auto" = fluorescence '
        '(bright-on-dark) spreads only, "on", "off"; off when detect_crossings is off',
        choices=CROSSING_SCORES,
    )
    resolve_crossings: bool = option(
        True,
        "an object set aside as a crossing whose outline is an X of two chromosomes is split "
        "into its two chromosomes, status crossing-resolved (each with the shared crossing "
        "pixels; kept out of training crops)",
    )
    resolve_kept_min_area: float = option(
        0.0,
        "... kept single objects of at least this x the median object are resolved too when "
        "their outline is such an X, on fluorescence (bright-on-dark) spreads only (0 = only "
        "objects set aside as crossings; chosen on other slides: it caught one overlap per "
        "single chromosome lost)",
    )
    resolve_min_arm: float = option(
        1.0, "... each arm reaching this x the chromatid width beyond the crossing ..."
    )
    resolve_max_bend: float = option(
        60.0, "... and each chromosome bent at most this many degrees through it"
    )
    resolve_t: bool = option(True, "... also T shapes (one chromosome ending on the other)")
    crossing_score_threshold: float | None = option(
        None, "on the spread-relative logit; None = model's"
    )
    crossing_model: str | None = option(
        None, "path of a crossing model JSON; None = the shipped one"
    )
    pixel_classes: str = option(
        "off",
        "learned pixel classes (learned/pixels.py) cut the objects set aside as clusters into "
        'their chromosomes: "auto" = fluorescence (bright-on-dark) spreads only, "on", "off"',
        choices=CROSSING_SCORES,
    )
    pixel_overlap_min: float = option(
        0.3,
        "... a cut piece holding this x the chromatid width squared of learned overlap is one "
        "chromosome of a crossing (crossing-resolved)",
    )
    pixel_max_piece: float = option(2.0, "... cut pieces up to this x the median chromosome kept")
    pixel_min_seed: float = option(0.5, "... each piece grown from a seed of this x width squared")
    pixel_model: str | None = option(None, "path of a pixel model; None = the shipped one")
    junction_score: str = option(
        "auto",
        "learned junction score (learned/junctions.py) cuts kept objects that are two touching "
        'chromosomes where they meet: "auto" = fluorescence (bright-on-dark) spreads only, "on", '
        '"off"',
        choices=CROSSING_SCORES,
    )
    junction_model: str | None = option(
        None, "path of a junction model JSON; None = the shipped one"
    )

    def to_dict(self) -> dict:
        """The parameters as a plain dict."""
        return asdict(self)


def switched_on(choice: str, polarity: str) -> bool:
    """Whether an "auto" / "on" / "off" step runs on a spread of ``polarity``: "auto" runs it on
    fluorescence (bright-on-dark) spreads only."""
    return polarity == "bright_on_dark" if choice == "auto" else choice == "on"


def validate_params(params: SegmentationParams) -> None:
    """Raise a ``ChromosortError`` naming the first invalid choice."""
    if params.polarity not in (None, *POLARITIES):
        raise ChromosortError(f"unknown polarity {params.polarity!r}")
    if not params.smooth_sigma >= 0 or not params.max_noise >= 0:
        raise ChromosortError("smooth_sigma and max_noise must be >= 0")
    for name in ("flatten_brightness", "pixel_classes", "crossing_score", "junction_score"):
        if getattr(params, name) not in CROSSING_SCORES:
            raise ChromosortError(
                f"{name} must be 'auto', 'on' or 'off', got {getattr(params, name)!r}"
            )
    if not params.flatten_scale > 0:
        raise ChromosortError("flatten_scale must be > 0")
