"""Object regions for text intent: view axes, normalised height / left coordinates, local width.

Owns the geometric meaning of the region words. Everything is computed from the object points
alone (complete or single-view partial) in the request frame:

- ``up`` is the request's up vector. ``forward`` is the horizontal direction from the viewer (the
  camera or robot base: the request frame's origin unless given) to the object's centre;
  ``left = up x forward`` (the viewer's left when looking at the object). When the object's centre
  is less than ``MIN_VIEW_DISTANCE_M`` from the viewer horizontally, forward / left are undefined
  and the words that need them (front, left, right) are reported as not applicable.
- ``height`` and ``lateral`` are each point's coordinate along ``up`` / ``left``, mapped to [0, 1]
  over the object's 2nd..98th percentile range.
- ``width`` is a local cross-section width (m): for a probe point ``c`` and a tangent direction
  ``a`` (perpendicular to the local surface normal), take the points within ``BALL_SHARE * size`` of
  ``c`` that lie in the slab ``|(p - c) . a| < slab``, keep the ones connected to ``c`` through
  steps shorter than ``link`` (so a mug's wall beside its handle does not count), and measure the
  largest distance between two of them (the chord). A cross-section counts only when it bulges
  off its chord by at least MIN_BULGE of it (a ring or half ring does; a flat strip cut short by
  the edge of a partial view does not) and when its chord spans at least MIN_CHORD_SPACINGS point
  spacings (narrower is below the cloud's resolution). The width at ``c`` is the second smallest counted chord
  over six tangent directions 30 degrees apart (robust to one slab broken by a sampling gap): across a rod (handle, neck) this is its diameter, on a body it is the body's
  diameter or its extent. Half a ring (a partial view) still spans the diameter. Widths are
  computed at up to ``probes`` farthest-point-sampled points and spread to the others by nearest
  probe.

The region rules built on these fields are in :func:`region_mask` and documented there.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from numpy.typing import NDArray
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree
from torch import Tensor

from ...core.geometry import farthest_point_sample, voxel_downsample

MIN_VIEW_DISTANCE_M = 0.05  # object centre closer than this to the origin (horizontally): no front / left / right
MAX_ANALYSIS_POINTS = 2048
MIN_SPACING_M = 0.003  # clouds denser than this are thinned before the width analysis
PROBES = 192  # width probes (farthest-point sampled)
LINK_SPACINGS = 2.0  # slab points closer than this many spacings are connected (1.5 breaks partial views into false thin parts)
FRAGMENT_SHARE = 0.05  # connected pieces with fewer points than this share are dropped before the analysis
MIN_BULGE = 0.25  # a cross-section's depth off its chord must be at least this share of the chord
MIN_CHORD_SPACINGS = 1.5  # and its chord this many point spacings (narrower is below the cloud's resolution)
BALL_SHARE = 0.5  # widths are measured inside a ball of this share of the object size (caps them at 0.6 size)
TOP_BAND = 0.6  # "top": normalised height of the contact centroid >= this; "bottom": <= 1 - this
SIDE_BAND = 0.6  # "left": normalised left coordinate >= this; "right": <= 1 - this
RIM_BAND = 0.8  # "rim": normalised height >= this ...
RIM_RADIAL = 0.5  # ... and horizontal distance from the vertical axis >= this share of the object's radius
THIN_SHARE = 0.35  # "thinnest": width <= w_lo + THIN_SHARE * (w_hi - w_lo)
THICK_SHARE = 0.35  # "largest": width >= w_hi - THICK_SHARE * (w_hi - w_lo)
HAS_THIN_PART = 0.6  # a thin part (handle, neck) is narrower than this share of the median width ...
THIN_PART_MIN_PROBES = 10  # ... at this many of the PROBES width probes (5 %; fewer is too easily a view artifact)
NECK_HEIGHT = 0.5  # a neck is a thin part in the upper half

F64 = NDArray[np.float64]


@dataclass(frozen=True)
class ObjectRegions:
    """Per-point region fields of one object cloud (float64 numpy, request frame)."""

    points: F64  # (N, 3) analysed points (a farthest-point subset of the input when it was large)
    up: F64  # (3,) unit
    forward: F64 | None  # (3,) unit horizontal, origin -> object; None when undefined
    left: F64 | None  # (3,) unit, up x forward
    center: F64  # (3,) centre of the points' bounding box in (forward, left, up) coordinates
    size: float  # largest extent (m)
    spacing: float  # median distance to the 4th nearest neighbour (m)
    height: F64  # (N,) in [0, 1] along up
    lateral: F64 | None  # (N,) in [0, 1] along left
    radial: F64  # (N,) horizontal distance from the vertical axis through ``center``, / its max
    width: F64  # (N,) local cross-section width (m)
    w_lo: float  # 3rd smallest probe width (robust minimum)
    w_med: float  # median probe width
    w_hi: float  # 95th percentile of probe widths
    thin_probes: int  # probes with width <= HAS_THIN_PART * w_med

    @property
    def has_thin_part(self) -> bool:
        """A handle / neck / thin part exists: at least THIN_PART_MIN_PROBES probes narrower than
        HAS_THIN_PART x the median width."""
        return self.thin_probes >= THIN_PART_MIN_PROBES

    def normalised(self, x: F64) -> tuple[F64, F64 | None, F64]:
        """(height, lateral, radial) of arbitrary points (M, 3), same normalisation as the cloud's."""
        return _coords(x, self.points, self.up, self.left, self.center)


