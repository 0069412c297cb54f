// CPU kernels (OpenMP through at::parallel_for): BEV overlap, NMS, points in boxes, hard
// voxelization. Inputs are validated and made contiguous float64 in Python before the call;
// the TORCH_CHECKs below are a second line of defence, never a segfault.
#include <torch/extension.h>
#include <ATen/Parallel.h>

#include <cmath>
#include <algorithm>
#include <cstdint>
#include <utility>
#include <vector>

#include "box_geometry.h"

using namespace pcdet_ext;

namespace {

void check_boxes(const at::Tensor& t, const char* name, int64_t cols) {
  TORCH_CHECK(t.device().is_cpu(), name, ": expected a CPU tensor");
  TORCH_CHECK(t.scalar_type() == at::kDouble, name, ": expected float64");
  TORCH_CHECK(t.dim() == 2 && t.size(1) == cols, name, ": expected shape (N, ", cols, ")");
  TORCH_CHECK(t.is_contiguous(), name, ": expected a contiguous tensor");
}

std::vector<double> aabbs(const double* b, int64_t n) {
  std::vector<double> out(4 * n);
  for (int64_t i = 0; i < n; ++i) box_aabb(b + 7 * i, out.data() + 4 * i);
  return out;
}

std::vector<double> cos_sin(const double* b, int64_t n) {
  std::vector<double> out(2 * n);
  for (int64_t i = 0; i < n; ++i) { out[2 * i] = cos(b[7 * i + 6]); out[2 * i + 1] = sin(b[7 * i + 6]); }
  return out;
}

// Overlap (or IoU) of boxes a and b with their precomputed cos / sin.
inline double pair_value(const double* a, const double* b, const double* csa, const double* csb, bool iou) {
  const double inter = box_overlap_cs(a, b, csa[0], csa[1], csb[0], csb[1]);
  return iou ? iou_from_overlap(a, b, inter) : inter;
}

}  // namespace

// (N, M) BEV intersection areas, or IoU when `iou` (0 for zero-area unions).
at::Tensor overlap_bev(const at::Tensor& a, const at::Tensor& b, bool iou) {
  check_boxes(a, "boxes_a", 7);
  check_boxes(b, "boxes_b", 7);
  const int64_t n = a.size(0), m = b.size(0);
  auto out = at::zeros({n, m}, a.options());
  if (n == 0 || m == 0) return out;
  const double *pa = a.data_ptr<double>(), *pb = b.data_ptr<double>();
  double* po = out.data_ptr<double>();
  const auto ba = aabbs(pa, n), bb = aabbs(pb, m), ca = cos_sin(pa, n), cb = cos_sin(pb, m);
  at::parallel_for(0, n, 16, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i)
      for (int64_t j = 0; j < m; ++j)
        if (aabb_touch(&ba[4 * i], &bb[4 * j]))
          po[i * m + j] = pair_value(pa + 7 * i, pb + 7 * j, &ca[2 * i], &cb[2 * j], iou);
  });
  return out;
}

// Greedy NMS over boxes sorted by descending score; returns kept positions (int64).
// Serial and on the fly (IoU only between a kept box and its live neighbours), with the
// neighbours found through boxes sorted by their bounding-box x-min: a kept box only looks
// at boxes whose x-min lies in [its x-min - widest box, its x-max].
at::Tensor nms(const at::Tensor& boxes, double thresh) {
  check_boxes(boxes, "boxes", 7);
  const int64_t n = boxes.size(0);
  const double* pb = boxes.data_ptr<double>();
  const auto bb = aabbs(pb, n), cs = cos_sin(pb, n);
  std::vector<int64_t> by_x(n);
  for (int64_t i = 0; i < n; ++i) by_x[i] = i;
  std::sort(by_x.begin(), by_x.end(), [&](int64_t u, int64_t v) { return bb[4 * u] < bb[4 * v]; });
  std::vector<double> xs(n);
  double widest = 0;
  for (int64_t p = 0; p < n; ++p) {
    xs[p] = bb[4 * by_x[p]];
    widest = std::max(widest, bb[4 * by_x[p] + 1] - bb[4 * by_x[p]]);
  }
  std::vector<uint8_t> suppressed(n, 0);
  std::vector<int64_t> keep;
  for (int64_t i = 0; i < n; ++i) {
    if (suppressed[i]) continue;
    keep.push_back(i);
    const double* bi = &bb[4 * i];
    const int64_t lo = std::lower_bound(xs.begin(), xs.end(), bi[0] - widest) - xs.begin();
    const int64_t hi = std::upper_bound(xs.begin(), xs.end(), bi[1]) - xs.begin();
    for (int64_t p = lo; p < hi; ++p) {
      const int64_t j = by_x[p];
      if (j > i && !suppressed[j] && aabb_touch(bi, &bb[4 * j]) &&
          pair_value(pb + 7 * i, pb + 7 * j, &cs[2 * i], &cs[2 * j], true) > thresh)
        suppressed[j] = 1;
    }
  }
  auto out = at::empty({(int64_t)keep.size()}, at::kLong);
  std::copy(keep.begin(), keep.end(), out.data_ptr<int64_t>());
  return out;
}

