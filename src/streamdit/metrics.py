"""Evaluation metrics as pure functions (DESIGN.md section 2): Frechet distance, CLIP score,
caption retrieval, bootstrap confidence intervals, frames to reach a target, and pixel measures of
the captioned object (colour fraction, shape IoU).

Feature measures take matrices ``[n, d]`` (numpy arrays or torch tensors, any float dtype), run in
float64 numpy and return Python floats; pixel measures take videos ``[n, f, c, h, w]`` in [-1, 1].
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch

from streamdit.video import to_uint8


def _as_matrix(x: np.ndarray | torch.Tensor, name: str, min_rows: int = 1) -> np.ndarray:
    """``x`` as a finite float64 ``[n, d]`` array with ``n >= min_rows``."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().double().numpy()
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"{name} must be a matrix [n, d], got shape {x.shape}")
    if x.shape[0] < min_rows:
        raise ValueError(f"{name} needs at least {min_rows} rows (samples), got {x.shape[0]}")
    if not np.isfinite(x).all():
        raise ValueError(f"{name} holds non-finite values")
    return x


def gaussian_stats(feats: np.ndarray | torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Mean ``[d]`` and unbiased covariance ``[d, d]`` (float64) of features ``[n >= 2, d]``."""
    x = _as_matrix(feats, "feats", min_rows=2)
    return x.mean(axis=0), np.cov(x, rowvar=False).reshape(x.shape[1], x.shape[1])


def _psd_sqrt(a: np.ndarray) -> np.ndarray:
    """Square root of a symmetric positive semi-definite matrix by eigendecomposition.

    Rounding can leave eigenvalues of a PSD matrix slightly negative; they are clamped to 0.
    """
    w, v = np.linalg.eigh((a + a.T) / 2)
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def frechet_from_stats(mu1: np.ndarray, s1: np.ndarray, mu2: np.ndarray, s2: np.ndarray) -> float:
    """Frechet distance between N(mu1, s1) and N(mu2, s2):

        |mu1 - mu2|^2 + tr(s1) + tr(s2) - 2 tr((s1 s2)^(1/2)).

    The trace term uses tr((s1 s2)^(1/2)) = tr((s1^(1/2) s2 s1^(1/2))^(1/2)), whose argument is
    symmetric PSD, so both square roots come from symmetric eigendecompositions: no complex parts
    appear and no ``eps * I`` regulariser is needed for singular covariances (fewer samples than
    feature dimensions), since zero or slightly negative eigenvalues are clamped to 0 instead.
    Returns a float >= 0 (rounding below 0 is clamped).
    """
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    s1, s2 = np.asarray(s1, np.float64), np.asarray(s2, np.float64)
    d = mu1.shape[0]
    if mu1.shape != (d,) or mu2.shape != (d,) or s1.shape != (d, d) or s2.shape != (d, d):
        raise ValueError(
            f"need means [d] and covariances [d, d] of one width, got {mu1.shape}, {s1.shape}, "
            f"{mu2.shape}, {s2.shape}"
        )
    root1 = _psd_sqrt(s1)
    w = np.linalg.eigvalsh(root1 @ s2 @ root1)
    trace_sqrt = np.sqrt(np.clip(w, 0.0, None)).sum()
    distance = np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * trace_sqrt
    return max(float(distance), 0.0)


def frechet_distance(feats_a: np.ndarray | torch.Tensor, feats_b: np.ndarray | torch.Tensor) -> float:
    """Frechet distance between Gaussian fits of features ``[n >= 2, d]`` and ``[m >= 2, d]``.

    This is FVD when the features are video features (DESIGN.md section 2, "FVD"). Units are
    squared feature units; it is biased upwards for small n, so compare values at equal n.
    """
    a = _as_matrix(feats_a, "feats_a", min_rows=2)
    b = _as_matrix(feats_b, "feats_b", min_rows=2)
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"feature widths differ: feats_a has {a.shape[1]}, feats_b has {b.shape[1]}")
    return frechet_from_stats(*gaussian_stats(a), *gaussian_stats(b))


def clip_scores(image_emb: np.ndarray | torch.Tensor, text_emb: np.ndarray | torch.Tensor) -> np.ndarray:
    """Per-pair CLIP scores ``[n]``: ``100 * max(cos(image_i, text_i), 0)`` for rows ``[n, d]``."""
    a = _as_matrix(image_emb, "image_emb")
    b = _as_matrix(text_emb, "text_emb")
    if a.shape != b.shape:
        raise ValueError(f"image_emb {a.shape} and text_emb {b.shape} must pair row by row")
    cos = np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)).clip(1e-12)
    return 100.0 * np.clip(cos, 0.0, None)


def clip_score(image_emb: np.ndarray | torch.Tensor, text_emb: np.ndarray | torch.Tensor) -> float:
    """CLIP score (DESIGN.md section 2): the mean over rows of ``100 * max(cos, 0)``, in [0, 100]."""
    return float(clip_scores(image_emb, text_emb).mean())


def retrieval_top1(
    image_emb: np.ndarray | torch.Tensor,
    text_emb: np.ndarray | torch.Tensor,
    labels: np.ndarray | torch.Tensor | list[int] | None = None,
) -> tuple[float, float]:
    """Top-1 caption retrieval: the fraction of images ``[n, d]`` whose own caption ranks first by
    cosine similarity among all candidate captions ``[m, d]``, and the chance level ``1 / m``.

    ``labels [n]`` gives each image's caption row; None means image i belongs to caption i (m = n).
    """
    a = _as_matrix(image_emb, "image_emb")
    b = _as_matrix(text_emb, "text_emb")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"embedding widths differ: images have {a.shape[1]}, captions {b.shape[1]}")
    if labels is None:
        if a.shape[0] != b.shape[0]:
            raise ValueError(f"without labels images and captions pair up, got {a.shape[0]} and {b.shape[0]}")
        labels = np.arange(a.shape[0])
    labels = np.asarray(labels, dtype=np.int64)
    if labels.shape != (a.shape[0],) or labels.min() < 0 or labels.max() >= b.shape[0]:
        raise ValueError(f"labels must be {a.shape[0]} caption indices in [0, {b.shape[0]}), got {labels}")
    a = a / np.linalg.norm(a, axis=1, keepdims=True).clip(1e-12)
    b = b / np.linalg.norm(b, axis=1, keepdims=True).clip(1e-12)
    best = np.argmax(a @ b.T, axis=1)
    return float(np.mean(best == labels)), 1.0 / b.shape[0]


def bootstrap_ci(
    values: np.ndarray | torch.Tensor,
    generator: torch.Generator,
    n_boot: int = 1000,
    level: float = 0.95,
    statistic: Callable[[np.ndarray], float] = np.mean,
) -> tuple[float, float]:
    """Percentile bootstrap interval ``(low, high)`` of ``statistic`` at confidence ``level``.

    ``values [n, ...]`` are resampled with replacement along axis 0 (indices drawn from
    ``generator``), ``statistic`` maps a resample to a float: the mean of per-sample scores by
    default, or e.g. ``lambda f: frechet_distance(f, real_feats)`` for FVD over feature rows.
    """
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().double().numpy()
    values = np.asarray(values)
    n = values.shape[0] if values.ndim else 0
    if n < 2:
        raise ValueError(f"bootstrap needs at least 2 values, got {n}")
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")
    return interval(bootstrap_statistics(values, generator, n_boot, statistic), level)


def bootstrap_statistics(
    values: np.ndarray, generator: torch.Generator, n_boot: int, statistic: Callable[[np.ndarray], float]
) -> np.ndarray:
    """``statistic`` of ``n_boot`` resamples of ``values`` with replacement along axis 0."""
    n = values.shape[0]
    draws = torch.randint(n, (n_boot, n), generator=generator).numpy()
    return np.array([float(statistic(values[idx])) for idx in draws])


def bootstrap_frechet(
    feats_a: np.ndarray | torch.Tensor,
    feats_b: np.ndarray | torch.Tensor,
    generator: torch.Generator,
    n_boot: int = 200,
    level: float = 0.95,
) -> tuple[float, float]:
    """Bias-corrected percentile bootstrap interval of the Frechet distance between paired features.

    ``feats_a`` and ``feats_b`` are ``[n, ..., d]`` with row i of both belonging to unit i (a prompt:
    its generated and its real clips, possibly several clips each). A resample draws n units with
    replacement, keeps all their rows in both sets and recomputes the distance (FVD per resample).
    Resampling repeats units, which narrows each set's spread and adds to the distance, so the
    resampled distances sit above the full-sample one; with few units their percentile interval can
    miss the estimate altogether. The interval is therefore shifted
    down by that bias, the mean resampled distance minus the full-sample distance (and floored at 0).
    """
    a, b = (
        np.asarray(f.detach().cpu().double() if isinstance(f, torch.Tensor) else f)
        for f in (feats_a, feats_b)
    )
    if a.ndim < 2 or a.shape[0] != b.shape[0] or a.shape[-1] != b.shape[-1]:
        raise ValueError(f"need paired features [n, ..., d] of one width, got {a.shape} and {b.shape}")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")
    d = a.shape[-1]

    def distance(idx: np.ndarray) -> float:
        return frechet_distance(a[idx].reshape(-1, d), b[idx].reshape(-1, d))

    units = np.arange(a.shape[0])
    if units.shape[0] < 2:
        raise ValueError(f"bootstrap needs at least 2 units, got {units.shape[0]}")
    stats = bootstrap_statistics(units, generator, n_boot, distance)
    bias = float(stats.mean()) - distance(units)
    low, high = interval(stats, level)
    return max(0.0, low - bias), max(0.0, high - bias)


def frames_to_reach(scores: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """First frame index at which ``scores [p, f]`` reach ``targets [p]``, and whether they do.

    A row that never reaches its target counts as ``f`` frames (censored at the end of the run).
    Returns ``frames`` (long ``[p]``) and ``reached`` (bool ``[p]``).
    """
    if scores.ndim != 2 or targets.shape != scores.shape[:1]:
        raise ValueError(
            f"need scores [p, f] and targets [p], got {tuple(scores.shape)}, {tuple(targets.shape)}"
        )
    hit = scores >= targets[:, None]
    reached = hit.any(dim=1)
    first = torch.where(
        reached, hit.float().argmax(dim=1), torch.full_like(reached, scores.shape[1], dtype=torch.long)
    )
    return first.long(), reached


def colour_mask(video: torch.Tensor, rgb: tuple[int, int, int], tol: int = 48) -> torch.Tensor:
    """[f, h, w] bool: the pixels of one video ``[f, c, h, w]`` in [-1, 1] within ``tol`` (L-inf, on
    uint8 values) of the colour ``rgb``."""
    u = torch.from_numpy(to_uint8(video)).int()  # [f, h, w, 3]
    return (u - torch.tensor(rgb).int()).abs().amax(-1) <= tol


def colour_fraction(video: torch.Tensor, rgbs: list[tuple[int, int, int]], tol: int = 48) -> torch.Tensor:
    """[n, f] fraction of each frame's pixels within ``tol`` of its video's colour (``rgbs``: one per video
    of ``video [n, f, c, h, w]``)."""
    return torch.stack(
        [colour_mask(v, c, tol).float().mean(dim=(1, 2)) for v, c in zip(video, rgbs, strict=True)]
    )


def _centred(mask: torch.Tensor) -> torch.Tensor:
    """A [h, w] bool mask rolled so that its centroid sits at the centre pixel."""
    h, w = mask.shape
    ys, xs = mask.nonzero(as_tuple=True)
    dy, dx = h // 2 - int(ys.float().mean().round()), w // 2 - int(xs.float().mean().round())
    return torch.roll(mask, shifts=(dy, dx), dims=(0, 1))


def shape_iou(
    video: torch.Tensor, real: torch.Tensor, rgbs: list[tuple[int, int, int] | None], tol: int = 48
) -> dict:
    """Shape fidelity without a classifier: per frame, the mask of pixels within ``tol`` of the object's
    colour (``rgbs``, one per video; None skips the video, e.g. a scene of two objects), centred on its
    centroid, against the real frame's centred mask (IoU), on frames where both masks hold at least 3
    pixels. ``video`` and ``real`` are ``[n, f, c, h, w]`` in [-1, 1]. Returns ``iou`` (mean over the
    compared frames), ``disc`` (the real mask against a centred disc of its own area: what a round blob
    of the right size scores) and ``present`` (the share of frames compared)."""
    h, w = video.shape[-2:]
    yy, xx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    d2 = (yy - h // 2) ** 2 + (xx - w // 2) ** 2  # squared distance to the centre pixel
    ious, discs, present, total = [], [], 0, 0
    for v, r, rgb in zip(video, real, rgbs, strict=True):
        if rgb is None:
            continue
        for g, m in zip(colour_mask(v, rgb, tol), colour_mask(r, rgb, tol), strict=True):
            total += 1
            if g.sum() < 3 or m.sum() < 3:
                continue
            present += 1
            gc, rc = _centred(g), _centred(m)
            ious.append(float((gc & rc).sum() / (gc | rc).sum()))
            disc = d2 <= float(m.sum()) / math.pi
            discs.append(float((disc & rc).sum() / (disc | rc).sum()))
    return {
        "iou": sum(ious) / len(ious) if ious else 0.0,
        "disc": sum(discs) / len(discs) if discs else 0.0,
        "present": present / max(total, 1),
    }


###############################################################################################
#                 Kernel distance and paired statistics (DESIGN.md section 2, "Statistics")   #
###############################################################################################


def kernel_distance(feats_a: np.ndarray | torch.Tensor, feats_b: np.ndarray | torch.Tensor) -> float:
    """KID: the unbiased estimate of the squared MMD between feature sets ``[n >= 2, d]`` and
    ``[m >= 2, d]`` under the cubic polynomial kernel ``k(x, y) = (x . y / d + 1)^3`` (Binkowski et al.,
    2018). Unlike the Frechet distance it has no bias at small n, so values at different n compare;
    it can fall slightly below 0 when the sets are alike."""
    a = _as_matrix(feats_a, "feats_a", min_rows=2)
    b = _as_matrix(feats_b, "feats_b", min_rows=2)
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"feature widths differ: feats_a has {a.shape[1]}, feats_b has {b.shape[1]}")
    d, n, m = a.shape[1], a.shape[0], b.shape[0]
    kaa, kbb, kab = ((x @ y.T / d + 1) ** 3 for x, y in ((a, a), (b, b), (a, b)))
    within_a = (kaa.sum() - np.trace(kaa)) / (n * (n - 1))
    within_b = (kbb.sum() - np.trace(kbb)) / (m * (m - 1))
    return float(within_a + within_b - 2 * kab.mean())


def interval(stats: np.ndarray, level: float) -> tuple[float, float]:
    """The percentile interval ``(low, high)`` of bootstrap statistics at confidence ``level``."""
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(stats, [tail, 100 - tail])
    return float(low), float(high)


def paired_difference(
    statistic_a: Callable[[np.ndarray], float],
    statistic_b: Callable[[np.ndarray], float],
    units: int,
    generator: torch.Generator,
    n_boot: int = 1000,
    level: float = 0.95,
) -> dict:
    """Paired bootstrap of the difference ``statistic_a - statistic_b`` over ``units`` shared units.

    Both statistics map an index array of units (prompts with their noise seeds) to a float, e.g. the
    mean caption accuracy of those prompts, or FVD of their clips against their real clips; every
    resample draws one index array and evaluates both on it, so the variation the two methods share
    cancels. Returns ``diff`` (on all units), the percentile interval ``low`` / ``high`` and
    ``holds``: whether the interval excludes 0 (the difference is then ``"a > b"`` or ``"a < b"``).
    The Frechet distance's small-sample bias is alike for both terms and largely cancels in the
    difference, so no bias correction is applied.
    """
    if units < 2:
        raise ValueError(f"a paired bootstrap needs at least 2 units, got {units}")
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    everything = np.arange(units)
    diff = statistic_a(everything) - statistic_b(everything)
    stats = bootstrap_statistics(
        everything, generator, n_boot, lambda idx: statistic_a(idx) - statistic_b(idx)
    )
    low, high = interval(stats, level)
    verdict = "a > b" if low > 0 else "a < b" if high < 0 else "no difference"
    return {"diff": float(diff), "low": low, "high": high, "holds": verdict != "no difference",
            "verdict": verdict, "units": units, "resamples": n_boot, "level": level}  # fmt: skip


def mean_of(values: np.ndarray | torch.Tensor) -> Callable[[np.ndarray], float]:
    """The statistic "mean of per-unit ``values [n]`` over the drawn units" (NaN units skipped)."""
    v = np.asarray(values.detach().cpu().double() if isinstance(values, torch.Tensor) else values, float)
    return lambda idx: float(np.nanmean(v[idx]))


def set_distance_of(
    distance: Callable[[np.ndarray, np.ndarray], float], feats: np.ndarray | torch.Tensor, real
) -> Callable[[np.ndarray], float]:
    """The statistic "``distance`` between the drawn units' features and their real features":
    ``feats`` and ``real`` are ``[n, ..., d]`` (all clips of a unit move together)."""
    a, b = (
        np.asarray(f.detach().cpu().double() if isinstance(f, torch.Tensor) else f) for f in (feats, real)
    )
    d = a.shape[-1]
    return lambda idx: distance(a[idx].reshape(-1, d), b[idx].reshape(-1, d))


###############################################################################################
#       World analogues of VBench's quality dimensions (docs/metrics.md), on decoded frames    #
###############################################################################################

# A pixel belongs to the foreground when one of its channels differs from its row's background by
# more than this (in [-1, 1] units; 0.25 is 32 of 255 levels): set on val clips, where it separates
# every object colour from every background and antialiased rims count half.
FOREGROUND_TOL = 0.25


def _check_videos(videos: torch.Tensor, min_frames: int = 2) -> torch.Tensor:
    if videos.ndim != 5 or videos.shape[1] < min_frames:
        raise ValueError(f"videos must be [n, f >= {min_frames}, c, h, w], got shape {tuple(videos.shape)}")
    return videos.float()


def background_frames(videos: torch.Tensor) -> torch.Tensor:
    """The background estimate ``[n, f, c, h, 1]``: each row's median colour (the world's backgrounds
    are constant along rows, and an object covers less than half of any row)."""
    return _check_videos(videos, 1).median(dim=-1, keepdim=True).values


def foreground_masks(videos: torch.Tensor, tol: float = FOREGROUND_TOL) -> torch.Tensor:
    """Bool ``[n, f, h, w]``: the pixels of videos ``[n, f, c, h, w]`` (in [-1, 1]) whose colour differs
    from their row's background (``background_frames``) by more than ``tol`` in some channel."""
    return (videos.float() - background_frames(videos)).abs().amax(dim=2) > tol