def _axes(points: F64, up: F64, viewer: F64) -> tuple[F64 | None, F64 | None]:
    c = points.mean(0) - viewer
    horiz = c - (c @ up) * up
    d = float(np.linalg.norm(horiz))
    if d < MIN_VIEW_DISTANCE_M:
        return None, None
    fwd = horiz / d
    return fwd, np.cross(up, fwd)


def _range01(v: F64, ref: F64) -> F64:
    lo, hi = np.percentile(ref, 2), np.percentile(ref, 98)
    out: F64 = np.clip((v - lo) / max(hi - lo, 1e-9), 0.0, 1.0)
    return out


def _coords(x: F64, ref: F64, up: F64, left: F64 | None, center: F64) -> tuple[F64, F64 | None, F64]:
    h = _range01(x @ up, ref @ up)
    lat = None if left is None else _range01(x @ left, ref @ left)
    rel = x - center
    horiz = rel - np.outer(rel @ up, up)
    rref = ref - center
    href = rref - np.outer(rref @ up, up)
    rmax = max(float(np.percentile(np.linalg.norm(href, axis=1), 98)), 1e-9)
    radial: F64 = np.clip(np.linalg.norm(horiz, axis=1) / rmax, 0.0, 1.0)
    return h, lat, radial


def _normals(points: F64, tree: cKDTree, k: int = 16) -> F64:
    _, idx = tree.query(points, k=min(k, len(points)))
    nb = points[idx] - points[idx].mean(1, keepdims=True)
    cov = np.einsum("nki,nkj->nij", nb, nb)
    _, vec = np.linalg.eigh(cov)
    out: F64 = vec[:, :, 0]
    return out


def local_widths(points: F64, probe_index: NDArray[np.int64], normals: F64, size: float, spacing: float, directions: int = 6) -> F64:
    """Cross-section width (m) at each probe point ``points[probe_index]`` (see the module docstring)."""
    radius = BALL_SHARE * size
    slab = max(1.0 * spacing, 0.003)
    link = max(LINK_SPACINGS * spacing, 0.006)
    ang = np.pi * np.arange(directions) / directions
    out = np.zeros(len(probe_index))
    for i, pi in enumerate(probe_index):
        c, nv = points[pi], normals[pi]
        rel = points - c
        t1 = np.cross(nv, [1.0, 0.0, 0.0] if abs(nv[0]) < 0.9 else [0.0, 1.0, 0.0])
        t1 /= np.linalg.norm(t1)
        t2 = np.cross(nv, t1)
        dirs = np.cos(ang)[:, None] * t1 + np.sin(ang)[:, None] * t2  # (D, 3)
        inside = (np.abs(rel @ dirs.T) < slab) & ((rel * rel).sum(1) < radius * radius)[:, None]  # (N, D)
        # one graph holding the slab points of every direction (a point in two slabs is two nodes)
        pts_in = np.nonzero(inside.any(1))[0]
        ins = inside[pts_in]  # (S, D)
        node = np.full(ins.shape, -1, dtype=np.int64)
        j, k = np.nonzero(ins)
        node[j, k] = np.arange(len(j))
        pairs = cKDTree(points[pts_in]).query_pairs(link, output_type="ndarray").reshape(-1, 2)
        e, ke = np.nonzero(ins[pairs[:, 0]] & ins[pairs[:, 1]])
        rows, cols = node[pairs[e, 0], ke], node[pairs[e, 1], ke]
        g = csr_matrix((np.ones(len(rows), dtype=np.int8), (rows, cols)), shape=(len(j), len(j)))
        _, lab = connected_components(g, directed=False)
        me = int(np.searchsorted(pts_in, pi))  # the probe itself lies in every slab
        rel_in = rel[pts_in]
        widths, longest = [], 0.0
        for d in range(directions):
            members = node[:, d] >= 0
            mine = rel_in[members][lab[node[members, d]] == lab[node[me, d]]]
            if len(mine) < 3:
                continue
            sq = (mine * mine).sum(1)
            d2 = sq[:, None] + sq[None, :] - 2.0 * (mine @ mine.T)
            a, b = np.unravel_index(int(np.argmax(d2)), d2.shape)
            chord = float(np.sqrt(max(float(d2[a, b]), 0.0)))
            longest = max(longest, chord)
            # a cross-section counts only when it bulges away from its chord (a ring or half ring:
            # depth ~ chord / 2); a flat piece cut short by the edge of a partial view does not
            u = (mine[b] - mine[a]) / max(chord, 1e-12)
            off = mine - mine[a]
            depth = float(np.sqrt(np.maximum((off * off).sum(1) - (off @ u) ** 2, 0.0)).max())
            if depth >= MIN_BULGE * chord and chord >= MIN_CHORD_SPACINGS * spacing:
                widths.append(chord)
        # the second smallest: across a rod two neighbouring directions are both narrow (within
        # 1.15x of its diameter), while a slab broken by a sampling gap is usually alone
        widths.sort()
        out[i] = widths[1] if len(widths) > 1 else longest
    return out