namespace {

// Conservative world-frame bounds of each box (params: cx, cy, cz, hx, hy, hz, cos, sin).
std::vector<double> param_bounds(const double* bp, int64_t m) {
  std::vector<double> out(6 * m);
  for (int64_t k = 0; k < m; ++k) {
    const double* p = bp + 8 * k;
    const double ex = fabs(p[3] * p[6]) + fabs(p[4] * p[7]), ey = fabs(p[3] * p[7]) + fabs(p[4] * p[6]);
    const double slack = 1e-7 * (p[3] + p[4] + p[5] + 1.0);
    double* o = out.data() + 6 * k;
    o[0] = p[0] - ex - slack; o[1] = p[0] + ex + slack;
    o[2] = p[1] - ey - slack; o[3] = p[1] + ey + slack;
    o[4] = p[2] - p[5] - slack; o[5] = p[2] + p[5] + slack;
  }
  return out;
}

inline bool in_bounds(const double* q, const double* o) {
  return q[0] >= o[0] && q[0] <= o[1] && q[1] >= o[2] && q[1] <= o[3] && q[2] >= o[4] && q[2] <= o[5];
}

}  // namespace

at::Tensor points_in_boxes(const at::Tensor& points, const at::Tensor& params) {
  check_boxes(points, "points", 3);
  check_boxes(params, "boxes", 8);
  const int64_t n = points.size(0), m = params.size(0);
  auto out = at::full({n}, -1, points.options().dtype(at::kLong));
  const double *pp = points.data_ptr<double>(), *bp = params.data_ptr<double>();
  int64_t* po = out.data_ptr<int64_t>();
  const auto bounds = param_bounds(bp, m);
  at::parallel_for(0, n, 2048, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) {
      const double* q = pp + 3 * i;
      for (int64_t k = 0; k < m; ++k)
        if (in_bounds(q, &bounds[6 * k]) && point_in_box(q[0], q[1], q[2], bp + 8 * k)) {
          po[i] = k;
          break;
        }
    }
  });
  return out;
}

at::Tensor points_in_boxes_mask(const at::Tensor& points, const at::Tensor& params) {
  check_boxes(points, "points", 3);
  check_boxes(params, "boxes", 8);
  const int64_t n = points.size(0), m = params.size(0);
  auto out = at::zeros({m, n}, points.options().dtype(at::kBool));
  const double *pp = points.data_ptr<double>(), *bp = params.data_ptr<double>();
  bool* po = out.data_ptr<bool>();
  const auto bounds = param_bounds(bp, m);
  at::parallel_for(0, n, 2048, [&](int64_t i0, int64_t i1) {
    for (int64_t k = 0; k < m; ++k)
      for (int64_t i = i0; i < i1; ++i) {
        const double* q = pp + 3 * i;
        if (in_bounds(q, &bounds[6 * k]) && point_in_box(q[0], q[1], q[2], bp + 8 * k)) po[k * n + i] = true;
      }
  });
  return out;
}

