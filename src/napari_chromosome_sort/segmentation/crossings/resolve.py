"""Two chromosomes lying across each other, resolved into two chromosome objects.

A crossing of two chromosomes is an X (or a T, when one ends on the other): its skeleton has one
junction from which four (three) arms leave, and the arms pair into two nearly straight lines,
one per chromosome. :func:`resolve_x` finds that junction, pairs the arms and gives each
chromosome its arms' pixels plus the crossing pixels both share.

In the label image (one label per pixel) the shared crossing pixels belong to the first half;
the second half's full mask (its own pixels and the shared ones) is kept in
:attr:`.Segmentation.crossing_masks`. Both halves have the status ``crossing-resolved`` and a
reason naming the other half, so they are counted as chromosomes but left out of training crops
(crops are made of ``chromosome`` objects only).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

RESOLVED = "crossing-resolved"


@dataclass
class ResolvedX:
    """The two chromosomes of a crossing, as masks in the object's window."""

    first: np.ndarray  # arms of the first chromosome + the shared pixels
    second: np.ndarray  # arms of the second chromosome + the shared pixels
    shared: np.ndarray  # the crossing pixels, in both
    bend_deg: float  # the larger bend of the two chromosomes through the junction
    n_arms: int  # skeleton ends: 4 for an X, 3 for a T

    def write(self, label_img, objects: list, obj: dict, sl, new: int, why: str, what: str):
        """Write the two chromosomes into ``label_img`` (window ``sl``): object ``obj`` keeps
        the first with the shared pixels, a new object ``new`` (a row added to ``objects``)
        the second without them; both are ``RESOLVED``, their reasons ``why`` and naming each
        other, the ``what`` pixels shared. Returns the new object's full mask entry
        ``(y0, x0, mask)``."""
        local = label_img[sl] == obj["label"]
        window = label_img[sl]
        window[local & ~self.first] = 0
        window[self.second & ~self.shared] = new
        for label, other in ((obj["label"], new), (new, obj["label"])):
            reason = (
                f"{why}, resolved; the other is object {other}; the {what} pixels are shared "
                f"(labelled {obj['label']})"
            )
            if label == obj["label"]:
                obj.update(status=RESOLVED, reason=reason)
            else:
                objects.append({"label": new, "status": RESOLVED, "reason": reason, "n_parts": 1})
        return sl[0].start, sl[1].start, self.second


def _pruned_skeleton(mask: np.ndarray, prune: float) -> np.ndarray:
    """The skeleton of ``mask`` with spurs shorter than ``prune`` px removed (the long arms are
    grown back along the skeleton afterwards)."""
    from scipy import ndimage as ndi
    from skimage.morphology import skeletonize

    kernel = np.array([[1, 1, 1], [1, 0, 1], [1, 1, 1]], np.uint8)
    full = skeletonize(mask)
    skel = full.copy()
    steps = max(1, int(round(prune)))
    for _ in range(steps):
        nb = ndi.convolve(skel.astype(np.uint8), kernel, mode="constant")
        ends = skel & (nb <= 1)
        if not ends.any() or skel.sum() - ends.sum() < 2:
            break
        skel &= ~ends
    # grow the surviving arms back from their ends (a removed spur hangs off a junction, not
    # off an end, and stays removed)
    for _ in range(steps):
        nb = ndi.convolve(skel.astype(np.uint8), kernel, mode="constant")
        ends = skel & (nb == 1)
        grown = ndi.binary_dilation(ends, np.ones((3, 3), bool)) & full & ~skel
        if not grown.any():
            break
        skel |= grown
    return skel


def _ends(skel: np.ndarray) -> np.ndarray:
    """(n, 2) end points of a skeleton."""
    from scipy import ndimage as ndi

    kernel = np.array([[1, 1, 1], [1, 0, 1], [1, 1, 1]], np.uint8)
    nb = ndi.convolve(skel.astype(np.uint8), kernel, mode="constant")
    return np.argwhere(skel & (nb == 1))


def _route(skel: np.ndarray, a, b) -> np.ndarray:
    """(n, 2) pixels of the shortest path along the skeleton from ``a`` to ``b``."""
    from skimage.graph import route_through_array

    cost = np.where(skel, 1.0, 1e6)
    path, _ = route_through_array(cost, tuple(a), tuple(b), fully_connected=True, geometric=True)
    return np.asarray(path)


