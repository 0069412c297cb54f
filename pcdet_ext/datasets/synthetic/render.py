"""A simple image_2 for synthetic frames: the LiDAR points seen by the camera, coloured by
depth (near red, far blue) over a dark sky/road backdrop. Good for looking at, and for tools
that expect an image; it is not a photo-realistic render."""
from __future__ import annotations

import numpy as np

from pcdet_ext.geometry import Calibration

# depth (m) -> colour anchors, a turbo-like ramp
_DEPTHS = np.array([0.0, 8.0, 15.0, 25.0, 40.0, 60.0, 80.0])
_COLOURS = np.array([[255, 40, 20], [255, 140, 0], [240, 230, 30], [80, 220, 80],
                     [30, 200, 220], [40, 90, 255], [90, 40, 170]], dtype=np.float64)


def render_depth_image(points: np.ndarray, calib: Calibration, image_shape) -> np.ndarray:
    """(H, W, 3) uint8 image of the points projected into image_2; nearer points win."""
    h, w = image_shape
    img = np.zeros((h, w, 3), dtype=np.uint8)
    horizon = int(np.clip(calib.cv, 0, h))
    img[:horizon] = (25, 28, 40)
    img[horizon:] = (38, 38, 38)
    if len(points) == 0:
        return img
    # Cheap conservative cull first (the camera looks along +x with a ~82 degree FOV), so
    # the exact projection only runs on the ~quarter of the scan that can be in view.
    ahead = points[(points[:, 0] > 0.5) & (np.abs(points[:, 1]) < 1.5 * points[:, 0] + 2.0), :3]
    uv, depth = calib.lidar_to_img(ahead)  # one projection; the in-image test reuses it
    keep = (depth > 0) & (uv[:, 0] >= 0) & (uv[:, 0] < w) & (uv[:, 1] >= 0) & (uv[:, 1] < h)
    uv, depth = uv[keep], depth[keep]
    order = np.argsort(-depth, kind='stable')  # far first so near points overwrite them
    uv, depth = uv[order], depth[order]
    colour = np.stack([np.interp(depth, _DEPTHS, _COLOURS[:, c]) for c in range(3)], -1).astype(np.uint8)
    u = np.floor(uv[:, 0]).astype(np.int64)
    v = np.floor(uv[:, 1]).astype(np.int64)
    for du in (0, 1):  # 2x2 splats: the 64 beams leave gaps of a few pixels
        for dv in (0, 1):
            uu, vv = np.minimum(u + du, w - 1), np.minimum(v + dv, h - 1)
            img[vv, uu] = colour
    return img
