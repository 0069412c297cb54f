"""Box coders: how regression targets are expressed relative to anchors (OpenPCDet's ResidualCoder)."""
from __future__ import annotations

import math

import torch

# Largest log size ratio decoded (a box 62.5x its anchor, as mmdetection's 16/1000 bound): an
# untrained or drifting head can emit size residuals near 100, whose exp() is inf in float32 and
# would reach NMS as non-finite boxes. Real boxes sit far inside the bound, so decoding is unchanged.
MAX_LOG_SIZE_RATIO = math.log(1000.0 / 16.0)


class ResidualCoder:
    """SECOND's residual encoding of a LiDAR box (x, y, z, dx, dy, dz, heading, *extra) against an anchor:
    centre offsets scaled by the anchor's BEV diagonal (x, y) and height (z), log size ratios,
    heading difference (or cos/sin differences when encode_angle_by_sincos), extra columns as
    plain differences."""

    def __init__(self, code_size: int = 7, encode_angle_by_sincos: bool = False, **kwargs):
        self.code_size = code_size + (1 if encode_angle_by_sincos else 0)
        self.encode_angle_by_sincos = encode_angle_by_sincos

    def encode_torch(self, boxes: torch.Tensor, anchors: torch.Tensor) -> torch.Tensor:
        # Sizes are clamped so that log() stays finite on degenerate (zero-size) inputs.
        anchors = torch.cat([anchors[..., :3], anchors[..., 3:6].clamp(min=1e-5), anchors[..., 6:]], dim=-1)
        boxes = torch.cat([boxes[..., :3], boxes[..., 3:6].clamp(min=1e-5), boxes[..., 6:]], dim=-1)
        xa, ya, za, dxa, dya, dza, ra, *cas = torch.split(anchors, 1, dim=-1)
        xg, yg, zg, dxg, dyg, dzg, rg, *cgs = torch.split(boxes, 1, dim=-1)
        diagonal = torch.sqrt(dxa ** 2 + dya ** 2)
        xt, yt, zt = (xg - xa) / diagonal, (yg - ya) / diagonal, (zg - za) / dza
        dxt, dyt, dzt = torch.log(dxg / dxa), torch.log(dyg / dya), torch.log(dzg / dza)
        if self.encode_angle_by_sincos:
            rts = [torch.cos(rg) - torch.cos(ra), torch.sin(rg) - torch.sin(ra)]
        else:
            rts = [rg - ra]
        cts = [g - a for g, a in zip(cgs, cas)]
        return torch.cat([xt, yt, zt, dxt, dyt, dzt, *rts, *cts], dim=-1)

    def decode_torch(self, box_encodings: torch.Tensor, anchors: torch.Tensor) -> torch.Tensor:
        xa, ya, za, dxa, dya, dza, ra, *cas = torch.split(anchors, 1, dim=-1)
        if self.encode_angle_by_sincos:
            xt, yt, zt, dxt, dyt, dzt, cost, sint, *cts = torch.split(box_encodings, 1, dim=-1)
        else:
            xt, yt, zt, dxt, dyt, dzt, rt, *cts = torch.split(box_encodings, 1, dim=-1)
        diagonal = torch.sqrt(dxa ** 2 + dya ** 2)
        xg, yg, zg = xt * diagonal + xa, yt * diagonal + ya, zt * dza + za
        dxt, dyt, dzt = (t.clamp(max=MAX_LOG_SIZE_RATIO) for t in (dxt, dyt, dzt))
        dxg, dyg, dzg = torch.exp(dxt) * dxa, torch.exp(dyt) * dya, torch.exp(dzt) * dza
        if self.encode_angle_by_sincos:
            rg = torch.atan2(sint + torch.sin(ra), cost + torch.cos(ra))
        else:
            rg = rt + ra
        cgs = [t + a for t, a in zip(cts, cas)]
        return torch.cat([xg, yg, zg, dxg, dyg, dzg, rg, *cgs], dim=-1)


BOX_CODERS = {'ResidualCoder': ResidualCoder}


def build_box_coder(name: str, **kwargs):
    if name not in BOX_CODERS:
        raise KeyError(f'TARGET_ASSIGNER_CONFIG.BOX_CODER: unknown box coder {name!r}; '
                       f'available: {sorted(BOX_CODERS)}')
    return BOX_CODERS[name](**kwargs)
