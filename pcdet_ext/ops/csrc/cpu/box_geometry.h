// Rotated-rectangle geometry shared by the C++ and CUDA kernels (header-only).
// Boxes are LiDAR boxes (x, y, z, dx, dy, dz, heading) in double precision.
#pragma once
#include <cmath>

#ifdef __CUDACC__
#define PCDET_HD __host__ __device__ __forceinline__
#else
#define PCDET_HD inline
#endif

namespace pcdet_ext {

// Axis-aligned BEV bounds (xmin, xmax, ymin, ymax) of a rotated box, slightly inflated so
// the cheap rejection test never drops a pair the exact clipping would count.
PCDET_HD void box_aabb(const double* b, double* out) {
  const double c = fabs(cos(b[6])), s = fabs(sin(b[6]));
  const double hx = 0.5 * (b[3] * c + b[4] * s), hy = 0.5 * (b[3] * s + b[4] * c);
  const double slack = 1e-9 * (fabs(b[3]) + fabs(b[4]) + 1.0);
  out[0] = b[0] - hx - slack; out[1] = b[0] + hx + slack;
  out[2] = b[1] - hy - slack; out[3] = b[1] + hy + slack;
}

PCDET_HD bool aabb_touch(const double* p, const double* q) {
  return p[0] <= q[1] && q[0] <= p[1] && p[2] <= q[3] && q[2] <= p[3];
}

// Clip polygon (n vertices) by the half-plane nx*x + ny*y <= d; returns the new count.
PCDET_HD int clip_half_plane(const double* px, const double* py, int n, double nx, double ny,
                             double d, double* ox, double* oy) {
  int m = 0;
  for (int i = 0; i < n; ++i) {
    const int j = (i + 1) % n;
    const double dp = nx * px[i] + ny * py[i] - d, dq = nx * px[j] + ny * py[j] - d;
    if (dp <= 0) { ox[m] = px[i]; oy[m] = py[i]; ++m; }
    if ((dp < 0 && dq > 0) || (dp > 0 && dq < 0)) {
      const double t = dp / (dp - dq);
      ox[m] = px[i] + t * (px[j] - px[i]);
      oy[m] = py[i] + t * (py[j] - py[i]);
      ++m;
    }
  }
  return m;
}

// Exact BEV intersection area of two rotated rectangles: B is clipped against A's four
// half-planes (Sutherland-Hodgman) in A's frame, scaled by the largest half-extent.
// (ca, sa), (cb, sb): cos / sin of the two headings, precomputed by callers that reuse them.
PCDET_HD double box_overlap_cs(const double* a, const double* b, double ca, double sa, double cb, double sb) {
  double ax = 0.5 * a[3], ay = 0.5 * a[4], bx = 0.5 * b[3], by = 0.5 * b[4];
  if (!(ax > 0 && ay > 0 && bx > 0 && by > 0)) return 0.0;
  const double scale = fmax(fmax(ax, ay), fmax(bx, by));
  ax /= scale; ay /= scale; bx /= scale; by /= scale;
  const double dx = (b[0] - a[0]) / scale, dy = (b[1] - a[1]) / scale;
  const double cx = dx * ca + dy * sa, cy = -dx * sa + dy * ca;
  const double cd = cb * ca + sb * sa, sd = sb * ca - cb * sa;   // cos / sin of (hb - ha)
  const double sx[4] = {1, -1, -1, 1}, sy[4] = {1, 1, -1, -1};
  double px[16], py[16], qx[16], qy[16];
  for (int k = 0; k < 4; ++k) {
    const double lx = sx[k] * bx, ly = sy[k] * by;
    px[k] = cx + lx * cd - ly * sd;
    py[k] = cy + lx * sd + ly * cd;
  }
  int n = clip_half_plane(px, py, 4, 1, 0, ax, qx, qy);
  n = clip_half_plane(qx, qy, n, -1, 0, ax, px, py);
  n = clip_half_plane(px, py, n, 0, 1, ay, qx, qy);
  n = clip_half_plane(qx, qy, n, 0, -1, ay, px, py);
  if (n < 3) return 0.0;
  double area = 0;
  for (int i = 0; i < n; ++i) {
    const int j = (i + 1) % n;
    area += px[i] * py[j] - px[j] * py[i];
  }
  area = 0.5 * fabs(area) * scale * scale;
  return fmin(area, fmin(a[3] * a[4], b[3] * b[4]));
}

PCDET_HD double box_overlap(const double* a, const double* b) {
  return box_overlap_cs(a, b, cos(a[6]), sin(a[6]), cos(b[6]), sin(b[6]));
}

PCDET_HD double iou_from_overlap(const double* a, const double* b, double inter) {
  const double uni = a[3] * a[4] + b[3] * b[4] - inter;
  return uni > 0 ? inter / uni : 0.0;
}

PCDET_HD double box_iou(const double* a, const double* b) {
  return iou_from_overlap(a, b, box_overlap(a, b));
}

// Closed-box test with cos/sin precomputed (params: cx, cy, cz, hx, hy, hz, cos, sin).
// The expression order matches the PyTorch reference so both decide faces identically.
PCDET_HD bool point_in_box(double px, double py, double pz, const double* p) {
  const double dx = px - p[0], dy = py - p[1], lz = pz - p[2];
  const double lx = dx * p[6] + dy * p[7];
  const double ly = dy * p[6] - dx * p[7];
  return fabs(lx) <= p[3] && fabs(ly) <= p[4] && fabs(lz) <= p[5];
}

}  // namespace pcdet_ext
