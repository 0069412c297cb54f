"""GPU paths against the CPU / pure-PyTorch references: CUDA kernels at larger sizes and edge cases,
the native sparse conv on CUDA, the spconv delegation on CUDA, and both detectors trained and run
on CUDA. Skipped (with the reason) on machines without a CUDA GPU; `tools/gpu_check.sh` runs them
on a GPU machine."""
import numpy as np
import pytest
import torch

from pcdet_ext.ops import _backend, boxes_iou_bev, hard_voxelize, nms, points_in_boxes, points_in_boxes_mask
from pcdet_ext.ops import sparse as sp
from pcdet_ext.ops.sparse import spconv_backend

from _models_helpers import build, make_batch

HAS_CUDA = torch.cuda.is_available()
pytestmark = pytest.mark.skipif(not HAS_CUDA, reason='needs a CUDA GPU (torch.cuda.is_available() is False)')
KERNELS = pytest.mark.skipif(not (HAS_CUDA and _backend.available()['cuda']),
                             reason='the _C_cuda extension is not built (setup.py builds it only with CUDA torch)')
SPCONV = pytest.mark.skipif(not spconv_backend.spconv_available(), reason='spconv is not installed')
DEV = torch.device('cuda')


@pytest.fixture(autouse=True)
def exact_fp32():
    """TF32 would make float32 matmuls differ from the CPU at 1e-3; the comparisons want fp32."""
    old = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


def scene_boxes(rng, n, extent=40.0):
    b = np.zeros((n, 7))
    b[:, :2] = rng.uniform(-extent, extent, (n, 2))
    b[:, 2] = rng.uniform(-2, 0, n)
    b[:, 3:6] = rng.uniform(0.5, 5.0, (n, 3))
    b[:, 6] = rng.uniform(-np.pi, np.pi, n)
    return torch.from_numpy(b)


@KERNELS
@pytest.mark.parametrize('seed', [0, 1, 2])
def test_cuda_kernels_match_reference_at_scale(seed, monkeypatch):
    """Thousands of boxes (many NMS mask words, many blocks), touching and identical boxes included."""
    rng = np.random.default_rng(seed)
    a, b = scene_boxes(rng, 3000, extent=25), scene_boxes(rng, 700, extent=25)
    a[100:110] = a[90]                      # exact duplicates: IoU 1, suppressed by NMS
    scores = torch.from_numpy(rng.random(3000))
    pts = torch.from_numpy(rng.uniform(-25, 25, (200000, 3)))
    monkeypatch.setenv('PCDET_EXT_OPS', 'reference')
    ref = (boxes_iou_bev(a, b), nms(a, scores, 0.1), nms(a, scores, 0.7), points_in_boxes(pts, b))
    monkeypatch.delenv('PCDET_EXT_OPS')
    torch.testing.assert_close(boxes_iou_bev(a.to(DEV), b.to(DEV)).cpu(), ref[0], atol=1e-9, rtol=1e-9)
    assert nms(a.to(DEV), scores.to(DEV), 0.1).cpu().tolist() == ref[1].tolist()
    assert nms(a.to(DEV), scores.to(DEV), 0.7).cpu().tolist() == ref[2].tolist()
    assert torch.equal(points_in_boxes(pts.to(DEV), b.to(DEV)).cpu(), ref[3])
    mask = points_in_boxes_mask(pts.to(DEV), b.to(DEV)).cpu()
    first = torch.where(mask.any(0), mask.float().argmax(0), torch.full((len(pts),), -1))
    assert torch.equal(first, ref[3])


@KERNELS
def test_cuda_kernels_empty_and_float32_inputs():
    e = torch.zeros((0, 7), device=DEV)
    b = scene_boxes(np.random.default_rng(0), 5).float().to(DEV)
    assert boxes_iou_bev(e, b).shape == (0, 5) and boxes_iou_bev(b, e).shape == (5, 0)
    assert nms(e, torch.zeros(0, device=DEV), 0.5).numel() == 0
    assert points_in_boxes(torch.zeros((0, 3), device=DEV), b).numel() == 0
    assert (points_in_boxes(torch.ones((4, 3), device=DEV), e) == -1).all()
    iou = boxes_iou_bev(b, b)
    assert iou.device.type == DEV.type and iou.dtype == torch.float32
    torch.testing.assert_close(iou.diagonal().cpu(), torch.ones(5))


def test_hard_voxelize_cuda_equals_cpu():
    rng = np.random.default_rng(0)
    pts = torch.from_numpy(rng.uniform([0, -20, -3, 0], [40, 20, 1, 1], (60000, 4)).astype(np.float32))
    args = ([0.2, 0.2, 0.4], [0, -20, -3, 40, 20, 1], 5, 8000)   # max_voxels binds: first-come order matters
    cpu = hard_voxelize(pts, *args)
    gpu = hard_voxelize(pts.to(DEV), *args)
    for c, g in zip(cpu, gpu):
        assert g.device.type == DEV.type
        assert torch.equal(c, g.cpu())


def random_sparse(gen, shape, channels, batch_size=2, density=0.08, dtype=torch.float64):
    occ = torch.rand((batch_size, *shape), generator=gen) < density
    indices = occ.nonzero()
    indices = indices[torch.randperm(len(indices), generator=gen)].int()
    feats = torch.randn(len(indices), channels, generator=gen, dtype=dtype)
    return feats, indices


def stack(lib):
    return lib.SparseSequential(
        lib.SubMConv3d(4, 8, 3, padding=1, bias=False, indice_key='subm1'),
        lib.SparseConv3d(8, 16, 3, stride=2, padding=1, bias=True, indice_key='spconv2'),
        lib.SubMConv3d(16, 16, 3, padding=1, bias=False, indice_key='subm2'),
        lib.SparseInverseConv3d(16, 8, 3, indice_key='spconv2', bias=False))