def circular_centroids(masks: torch.Tensor) -> torch.Tensor:
    """Centroids ``[..., 2]`` (y, x in frame sides, in [0, 1)) of masks ``[..., h, w]`` on the torus the
    world wraps its objects on (a circular mean per axis), NaN where a mask is empty."""
    h, w = masks.shape[-2:]
    m = masks.float()
    out = []
    for axis, size in ((-1, h), (-2, w)):  # rows (sum over x) give y, columns give x
        weights = m.sum(dim=axis)
        angle = torch.arange(size, dtype=torch.float32) * (2 * math.pi / size)
        s, c = (weights * torch.sin(angle)).sum(-1), (weights * torch.cos(angle)).sum(-1)
        pos = (torch.atan2(s, c) / (2 * math.pi)) % 1.0
        out.append(torch.where(weights.sum(-1) > 0, pos, torch.nan))
    return torch.stack(out, dim=-1)


def _wrapped(delta: torch.Tensor) -> torch.Tensor:
    """Differences on the unit torus mapped to [-1/2, 1/2)."""
    return (delta + 0.5) % 1.0 - 0.5


def _centre(mask: torch.Tensor, centroid: torch.Tensor) -> torch.Tensor:
    """A [h, w] mask rolled (on the torus) so that its centroid (frame sides) sits at the centre."""
    h, w = mask.shape
    dy, dx = round((0.5 - float(centroid[0])) * h), round((0.5 - float(centroid[1])) * w)
    return torch.roll(mask, shifts=(dy, dx), dims=(0, 1))