def _turning(path: np.ndarray, step: float) -> float:
    """The largest change of direction (degrees) along ``path``, measured between chords of
    ``step`` px (finer wiggles of the skeleton are not a bend), or a third of a short path."""
    n = max(2, min(int(round(step)), len(path) // 3))
    if len(path) < 3:
        return 0.0
    index = np.r_[np.arange(0, len(path) - 1, n), len(path) - 1]
    pts = path[np.unique(index)].astype(float)
    if len(pts) < 3:
        return 0.0
    v = np.diff(pts, axis=0)
    v /= np.maximum(np.hypot(v[:, 0], v[:, 1]), 1e-9)[:, None]
    cos = np.clip(np.sum(v[1:] * v[:-1], axis=1), -1.0, 1.0)
    return float(np.degrees(np.arccos(cos)).max())


def _x_paths(skel, ends, step):
    """The two chromosomes of four skeleton ends: the pairing of the ends into two paths that
    cross (share pixels) and turn least, with the larger turn."""
    best = None
    for (a, b), (c, d) in [((0, 1), (2, 3)), ((0, 2), (1, 3)), ((0, 3), (1, 2))]:
        p = _route(skel, ends[a], ends[b])
        q = _route(skel, ends[c], ends[d])
        if not (set(map(tuple, p)) & set(map(tuple, q))):
            continue  # paths that do not meet are two sides of one outline, not two chromosomes
        bend = max(_turning(p, step), _turning(q, step))
        if best is None or bend < best[2]:
            best = (p, q, bend)
    return best


def _t_paths(skel, ends, step):
    """The two chromosomes of three skeleton ends: the straightest path between two ends, and
    the stem from the third end to where it meets that path."""
    best = None
    for a, b, c in [(0, 1, 2), (0, 2, 1), (1, 2, 0)]:
        p = _route(skel, ends[a], ends[b])
        bend = _turning(p, step)
        if best is None or bend < best[2]:
            target = p[np.argmin(np.hypot(*(p - ends[c]).T))]
            best = (p, _route(skel, ends[c], target), bend)
    return best


def resolve_x(
    mask: np.ndarray,
    width: float,
    min_arm: float = 1.5,
    max_bend: float = 40.0,
    allow_t: bool = False,
    max_width: float = 2.5,
) -> ResolvedX | None:
    """The two chromosomes of an object that is two chromosomes lying across each other, or
    None.

    ``mask``: the object in its window; ``width``: the spread's chromatid width. The skeleton
    (spurs shorter than 0.75 x width pruned) must have four ends (an X: the ends pair into two
    paths that cross, each turning at most ``max_bend`` degrees) or, with ``allow_t``, three (a
    T: the straightest path and the stem meeting it). Every arm must reach ``min_arm`` x width
    beyond the
    crossing, and the object may nowhere be wider than ``max_width`` x width (an X is about
    1.4 x width at its crossing). Each chromosome is the tube of its own width around its path
    (plus the pixels nearer its path than the other's); where the tubes overlap, the pixels are
    shared.
    """
    from scipy import ndimage as ndi

    width = max(float(width), 1.0)
    padded = np.pad(mask, 2)
    edt = ndi.distance_transform_edt(padded)
    if 2.0 * edt.max() > max_width * width:
        return None  # a blob wider than two chromosomes crossing (a nucleus, a heap)
    skel = _pruned_skeleton(padded, 0.75 * width)
    ends = _ends(skel)
    step = 2.0 * width
    if len(ends) == 4:
        found = _x_paths(skel, ends, step)
    elif len(ends) == 3 and allow_t:
        found = _t_paths(skel, ends, step)
    else:  # two ends: a long chromosome, a row of touching ones or two overlapping end to end
        return None
    if found is None or found[2] > max_bend:
        return None
    p, q, bend = found
    on_p = np.zeros(padded.shape, bool)
    on_q = np.zeros(padded.shape, bool)
    on_p[p[:, 0], p[:, 1]] = True
    on_q[q[:, 0], q[:, 1]] = True
    meet = on_p & on_q
    if not meet.any():
        meet[tuple(q[-1])] = True  # a stem meets the other path at its last pixel
    dist_meet = ndi.distance_transform_edt(~meet)
    # an arm is a path's stretch away from the crossing: each chromosome must reach beyond it
    for path in (p, q):
        if dist_meet[path[:, 0], path[:, 1]].max() < min_arm * width:
            return None
    # a chromosome is about equally wide along its length: each is the tube of its own width
    # around its path (measured away from the crossing); the tubes overlap at the crossing
    seeds = np.where(on_p & ~meet, 1, 0) + np.where(on_q & ~meet, 2, 0)
    seeds[seeds == 3] = 0
    _, (iy, ix) = ndi.distance_transform_edt(seeds == 0, return_indices=True)
    nearest = seeds[iy, ix]
    halves = []
    for k, (path, on) in enumerate(((p, on_p), (q, on_q)), 1):
        radii = edt[path[:, 0], path[:, 1]]
        away = dist_meet[path[:, 0], path[:, 1]] > width
        radius = 1.15 * float(np.median(radii[away] if away.any() else radii))
        half = padded & ((ndi.distance_transform_edt(~on) <= radius) | (nearest == k))
        lab, n = ndi.label(half)
        if n > 1:  # stray pixels assigned across the crossing: keep the main body
            sizes = np.bincount(lab.ravel())
            sizes[0] = 0
            half = lab == int(np.argmax(sizes))
        halves.append(half)
    shared = halves[0] & halves[1]
    halves = [h[2:-2, 2:-2] for h in halves]
    return ResolvedX(
        first=halves[0],
        second=halves[1],
        shared=shared[2:-2, 2:-2],
        bend_deg=bend,
        n_arms=len(ends),
    )


def _arm_direction(arm: np.ndarray, centre_dist: np.ndarray, centre_xy, reach: float):
    """Unit vector from the crossing centre to an arm's pixels within ``reach`` px of it."""
    near = arm & (centre_dist <= reach)
    yx = np.argwhere(near if near.any() else arm).mean(axis=0) - centre_xy
    return yx / max(float(np.hypot(*yx)), 1e-9)


def _bend(u, v) -> float:
    """Degrees a chromosome turns going from arm ``u`` through the centre into arm ``v``."""
    return 180.0 - float(np.degrees(np.arccos(np.clip(np.dot(u, v), -1.0, 1.0))))


def resolve_at_overlap(
    mask: np.ndarray, centre: np.ndarray, width: float, min_arm: float = 1.0, max_bend: float = 60.0
) -> ResolvedX | None:
    """The two chromosomes of an object lying over each other at ``centre`` (a known overlap,
    e.g. the learned overlap pixels), or None.

    The arms are the object's parts away from the centre of at least ``min_arm`` x width^2 px
    (smaller parts count to the centre). Four arms (an X): paired into the two chromosomes that
    turn least through the centre, each at most ``max_bend`` degrees; three (a T): the
    straightest pair is one chromosome, the third arm ends on it; two: two chromosomes meeting
    end to end in the overlap. Each chromosome is its arms plus the centre (shared).
    """
    from scipy import ndimage as ndi

    width = max(float(width), 1.0)
    centre = centre & mask
    if not centre.any():
        return None
    dist = ndi.distance_transform_edt(~centre)
    # the arms leave the centre: the object's parts beyond half a width of it
    arms_img, n = ndi.label(mask & (dist > max(1.0, 0.5 * width)))
    sizes = np.bincount(arms_img.ravel(), minlength=n + 1)
    arms = [k for k in range(1, n + 1) if sizes[k] >= min_arm * width**2]
    if not 2 <= len(arms) <= 4:
        return None  # a lone blob on the overlap, or a heap of three or more chromosomes
    middle = np.argwhere(centre).mean(axis=0)
    dirs = [_arm_direction(arms_img == k, dist, middle, 2.0 * width) for k in arms]
    if len(arms) == 4:
        pairings = [((0, 1), (2, 3)), ((0, 2), (1, 3)), ((0, 3), (1, 2))]
        bends = [
            max(_bend(dirs[a], dirs[b]), _bend(dirs[c], dirs[d])) for (a, b), (c, d) in pairings
        ]
        best = int(np.argmin(bends))
        groups, bend = pairings[best], bends[best]
    elif len(arms) == 3:
        pairs = [(0, 1, 2), (0, 2, 1), (1, 2, 0)]
        bends = [_bend(dirs[a], dirs[b]) for a, b, _ in pairs]
        a, b, c = pairs[int(np.argmin(bends))]
        groups, bend = ((a, b), (c,)), min(bends)
    else:
        groups, bend = ((0,), (1,)), 0.0
    if bend > max_bend:
        return None
    # the pixels between the centre and the arms go to the nearest arm; the centre is shared
    arms_img[~np.isin(arms_img, arms)] = 0
    _, (iy, ix) = ndi.distance_transform_edt(arms_img == 0, return_indices=True)
    nearest = np.where(mask & ~centre, arms_img[iy, ix], 0)
    shared = mask & centre
    halves = [shared | np.isin(nearest, [arms[i] for i in g]) for g in groups]
    return ResolvedX(
        first=halves[0], second=halves[1], shared=shared, bend_deg=bend, n_arms=len(arms)
    )