// First-come hard voxelization (see voxelize.py): one serial pass assigns voxel / slot per
// point with an open-addressing hash of linear voxel ids, then the outputs are filled.
std::vector<at::Tensor> hard_voxelize(const at::Tensor& points, std::vector<double> voxel_size,
                                      std::vector<double> range_min, std::vector<int64_t> grid,
                                      int64_t max_points, int64_t max_voxels) {
  TORCH_CHECK(points.device().is_cpu() && points.dim() == 2 && points.size(1) >= 3 && points.is_contiguous(),
              "points: expected a contiguous CPU tensor of shape (N, >=3)");
  TORCH_CHECK(points.scalar_type() == at::kFloat || points.scalar_type() == at::kDouble,
              "points: expected float32 or float64");
  TORCH_CHECK(voxel_size.size() == 3 && range_min.size() == 3 && grid.size() == 3, "voxel grid: expected 3 values");
  TORCH_CHECK(max_points > 0 && max_voxels > 0, "max_points_per_voxel and max_voxels must be > 0");
  const int64_t n = points.size(0), ch = points.size(1);
  std::vector<int64_t> voxel_of(n, -1), slot_of(n, -1);
  std::vector<int64_t> counts, coords;   // per voxel: point count, (z, y, x)
  int64_t cap = 16;
  while (cap < 2 * n) cap <<= 1;
  std::vector<int64_t> keys(cap, -1), vals(cap, -1);
  AT_DISPATCH_FLOATING_TYPES(points.scalar_type(), "hard_voxelize", [&] {
    const scalar_t* p = points.data_ptr<scalar_t>();
    for (int64_t i = 0; i < n; ++i) {
      int64_t c[3];
      bool ok = true;
      for (int a = 0; a < 3; ++a) {
        const double f = std::floor(((double)p[i * ch + a] - range_min[a]) / voxel_size[a]);
        if (!(f >= 0 && f < (double)grid[a])) { ok = false; break; }
        c[a] = (int64_t)f;
      }
      if (!ok) continue;
      const int64_t lin = (c[2] * grid[1] + c[1]) * grid[0] + c[0];
      uint64_t h = (uint64_t)lin * 0x9E3779B97F4A7C15ull;
      int64_t pos = (int64_t)(h >> 20) & (cap - 1);
      while (keys[pos] != -1 && keys[pos] != lin) pos = (pos + 1) & (cap - 1);
      int64_t v = vals[pos];
      if (keys[pos] == -1) {
        if ((int64_t)counts.size() >= max_voxels) continue;   // no new voxels past the limit
        v = (int64_t)counts.size();
        keys[pos] = lin;
        vals[pos] = v;
        counts.push_back(0);
        coords.insert(coords.end(), {c[2], c[1], c[0]});
      }
      if (counts[v] < max_points) {
        voxel_of[i] = v;
        slot_of[i] = counts[v];
        counts[v] += 1;
      }
    }
  });
  const int64_t nv = (int64_t)counts.size();
  auto voxels = at::zeros({nv, max_points, ch}, points.options());
  auto out_coords = at::empty({nv, 3}, points.options().dtype(at::kInt));
  auto out_num = at::empty({nv}, points.options().dtype(at::kInt));
  int32_t *pc = out_coords.data_ptr<int32_t>(), *pn = out_num.data_ptr<int32_t>();
  for (int64_t v = 0; v < nv; ++v) {
    pn[v] = (int32_t)counts[v];
    for (int a = 0; a < 3; ++a) pc[3 * v + a] = (int32_t)coords[3 * v + a];
  }
  AT_DISPATCH_FLOATING_TYPES(points.scalar_type(), "hard_voxelize_fill", [&] {
    const scalar_t* p = points.data_ptr<scalar_t>();
    scalar_t* o = voxels.data_ptr<scalar_t>();
    for (int64_t i = 0; i < n; ++i)
      if (voxel_of[i] >= 0)
        std::copy(p + i * ch, p + (i + 1) * ch, o + (voxel_of[i] * max_points + slot_of[i]) * ch);
  });
  return {voxels, out_coords, out_num};
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "pcdet_ext compiled CPU ops (use pcdet_ext.ops, which validates inputs)";
  m.def("overlap_bev", &overlap_bev, "BEV intersection areas or IoU (N,7)x(M,7) float64 -> (N,M)");
  m.def("nms", &nms, "greedy rotated NMS over score-sorted float64 boxes -> kept positions");
  m.def("points_in_boxes", &points_in_boxes, "(N,3) float64, (M,8) box params -> (N,) first box or -1");
  m.def("points_in_boxes_mask", &points_in_boxes_mask, "(N,3), (M,8) -> (M,N) bool");
  m.def("hard_voxelize", &hard_voxelize, "first-come hard voxelization");
}