def _vbench_mean(similarity: Callable[[int, int], float], frames: int) -> float:
    """VBench's consistency average: the mean over frames t >= 1 of the similarity to the first frame
    and to the previous frame, equally weighted."""
    return sum(0.5 * (similarity(t, 0) + similarity(t, t - 1)) for t in range(1, frames)) / (frames - 1)


class _Subject:
    """One video's foreground per frame (mean colour, centred mask) and their similarity."""

    def __init__(self, video: torch.Tensor, mask: torch.Tensor, centroids: torch.Tensor):
        self.empty = ~mask.flatten(1).any(dim=1)
        self.colours = [video[t][:, mask[t]].mean(dim=1) for t in range(len(mask))]
        self.centred = [
            _centre(mask[t], centroids[t]) if not self.empty[t] else None for t in range(len(mask))
        ]

    def similarity(self, t: int, u: int) -> float:
        if self.empty[t] or self.empty[u]:
            return float(self.empty[t] and self.empty[u])
        colour = 1 - float((self.colours[t] - self.colours[u]).abs().mean()) / 2
        a, b = self.centred[t], self.centred[u]
        return colour * float((a & b).sum() / (a | b).sum())


def subject_consistency(videos: torch.Tensor, tol: float = FOREGROUND_TOL) -> torch.Tensor:
    """Float ``[n]`` in [0, 1]: does the foreground keep its colour, shape and size over each video?

    Per frame the foreground (``foreground_masks``) gives a mean colour and a mask centred on its
    centroid; two frames' similarity is ``(1 - mean |colour difference| / 2) * IoU(centred masks)``
    (1 for two empty frames, 0 when only one is empty), averaged as VBench does (``_vbench_mean``).
    Motion does not count against it; a colour change, a change of shape or size, an object that
    appears or vanishes do. A "growing" object legitimately scores below 1: real clips give the ceiling.
    """
    videos = _check_videos(videos)
    masks = foreground_masks(videos, tol)
    centroids = circular_centroids(masks)
    subjects = [_Subject(v, m, c) for v, m, c in zip(videos, masks, centroids, strict=True)]
    return torch.tensor([_vbench_mean(s.similarity, videos.shape[1]) for s in subjects])


