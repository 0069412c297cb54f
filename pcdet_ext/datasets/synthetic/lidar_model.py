"""A rotating 64-beam LiDAR (HDL-64E-like) simulated by vectorised first-hit ray casting.

The sensor sits at the origin of the LiDAR frame (x forward, y left, z up). A scan is a
(beams x azimuths) grid of rays; each ray returns its first hit among a ground plane,
oriented boxes, vertical cylinders and spheres (foliage), with range noise, dropout and an
intensity from the surface reflectivity and the incidence angle.

Reusable on its own (ALPI proxies scan a few boxes with it): build a `Primitives` and call
`LidarModel.cast`. Only numpy is used, so a scan is bit-for-bit deterministic for a given
random generator.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np


def hdl64e_elevations_deg() -> np.ndarray:
    """Elevation of the 64 lasers, top first: an upper block of 32 lasers from +2.0 to -8.33
    degrees (~1/3 degree apart) and a lower block of 32 from -8.83 to -24.33 (~1/2 degree)."""
    return np.concatenate([np.linspace(2.0, -8.33, 32), np.linspace(-8.83, -24.33, 32)])


def _empty(n_cols: int) -> np.ndarray:
    return np.zeros((0, n_cols), dtype=np.float64)


@dataclass
class Primitives:
    """Solid geometry of a scene, in the LiDAR frame.

    boxes (K, 7): (x, y, z centre, dx, dy, dz, heading), as LiDAR boxes.
    cylinders (C, 5): vertical cylinders (x, y, z_bottom, z_top, radius) (poles, trunks).
    spheres (S, 4): (x, y, z, radius); treated as foliage: porous, with returns scattered
        inside the crown and extra dropout.
    ground: optional plane z = g0 + gx * x + gy * y as (g0, gx, gy).
    *_reflect: reflectivity in [0, 1] per primitive; *_owner: object index (>= 0) of the
        labelled object a primitive belongs to, -1 for static scenery.
    """
    boxes: np.ndarray = field(default_factory=lambda: _empty(7))
    box_reflect: np.ndarray = field(default_factory=lambda: np.zeros(0))
    box_owner: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    cylinders: np.ndarray = field(default_factory=lambda: _empty(5))
    cyl_reflect: np.ndarray = field(default_factory=lambda: np.zeros(0))
    cyl_owner: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    spheres: np.ndarray = field(default_factory=lambda: _empty(4))
    sphere_reflect: np.ndarray = field(default_factory=lambda: np.zeros(0))
    sphere_owner: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    ground: Optional[np.ndarray] = None
    ground_reflect: float = 0.25

    def __post_init__(self):
        for name, cols in (('boxes', 7), ('cylinders', 5), ('spheres', 4)):
            arr = np.asarray(getattr(self, name), dtype=np.float64).reshape(-1, cols)
            if not np.isfinite(arr).all():
                raise ValueError(f'Primitives.{name}: contains NaN or inf')
            setattr(self, name, arr)
        for prefix, arr in (('box', self.boxes), ('cyl', self.cylinders), ('sphere', self.spheres)):
            n = len(arr)
            refl = np.asarray(getattr(self, f'{prefix}_reflect'), dtype=np.float64).reshape(-1)
            owner = np.asarray(getattr(self, f'{prefix}_owner'), dtype=np.int64).reshape(-1)
            # Defaults keep the simple use short: Primitives(boxes=b) scans grey static boxes.
            setattr(self, f'{prefix}_reflect', refl if refl.size == n else np.full(n, 0.4))
            setattr(self, f'{prefix}_owner', owner if owner.size == n else np.full(n, -1, np.int64))

    @property
    def num_prims(self) -> int:
        return len(self.boxes) + len(self.cylinders) + len(self.spheres)

    def owners(self) -> np.ndarray:
        """Owner per primitive id (boxes, then cylinders, then spheres)."""
        return np.concatenate([self.box_owner, self.cyl_owner, self.sphere_owner])

    def reflectivities(self) -> np.ndarray:
        return np.concatenate([self.box_reflect, self.cyl_reflect, self.sphere_reflect])


@dataclass
class Scan:
    """Result of LidarModel.cast.

    points (N, 4) float32 x, y, z, intensity; point_prim (N,) primitive id (-2 ground);
    point_owner (N,) object index or -1. Per object (index 0..num_objects-1):
    rays_total: rays that would hit the object if nothing else existed; rays_visible: those
    whose first hit is the object; num_points: its points after dropout and range limits.
    """
    points: np.ndarray
    point_prim: np.ndarray
    point_owner: np.ndarray
    rays_total: np.ndarray
    rays_visible: np.ndarray
    num_points: np.ndarray


GROUND_ID = -2
NO_HIT = -1


class LidarModel:
    """HDL-64E-like spinning LiDAR.

    elevations_deg: per-laser elevation (default `hdl64e_elevations_deg`);
    num_azimuth: rays per laser per revolution (HDL-64E at 10 Hz: ~2000-2100);
    max_range / min_range: returns outside are lost (min_range mimics the ego car's roof);
    range_noise: std of the range error in metres; dropout: base chance a return is lost,
    growing with range; intensity_noise: std added to the intensity;
    foliage_depth: returns from spheres land up to this far inside the crown;
    foliage_dropout: extra chance a foliage return is lost.
    """

    def __init__(self, elevations_deg=None, num_azimuth: int = 2048, max_range: float = 120.0,
                 min_range: float = 2.5, range_noise: float = 0.02, dropout: float = 0.04,
                 intensity_noise: float = 0.03, foliage_depth: float = 0.3,
                 foliage_dropout: float = 0.3):
        elev = hdl64e_elevations_deg() if elevations_deg is None else np.asarray(elevations_deg, float)
        if elev.ndim != 1 or elev.size == 0 or np.any(np.diff(elev) >= 0):
            raise ValueError('LidarModel: elevations_deg must be a non-empty, strictly decreasing 1-D list')
        if num_azimuth < 8:
            raise ValueError(f'LidarModel: num_azimuth={num_azimuth} is too small (>= 8)')
        if not 0 <= min_range < max_range:
            raise ValueError(f'LidarModel: need 0 <= min_range < max_range, got {min_range}, {max_range}')
        self.elevations = np.deg2rad(elev)
        self.num_azimuth = int(num_azimuth)
        self.max_range, self.min_range = float(max_range), float(min_range)
        self.range_noise, self.dropout = float(range_noise), float(dropout)
        self.intensity_noise = float(intensity_noise)
        self.foliage_depth, self.foliage_dropout = float(foliage_depth), float(foliage_dropout)
        self.az_step = 2 * np.pi / self.num_azimuth
        self.azimuths = np.arange(self.num_azimuth) * self.az_step
        ce, se = np.cos(self.elevations), np.sin(self.elevations)
        # (R, A, 3) unit ray directions; row-major so a (rows, cols) window is cheap to gather.
        self.dirs = np.stack([ce[:, None] * np.cos(self.azimuths)[None],
                              ce[:, None] * np.sin(self.azimuths)[None],
                              np.broadcast_to(se[:, None], (elev.size, self.num_azimuth))], axis=-1)
        # tan(elevation) ascending, for picking the rows a primitive can be hit by.
        self._tan_asc = np.tan(self.elevations[::-1])

    @property
    def num_rays(self) -> int:
        return self.dirs.shape[0] * self.dirs.shape[1]

    # ---------------------------------------------------------------- ray windows
    def _window(self, cx, cy, radius, z0, z1):
        """Rows (slice) and columns (index array) of the rays that may hit a primitive whose
        BEV footprint lies in the circle (cx, cy, radius) and whose height is [z0, z1]."""
        rho = float(np.hypot(cx, cy))
        num_rows = len(self.elevations)
        near = rho - radius
        if near <= 1e-3:  # the sensor is inside the footprint's circle: all rays
            return slice(0, num_rows), np.arange(self.num_azimuth)
        far = rho + radius
        lo = z0 / (near if z0 < 0 else far)
        hi = z1 / (near if z1 > 0 else far)
        # rows with lo <= tan(elev) <= hi; elevations are stored top first
        a = np.searchsorted(self._tan_asc, lo - 1e-9, side='left')
        b = np.searchsorted(self._tan_asc, hi + 1e-9, side='right')
        if b <= a:
            return None
        rows = slice(num_rows - b, num_rows - a)
        half = np.arcsin(min(1.0, radius / rho))
        centre = np.arctan2(cy, cx)
        c0 = int(np.floor((centre - half) / self.az_step))
        c1 = int(np.ceil((centre + half) / self.az_step))
        cols = np.arange(c0, c1 + 1) % self.num_azimuth
        return rows, cols

    # ---------------------------------------------------------------- intersections
    @staticmethod
    def _hit_box(d, box):
        """Entry distance and |cos incidence| of rays d (..., 3) from the origin with a box."""
        x, y, z, dx, dy, dz, yaw = box
        c, s = np.cos(yaw), np.sin(yaw)
        # ray in the box frame: origin -centre rotated by -yaw
        o = np.array([-c * x - s * y, s * x - c * y, -z])
        dl = np.stack([c * d[..., 0] + s * d[..., 1], -s * d[..., 0] + c * d[..., 1], d[..., 2]], -1)
        dl = np.where(np.abs(dl) < 1e-12, 1e-12, dl)
        inv = 1.0 / dl
        half = np.array([dx, dy, dz]) / 2
        t1 = (-half - o) * inv
        t2 = (half - o) * inv
        tmin = np.minimum(t1, t2)
        tnear = tmin.max(-1)
        tfar = np.maximum(t1, t2).min(-1)
        hit = (tnear <= tfar) & (tnear > 0)
        axis = tmin.argmax(-1)
        cos = np.abs(np.take_along_axis(dl, axis[..., None], -1)[..., 0])
        return np.where(hit, tnear, np.inf), cos

    @staticmethod
    def _hit_cylinder(d, cyl):
        x, y, z0, z1, r = cyl
        dx, dy = d[..., 0], d[..., 1]
        a = dx * dx + dy * dy
        b = -2 * (dx * x + dy * y)
        c = x * x + y * y - r * r
        disc = b * b - 4 * a * c
        ok = (disc >= 0) & (a > 1e-12)
        sq = np.sqrt(np.where(ok, disc, 0))
        t = (-b - sq) / np.where(ok, 2 * a, 1)
        zt = t * d[..., 2]
        hit = ok & (t > 0) & (zt >= z0) & (zt <= z1)
        px, py = t * dx - x, t * dy - y
        cos = np.abs(px * dx + py * dy) / r  # radial normal . unit direction
        return np.where(hit, t, np.inf), np.clip(cos, 0, 1)

    @staticmethod
    def _hit_sphere(d, sph):
        x, y, z, r = sph
        b = -2 * (d[..., 0] * x + d[..., 1] * y + d[..., 2] * z)
        c = x * x + y * y + z * z - r * r
        disc = b * b - 4 * c
        ok = disc >= 0
        t = (-b - np.sqrt(np.where(ok, disc, 0))) / 2
        hit = ok & (t > 0)
        p = t[..., None] * d - np.array([x, y, z])
        cos = np.abs((p * d).sum(-1)) / r
        return np.where(hit, t, np.inf), np.clip(cos, 0, 1)

    # ---------------------------------------------------------------- the scan
    def cast(self, prims: Primitives, rng: np.random.Generator, num_objects: Optional[int] = None) -> Scan:
        """Scan a scene once (one revolution). rng drives noise, dropout and intensity."""
        rows_n, cols_n = self.dirs.shape[:2]
        t_best = np.full((rows_n, cols_n), np.inf)
        prim_best = np.full((rows_n, cols_n), NO_HIT, dtype=np.int64)
        cos_best = np.zeros((rows_n, cols_n))

        if prims.ground is not None:
            g0, gx, gy = np.asarray(prims.ground, dtype=np.float64)
            d = self.dirs
            denom = d[..., 2] - gx * d[..., 0] - gy * d[..., 1]
            with np.errstate(divide='ignore', invalid='ignore'):
                t = g0 / denom
            ok = np.isfinite(t) & (t > 0)
            t_best[ok] = t[ok]
            prim_best[ok] = GROUND_ID
            cos_best[ok] = np.abs(denom[ok]) / np.sqrt(1 + gx * gx + gy * gy)

        owners = prims.owners()
        n_obj = int(owners.max()) + 1 if num_objects is None and owners.size and owners.max() >= 0 \
            else int(num_objects or 0)
        obj_rays = [[] for _ in range(n_obj)]

        jobs = []
        for b in prims.boxes:
            jobs.append((self._hit_box, b, b[0], b[1], 0.5 * np.hypot(b[3], b[4]),
                         b[2] - b[5] / 2, b[2] + b[5] / 2))
        for c in prims.cylinders:
            jobs.append((self._hit_cylinder, c, c[0], c[1], c[4], c[2], c[3]))
        for s in prims.spheres:
            jobs.append((self._hit_sphere, s, s[0], s[1], s[3], s[2] - s[3], s[2] + s[3]))
        for pid, (fn, params, cx, cy, rad, z0, z1) in enumerate(jobs):
            win = self._window(cx, cy, rad, z0, z1)
            if win is None:
                continue
            rows, cols = win
            d = self.dirs[rows][:, cols]
            t, cos = fn(d, params)
            hit = np.isfinite(t)
            if not hit.any():
                continue
            if owners[pid] >= 0 and owners[pid] < n_obj:
                rr, cc = np.nonzero(hit)
                obj_rays[owners[pid]].append((rr + rows.start) * cols_n + cols[cc])
            cur_t = t_best[rows][:, cols]
            better = t < cur_t
            if not better.any():
                continue
            sub_rows = np.arange(rows.start, rows.stop)[:, None]
            t_best[sub_rows, cols[None]] = np.where(better, t, cur_t)
            prim_best[sub_rows, cols[None]] = np.where(better, pid, prim_best[rows][:, cols])
            cos_best[sub_rows, cols[None]] = np.where(better, cos, cos_best[rows][:, cols])

        flat_prim = prim_best.reshape(-1)
        prim_owner = np.where(flat_prim >= 0, owners[np.maximum(flat_prim, 0)] if owners.size else -1, -1)
        rays_total = np.zeros(n_obj, dtype=np.int64)
        rays_visible = np.zeros(n_obj, dtype=np.int64)
        for i, parts in enumerate(obj_rays):
            if parts:
                idx = np.unique(np.concatenate(parts))
                rays_total[i] = idx.size
                rays_visible[i] = int((prim_owner[idx] == i).sum())

        # ---- returns: noise, foliage scatter, range limits, dropout, intensity
        hit_idx = np.nonzero(np.isfinite(t_best.reshape(-1)))[0]
        t = t_best.reshape(-1)[hit_idx]
        pid = flat_prim[hit_idx]
        n_sph_start = len(prims.boxes) + len(prims.cylinders)
        foliage = pid >= n_sph_start
        t = t + rng.normal(0.0, self.range_noise, size=t.size)
        t = t + foliage * rng.uniform(0.0, self.foliage_depth, size=t.size)
        p_drop = self.dropout + (1 - self.dropout) * 0.3 * (t / self.max_range) ** 2 \
            + foliage * self.foliage_dropout
        keep = (rng.random(t.size) >= p_drop) & (t >= self.min_range) & (t <= self.max_range)
        refl = np.concatenate([[prims.ground_reflect], prims.reflectivities()])
        r = refl[np.where(pid >= 0, pid + 1, 0)]
        cos = cos_best.reshape(-1)[hit_idx]
        # mostly the surface's reflectivity, dimmer at grazing incidence and with range
        inten = r * (0.6 + 0.4 * cos) * (1 - 0.3 * t / self.max_range)
        inten = np.clip(inten + rng.normal(0.0, self.intensity_noise, size=t.size), 0.0, 0.99)
        hit_idx, t, pid, inten = hit_idx[keep], t[keep], pid[keep], inten[keep]
        xyz = self.dirs.reshape(-1, 3)[hit_idx] * t[:, None]
        points = np.concatenate([xyz, inten[:, None]], axis=1).astype(np.float32)
        point_owner = prim_owner[hit_idx]
        num_points = np.bincount(point_owner[point_owner >= 0], minlength=n_obj)[:n_obj] \
            if n_obj else np.zeros(0, dtype=np.int64)
        return Scan(points=points, point_prim=pid, point_owner=point_owner,
                    rays_total=rays_total, rays_visible=rays_visible, num_points=num_points)
