// CUDA kernels: BEV overlap / IoU, NMS (bit-mask of suppressions, greedy pass on the host),
// points in boxes. Same geometry as the CPU kernels (box_geometry.h), float64 throughout.
// Inputs are validated in Python; the TORCH_CHECKs are a second line of defence.
#include <torch/extension.h>
#include <c10/cuda/CUDAStream.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>

#include <cstdint>
#include <vector>

#include "box_geometry.h"

using namespace pcdet_ext;

namespace {

constexpr int kThreads = 256;
constexpr int kNmsBlock = 64;   // one 64-bit mask word per (row, block of 64 columns)

void check_cuda(const at::Tensor& t, const char* name, int64_t cols) {
  TORCH_CHECK(t.is_cuda(), name, ": expected a CUDA tensor");
  TORCH_CHECK(t.scalar_type() == at::kDouble, name, ": expected float64");
  TORCH_CHECK(t.dim() == 2 && t.size(1) == cols, name, ": expected shape (N, ", cols, ")");
  TORCH_CHECK(t.is_contiguous(), name, ": expected a contiguous tensor");
}

__global__ void overlap_kernel(const double* a, int64_t n, const double* b, int64_t m, bool iou,
                               double* out) {
  const int64_t idx = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (idx >= n * m) return;
  const int64_t i = idx / m, j = idx % m;
  double ba[4], bb[4];
  box_aabb(a + 7 * i, ba);
  box_aabb(b + 7 * j, bb);
  double v = 0.0;
  if (aabb_touch(ba, bb)) v = iou ? box_iou(a + 7 * i, b + 7 * j) : box_overlap(a + 7 * i, b + 7 * j);
  out[idx] = v;
}

// mask[i * col_blocks + cb] bit t: box i suppresses box cb * 64 + t (only columns j > i).
__global__ void nms_mask_kernel(const double* boxes, int64_t n, double thresh, uint64_t* mask) {
  const int64_t rb = blockIdx.y, cb = blockIdx.x;
  const int64_t col_blocks = (n + kNmsBlock - 1) / kNmsBlock;
  __shared__ double cols[kNmsBlock * 7];
  const int64_t col0 = cb * kNmsBlock;
  const int ncols = (n - col0 < kNmsBlock) ? (int)(n - col0) : kNmsBlock;
  if (threadIdx.x < ncols)
    for (int k = 0; k < 7; ++k) cols[threadIdx.x * 7 + k] = boxes[(col0 + threadIdx.x) * 7 + k];
  __syncthreads();
  const int64_t i = rb * kNmsBlock + threadIdx.x;
  if (i >= n) return;
  uint64_t bits = 0;
  for (int t = 0; t < ncols; ++t) {
    const int64_t j = col0 + t;
    if (j > i && box_iou(boxes + 7 * i, cols + 7 * t) > thresh) bits |= 1ULL << t;
  }
  mask[i * col_blocks + cb] = bits;
}

__global__ void points_in_boxes_kernel(const double* pts, int64_t n, const double* params, int64_t m,
                                       int64_t* out) {
  const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= n) return;
  int64_t hit = -1;
  for (int64_t k = 0; k < m; ++k)
    if (point_in_box(pts[3 * i], pts[3 * i + 1], pts[3 * i + 2], params + 8 * k)) { hit = k; break; }
  out[i] = hit;
}

__global__ void points_in_boxes_mask_kernel(const double* pts, int64_t n, const double* params, int64_t m,
                                            bool* out) {
  const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= n) return;
  for (int64_t k = 0; k < m; ++k)
    out[k * n + i] = point_in_box(pts[3 * i], pts[3 * i + 1], pts[3 * i + 2], params + 8 * k);
}

unsigned int blocks_for(int64_t work) { return (unsigned int)((work + kThreads - 1) / kThreads); }

}  // namespace

at::Tensor overlap_bev_cuda(const at::Tensor& a, const at::Tensor& b, bool iou) {
  check_cuda(a, "boxes_a", 7);
  check_cuda(b, "boxes_b", 7);
  const c10::cuda::CUDAGuard guard(a.device());
  const int64_t n = a.size(0), m = b.size(0);
  auto out = at::zeros({n, m}, a.options());
  if (n == 0 || m == 0) return out;
  overlap_kernel<<<blocks_for(n * m), kThreads, 0, c10::cuda::getCurrentCUDAStream()>>>(
      a.data_ptr<double>(), n, b.data_ptr<double>(), m, iou, out.data_ptr<double>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return out;
}

at::Tensor nms_cuda(const at::Tensor& boxes, double thresh) {
  check_cuda(boxes, "boxes", 7);
  const c10::cuda::CUDAGuard guard(boxes.device());
  const int64_t n = boxes.size(0);
  if (n == 0) return at::empty({0}, boxes.options().dtype(at::kLong));
  const int64_t col_blocks = (n + kNmsBlock - 1) / kNmsBlock;
  auto mask = at::empty({n, col_blocks}, boxes.options().dtype(at::kLong));
  const dim3 grid((unsigned int)col_blocks, (unsigned int)col_blocks);
  nms_mask_kernel<<<grid, kNmsBlock, 0, c10::cuda::getCurrentCUDAStream()>>>(
      boxes.data_ptr<double>(), n, thresh, reinterpret_cast<uint64_t*>(mask.data_ptr<int64_t>()));
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  const auto host = mask.cpu();
  const uint64_t* pm = reinterpret_cast<const uint64_t*>(host.data_ptr<int64_t>());
  std::vector<uint64_t> removed(col_blocks, 0);
  std::vector<int64_t> keep;
  for (int64_t i = 0; i < n; ++i) {
    if (removed[i / kNmsBlock] >> (i % kNmsBlock) & 1ULL) continue;
    keep.push_back(i);
    for (int64_t c = 0; c < col_blocks; ++c) removed[c] |= pm[i * col_blocks + c];
  }
  auto out = at::empty({(int64_t)keep.size()}, at::kLong);
  std::copy(keep.begin(), keep.end(), out.data_ptr<int64_t>());
  return out.to(boxes.device());
}

at::Tensor points_in_boxes_cuda(const at::Tensor& points, const at::Tensor& params) {
  check_cuda(points, "points", 3);
  check_cuda(params, "boxes", 8);
  const c10::cuda::CUDAGuard guard(points.device());
  const int64_t n = points.size(0), m = params.size(0);
  auto out = at::full({n}, -1, points.options().dtype(at::kLong));
  if (n == 0 || m == 0) return out;
  points_in_boxes_kernel<<<blocks_for(n), kThreads, 0, c10::cuda::getCurrentCUDAStream()>>>(
      points.data_ptr<double>(), n, params.data_ptr<double>(), m, out.data_ptr<int64_t>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return out;
}

at::Tensor points_in_boxes_mask_cuda(const at::Tensor& points, const at::Tensor& params) {
  check_cuda(points, "points", 3);
  check_cuda(params, "boxes", 8);
  const c10::cuda::CUDAGuard guard(points.device());
  const int64_t n = points.size(0), m = params.size(0);
  auto out = at::zeros({m, n}, points.options().dtype(at::kBool));
  if (n == 0 || m == 0) return out;
  points_in_boxes_mask_kernel<<<blocks_for(n), kThreads, 0, c10::cuda::getCurrentCUDAStream()>>>(
      points.data_ptr<double>(), n, params.data_ptr<double>(), m, out.data_ptr<bool>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return out;
}
