// Python bindings of the CUDA kernels (ops_cuda.cu). Hard voxelization on CUDA tensors uses
// the vectorised PyTorch reference, which already runs on the GPU; its first-come order is
// inherently sequential, so a kernel would buy little.
#include <torch/extension.h>

at::Tensor overlap_bev_cuda(const at::Tensor& a, const at::Tensor& b, bool iou);
at::Tensor nms_cuda(const at::Tensor& boxes, double thresh);
at::Tensor points_in_boxes_cuda(const at::Tensor& points, const at::Tensor& params);
at::Tensor points_in_boxes_mask_cuda(const at::Tensor& points, const at::Tensor& params);

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "pcdet_ext compiled CUDA ops (use pcdet_ext.ops, which validates inputs)";
  m.def("overlap_bev", &overlap_bev_cuda, "BEV intersection areas or IoU, float64 CUDA");
  m.def("nms", &nms_cuda, "greedy rotated NMS over score-sorted float64 CUDA boxes -> kept positions");
  m.def("points_in_boxes", &points_in_boxes_cuda, "(N,3), (M,8) float64 CUDA -> (N,) first box or -1");
  m.def("points_in_boxes_mask", &points_in_boxes_mask_cuda, "(N,3), (M,8) -> (M,N) bool");
}