def analyze_object(points: Tensor, up: Tensor | None = None, viewer: Tensor | None = None, probes: int = PROBES) -> ObjectRegions:
    """Region fields of an object cloud (N, 3); ``up`` defaults to +z, ``viewer`` (the camera or
    robot base, which defines front / left / right) to the frame's origin."""
    p = points.detach().double().cpu()
    # even spacing (the slabs must not break up along sampling gaps), no finer than needed, capped
    ext = float((p.amax(0) - p.amin(0)).max())
    voxel = max(MIN_SPACING_M, ext / 60.0)
    q, _ = voxel_downsample(p, voxel)
    while q.shape[0] > MAX_ANALYSIS_POINTS:
        voxel *= 1.2
        q, _ = voxel_downsample(p, voxel)
    pts: F64 = _drop_fragments(q.numpy())
    spacing = _spacing(pts)
    u = np.array([0.0, 0.0, 1.0]) if up is None else up.detach().double().cpu().numpy()
    u = u / np.linalg.norm(u)
    view = np.zeros(3) if viewer is None else viewer.detach().double().cpu().numpy()
    fwd, left = _axes(pts, u, view)
    lo, hi = pts.min(0), pts.max(0)
    size = float(np.max(hi - lo))
    center = (lo + hi) / 2
    tree = cKDTree(pts)
    probe_index = farthest_point_sample(torch.as_tensor(pts)[None], min(probes, len(pts)))[0].numpy()
    nrm = _normals(pts, tree)
    w_probe = local_widths(pts, probe_index, nrm, size, spacing)
    med = float(np.median(w_probe))
    thin = int((w_probe <= HAS_THIN_PART * med).sum())
    _, near = cKDTree(pts[probe_index]).query(pts)
    width = w_probe[near]
    h, lat, radial = _coords(pts, pts, u, left, center)
    srt = np.sort(w_probe)
    return ObjectRegions(
        points=pts, up=u, forward=fwd, left=left, center=center, size=size, spacing=spacing,
        height=h, lateral=lat, radial=radial, width=width,
        w_lo=float(srt[min(2, len(srt) - 1)]), w_med=med, w_hi=float(np.percentile(w_probe, 95)),
        thin_probes=thin,
    )


def _drop_fragments(pts: F64) -> F64:
    """Keep the connected pieces holding at least FRAGMENT_SHARE of the points (drops leftover table
    speckles and stray returns; a handle seen apart from its body in a partial view is kept)."""
    if len(pts) < 20:
        return pts
    link = 2.0 * max(_spacing(pts), 0.003)
    pairs = cKDTree(pts).query_pairs(link, output_type="ndarray").reshape(-1, 2)
    g = csr_matrix((np.ones(len(pairs), dtype=np.int8), (pairs[:, 0], pairs[:, 1])), shape=(len(pts), len(pts)))
    _, lab = connected_components(g, directed=False)
    count = np.bincount(lab)
    keep = count[lab] >= max(FRAGMENT_SHARE * len(pts), 10)
    out: F64 = pts[keep] if keep.sum() >= 20 else pts
    return out