class _Background:
    """One video's background pixels per frame and their similarity."""

    def __init__(self, video: torch.Tensor, background: torch.Tensor):
        self.video, self.background = video, background

    def similarity(self, t: int, u: int) -> float:
        both = self.background[t] & self.background[u]
        if not both.any():
            return 0.0
        return 1 - float((self.video[t] - self.video[u]).abs()[:, both].mean()) / 2


def background_consistency(videos: torch.Tensor, tol: float = FOREGROUND_TOL) -> torch.Tensor:
    """Float ``[n]`` in [0, 1]: does the background stay put? Two frames' similarity is
    ``1 - mean |difference| / 2`` over the pixels that are background in both (``foreground_masks``),
    averaged as VBench does (``_vbench_mean``); a flickering or drifting background lowers it."""
    videos = _check_videos(videos)
    backgrounds = [_Background(v, ~m) for v, m in zip(videos, foreground_masks(videos, tol), strict=True)]
    return torch.tensor([_vbench_mean(b.similarity, videos.shape[1]) for b in backgrounds])


def flicker(videos: torch.Tensor) -> torch.Tensor:
    """Float ``[n]`` in [0, 1], lower is smoother: the mean absolute second temporal difference
    ``|x(t+1) - 2 x(t) + x(t-1)| / 4`` over pixels, channels and frames of videos in [-1, 1]. Steady
    motion changes pixels at a steady rate and scores near 0; jitter and flashes score high. Motion
    smoothness, VBench's name for the opposite, is ``1 - flicker``."""
    v = _check_videos(videos, 3)
    return ((v[:, 2:] - 2 * v[:, 1:-1] + v[:, :-2]).abs() / 4).mean(dim=(1, 2, 3, 4))