def _sorted(out):
    idx = out.indices.long().cpu()
    s = out.spatial_shape
    key = ((idx[:, 0] * s[0] + idx[:, 1]) * s[1] + idx[:, 2]) * s[2] + idx[:, 3]
    order = torch.argsort(key)
    return key[order], out.features.detach().cpu()[order]


def _run(net, feats, indices, shape, device):
    f = feats.to(device).requires_grad_(True)
    out = net.to(device)(sp.SparseConvTensor(f, indices.to(device), shape, 2))
    (out.features * torch.arange(out.features.shape[1], device=device, dtype=f.dtype)).sum().backward()
    grads = {n: p.grad.detach().cpu().clone() for n, p in net.named_parameters()}
    net.zero_grad()
    return _sorted(out), f.grad.detach().cpu(), grads


@pytest.mark.parametrize('seed', [0, 1])
def test_native_sparse_conv_cuda_equals_cpu(seed, monkeypatch):
    """The native path on CUDA tensors (spconv switched off) gives the CPU result: same output sites,
    float64 features and gradients equal to 1e-9."""
    monkeypatch.setenv('PCDET_EXT_SPARSE_BACKEND', 'native')
    gen = torch.Generator().manual_seed(seed)
    feats, indices = random_sparse(gen, [9, 20, 24], 4)
    torch.manual_seed(seed)
    net = stack(sp).double()
    (kc, fc), gc, wc = _run(net, feats, indices, [9, 20, 24], 'cpu')
    (kg, fg), gg, wg = _run(net, feats, indices, [9, 20, 24], DEV)
    assert torch.equal(kc, kg)
    torch.testing.assert_close(fg, fc, atol=1e-9, rtol=1e-9)
    torch.testing.assert_close(gg, gc, atol=1e-9, rtol=1e-9)
    for n in wc:
        torch.testing.assert_close(wg[n], wc[n], atol=1e-9, rtol=1e-9, msg=n)


@SPCONV
@pytest.mark.parametrize('seed', [0, 1])
def test_spconv_delegation_on_cuda_matches_native(seed, monkeypatch):
    """Our modules routed to spconv on CUDA (PCDET_EXT_SPARSE_BACKEND=spconv) against the native path:
    same sites, same features, same gradients of our Parameters (float32 tolerance)."""
    gen = torch.Generator().manual_seed(seed)
    feats, indices = random_sparse(gen, [9, 20, 24], 4, dtype=torch.float32)
    torch.manual_seed(seed)
    net = stack(sp)
    monkeypatch.setenv('PCDET_EXT_SPARSE_BACKEND', 'native')
    (kn, fn), gn, wn = _run(net, feats, indices, [9, 20, 24], DEV)
    monkeypatch.setenv('PCDET_EXT_SPARSE_BACKEND', 'spconv')
    assert spconv_backend.use_spconv(feats.to(DEV))
    (ks, fs), gs, ws = _run(net, feats, indices, [9, 20, 24], DEV)
    assert torch.equal(kn, ks), 'spconv and native produce different output sites'
    scale = float(fn.abs().max())
    torch.testing.assert_close(fs, fn, atol=1e-4 * scale, rtol=1e-4)
    torch.testing.assert_close(gs, gn, atol=1e-4 * float(gn.abs().max()), rtol=1e-4)
    for n in wn:
        torch.testing.assert_close(ws[n], wn[n], atol=1e-4 * float(wn[n].abs().max()), rtol=1e-4, msg=n)


@pytest.mark.parametrize('name', ['SECONDNet', 'PointPillar'])
def test_detector_trains_on_cuda_and_matches_cpu_inference(name):
    """One model, same weights: the dense head outputs on CUDA equal the CPU ones (fp32 tolerance),
    the post-processed boxes agree, and a few CUDA training steps lower the loss."""
    model, dataset, _ = build(name)
    model.eval()
    model.score_thresh = 0.1
    batch = make_batch(dataset)

    def infer(device):
        m = model.to(device)
        b = {k: (v.to(device) if torch.is_tensor(v) else v) for k, v in batch.items()}
        with torch.no_grad():
            preds, _ = m(b)
        return b, [{k: v.cpu() for k, v in p.items()} for p in preds]

    b_cpu, p_cpu = infer('cpu')
    b_gpu, p_gpu = infer(DEV)
    for key in ('batch_cls_preds', 'batch_box_preds'):
        ref, got = b_cpu[key], b_gpu[key].cpu()
        torch.testing.assert_close(got, ref, atol=2e-3 * max(1.0, float(ref.abs().max())), rtol=1e-3, msg=key)
    for pc, pg in zip(p_cpu, p_gpu):
        # Same boxes up to near-ties in score order: match each CPU box to the GPU box it overlaps most.
        assert abs(len(pc['pred_boxes']) - len(pg['pred_boxes'])) <= 1
        if len(pc['pred_boxes']) and len(pg['pred_boxes']):
            best = boxes_iou_bev(pc['pred_boxes'][:20].double(), pg['pred_boxes'].double()).max(1).values
            assert (best > 0.99).float().mean() >= 0.9, best

    model.to(DEV).train()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(5):
        ret, _, _ = model({k: (v.to(DEV) if torch.is_tensor(v) else v) for k, v in batch.items()})
        assert torch.isfinite(ret['loss'])
        opt.zero_grad()
        ret['loss'].backward()
        opt.step()
        losses.append(ret['loss'].item())
    assert losses[-1] < 0.7 * losses[0], losses