def _spacing(pts: F64) -> float:
    """Median distance to the 4th nearest neighbour (m): the sampling scale the slabs are sized by."""
    dist, _ = cKDTree(pts).query(pts, k=min(5, len(pts)))
    return float(np.median(dist[:, -1]))


def width_at(reg: ObjectRegions, x: F64) -> F64:
    """Width of the analysed point nearest to each query point (M, 3)."""
    _, idx = cKDTree(reg.points).query(x)
    out: F64 = reg.width[idx]
    return out


def region_test(reg: ObjectRegions, region: str, x: F64) -> tuple[NDArray[np.bool_], F64]:
    """Whether points ``x`` (M, 3) (contact centroids) lie in ``region``, and a soft score in [0, 1].

    Rules (``w``: local width at the point, ``h`` / ``l``: normalised height / left coordinate):

    - top: h >= TOP_BAND; bottom: h <= 1 - TOP_BAND; left: l >= SIDE_BAND; right: l <= 1 - SIDE_BAND.
    - rim: h >= RIM_BAND and horizontal distance from the vertical axis >= RIM_RADIAL of the radius
      (the top boundary of an open container; on a closed object, its top edge).
    - handle: w <= HAS_THIN_PART * median width, on an object that has such a thin part (at least
      THIN_PART_MIN_PROBES width probes that narrow).
    - neck: handle, in the upper half (h >= NECK_HEIGHT).
    - thinnest: w <= max(w_lo + THIN_SHARE (w_hi - w_lo), HAS_THIN_PART * median): the narrowest
      part where there is one; on an object of uniform width most of it qualifies.
    - largest: w >= w_hi - THICK_SHARE (w_hi - w_lo).
    - body: w > HAS_THIN_PART * median width (the contacts are not on a thin part).

    Handles and necks are both "thin parts"; the rules do not tell one from the other except by
    height.
    """
    h, lat, radial = reg.normalised(x)
    w = width_at(reg, x)
    span = max(reg.w_hi - reg.w_lo, 1e-9)
    thin_thr = max(reg.w_lo + THIN_SHARE * span, HAS_THIN_PART * reg.w_med) if region == "thinnest" else HAS_THIN_PART * reg.w_med
    thick_thr = reg.w_hi - THICK_SHARE * span

    def soft(v: F64, thr: float, scale: float, above: bool) -> F64:
        gap = (thr - v) if above else (v - thr)
        out: F64 = np.clip(1.0 - np.maximum(gap, 0.0) / max(scale, 1e-9), 0.0, 1.0)
        return out

    if region in ("top", "bottom"):
        ok = h >= TOP_BAND if region == "top" else h <= 1 - TOP_BAND
        return ok, soft(h, TOP_BAND, 0.5, True) if region == "top" else soft(h, 1 - TOP_BAND, 0.5, False)
    if region in ("left", "right"):
        if lat is None:
            return np.zeros(len(x), dtype=bool), np.zeros(len(x))
        ok = lat >= SIDE_BAND if region == "left" else lat <= 1 - SIDE_BAND
        return ok, soft(lat, SIDE_BAND, 0.5, True) if region == "left" else soft(lat, 1 - SIDE_BAND, 0.5, False)
    if region == "rim":
        ok = (h >= RIM_BAND) & (radial >= RIM_RADIAL)
        return ok, np.minimum(soft(h, RIM_BAND, 0.5, True), soft(radial, RIM_RADIAL, 0.5, True))
    if region in ("thinnest", "handle", "neck"):
        ok = w <= thin_thr
        s = soft(w, thin_thr, span, False)
        if region != "thinnest" and not reg.has_thin_part:
            return np.zeros(len(x), dtype=bool), np.zeros(len(x))
        if region == "neck":
            ok = ok & (h >= NECK_HEIGHT)
            s = np.minimum(s, soft(h, NECK_HEIGHT, 0.5, True))
        return ok, s
    if region == "largest":
        return w >= thick_thr, soft(w, thick_thr, span, True)
    if region == "body":
        return w > thin_thr, soft(w, thin_thr, span, True)
    raise NotImplementedError(f"region {region!r}")


def region_points(reg: ObjectRegions, region: str) -> NDArray[np.bool_]:
    """Which analysed points lie in ``region`` (used to aim the palm and to say whether it exists)."""
    ok, _ = region_test(reg, region, reg.points)
    return ok