# A clip is dynamic when its foreground's centroid travels at least this far (frame sides, on the
# torus) or its area changes by this fraction of its mean; the world's slowest object covers 0.29
# frame sides in 16 frames and a growing one changes area by more than 100%.
DYNAMIC_PATH = 0.1
DYNAMIC_AREA = 0.3


def motion_path(videos: torch.Tensor, tol: float = FOREGROUND_TOL) -> tuple[torch.Tensor, torch.Tensor]:
    """Per video ``[n]``: the path length of the foreground's centroid (frame sides, summed over
    consecutive frames that both hold foreground) and the range of its area relative to its mean."""
    masks = foreground_masks(_check_videos(videos), tol)
    steps = _wrapped(circular_centroids(masks).diff(dim=1)).norm(dim=-1)  # NaN where a frame is empty
    path = torch.nan_to_num(steps, nan=0.0).sum(dim=1)
    area = masks.float().mean(dim=(2, 3))
    spread = (area.amax(dim=1) - area.amin(dim=1)) / area.mean(dim=1).clamp_min(1e-6)
    return path, spread


def dynamic_degree(videos: torch.Tensor, tol: float = FOREGROUND_TOL) -> torch.Tensor:
    """Float ``[n]`` of 0 / 1: is each video dynamic (``DYNAMIC_PATH``, ``DYNAMIC_AREA``)? The mean over
    videos is VBench's dynamic degree, the fraction of videos that move at all."""
    path, spread = motion_path(videos, tol)
    return ((path >= DYNAMIC_PATH) | (spread >= DYNAMIC_AREA)).float()


DIRECTIONS = {"left": (1, -1), "right": (1, 1), "up": (0, -1), "down": (0, 1)}  # (axis: 0 y, 1 x; sign)


def direction_agreement(
    videos: torch.Tensor, rgbs: list[tuple[int, int, int]], motions: list[str], tol: int = 48
) -> torch.Tensor:
    """Float ``[n]``: does the captioned object move as captioned? For captions "left", "right", "up"
    and "down": 1 when the mean step of the centroid of the pixels of the object's colour (``rgbs``,
    ``colour_mask``) points along the captioned axis with the captioned sign and is larger along it
    than across it, else 0; NaN for the other motions, which have no one direction."""
    videos = _check_videos(videos)
    out = []
    for video, rgb, motion in zip(videos, rgbs, motions, strict=True):
        if motion not in DIRECTIONS:
            out.append(math.nan)
            continue
        track = circular_centroids(colour_mask(video, rgb, tol))
        step = torch.nanmean(_wrapped(track.diff(dim=0)), dim=0)  # [2]: mean (dy, dx)
        axis, sign = DIRECTIONS[motion]
        along, across = float(step[axis]) * sign, abs(float(step[1 - axis]))
        out.append(float(along > 0 and along > across))
    return torch.tensor(out)
