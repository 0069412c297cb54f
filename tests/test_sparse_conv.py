"""Native sparse conv vs dense torch conv3d / conv_transpose3d on the densified tensor (float64).

Fresh random sparse inputs each run (the seed is in every failure message). Meaning checked:
- SubM: output at the input sites only, = conv3d(dense x, padding=dil*(k//2)) read there
  (inactive input sites are zero);
- SparseConv3d: output at every site whose receptive field holds an active input, = conv3d there;
- SparseInverseConv3d: output at the forward conv's input sites, = conv_transpose3d there.
"""
import os

import pytest
import torch
import torch.nn.functional as F

from pcdet_ext.ops import sparse as sp

TOL = 1e-9


@pytest.fixture
def gen():
    seed = int.from_bytes(os.urandom(4), 'little')
    g = torch.Generator().manual_seed(seed)
    return g


def random_sparse(gen, shape, channels, batch_size=2, density=0.15):
    """SparseConvTensor with a leaf float64 feature tensor, sites in random order."""
    occ = torch.rand((batch_size, *shape), generator=gen) < density
    occ.view(-1)[torch.randint(occ.numel(), (1,), generator=gen)] = True  # never empty
    indices = occ.nonzero()
    indices = indices[torch.randperm(len(indices), generator=gen)].int()
    feats = torch.randn(len(indices), channels, generator=gen, dtype=torch.float64).requires_grad_(True)
    return sp.SparseConvTensor(feats, indices, list(shape), batch_size)


def densify(x: sp.SparseConvTensor):
    """Reference dense (B, C, *shape), built by plain indexing (independent of SparseConvTensor.dense)."""
    d = x.features.new_zeros((x.batch_size, x.features.shape[1], *x.spatial_shape))
    idx = x.indices.long()
    d[(idx[:, 0], slice(None), *[idx[:, i] for i in range(1, idx.shape[1])])] = x.features
    return d


def read_sites(dense, indices):
    idx = indices.long()
    return dense[(idx[:, 0], slice(None), *[idx[:, i] for i in range(1, idx.shape[1])])]


def dense_weight(conv):
    """[out, *k, in] -> torch conv weight [out, in, *k]."""
    w = conv.weight
    return w.permute(0, w.dim() - 1, *range(1, w.dim() - 1))


def make_conv(cls, gen, *args, **kwargs):
    conv = cls(*args, **kwargs).double()
    with torch.no_grad():
        conv.weight.copy_(torch.randn(conv.weight.shape, generator=gen, dtype=torch.float64))
        if conv.bias is not None:
            conv.bias.copy_(torch.randn(conv.bias.shape, generator=gen, dtype=torch.float64))
    return conv


def check_grads(gen, out_sparse, out_ref, leaves, msg):
    """Backward of <out, G> through both paths; compare gradients of every leaf."""
    assert out_sparse.shape == out_ref.shape, msg
    if out_ref.numel():
        err = (out_sparse - out_ref).abs().max().item()
        assert err <= TOL, f'{msg}: forward max abs error {err}'
    g = torch.randn(out_ref.shape, generator=gen, dtype=torch.float64)
    grads_sparse = torch.autograd.grad((out_sparse * g).sum(), leaves)
    grads_ref = torch.autograd.grad((out_ref * g).sum(), leaves)
    for name, a, b in zip(['features', 'weight', 'bias'], grads_sparse, grads_ref):
        err = (a - b).abs().max().item()
        assert err <= TOL, f'{msg}: grad {name} max abs error {err}'


SUBM_CASES = [  # kernel, dilation
    (3, 1), (3, 2), ((3, 1, 5), 1), (5, 1), (1, 1), ((3, 3, 1), (1, 2, 1)),
]


@pytest.mark.parametrize('kernel,dilation', SUBM_CASES)
def test_subm_matches_dense_conv3d(gen, kernel, dilation):
    x = random_sparse(gen, (6, 9, 8), 3, density=0.2)
    conv = make_conv(sp.SubMConv3d, gen, 3, 4, kernel, dilation=dilation, bias=True, indice_key='s')
    out = conv(x)
    msg = f'seed {gen.initial_seed()} SubM k={kernel} d={dilation}'
    assert torch.equal(out.indices, x.indices), msg
    assert out.spatial_shape == x.spatial_shape
    k, d = conv.kernel_size, conv.dilation
    ref = F.conv3d(densify(x), dense_weight(conv), conv.bias, padding=[di * (ki // 2) for ki, di in zip(k, d)],
                   dilation=d)
    check_grads(gen, out.features, read_sites(ref, x.indices), [x.features, conv.weight, conv.bias], msg)


STRIDED_CASES = [  # kernel, stride, padding, dilation
    (3, 2, 1, 1), (3, 2, 0, 1), ((3, 1, 1), (2, 1, 1), 0, 1), (2, 2, 0, 1), (3, 1, 1, 1), (3, 2, 1, 2),
    ((1, 3, 3), (1, 2, 3), (0, 1, 2), 1), (3, 1, 0, 1),
]


def expected_sites(x, conv):
    """Output sites of a regular sparse conv: positions whose receptive field has an active input."""
    occ = densify(x.replace_feature(torch.ones_like(x.features[:, :1]).detach()))
    ones = torch.ones((1, 1, *conv.kernel_size), dtype=occ.dtype)
    reach = F.conv3d(occ, ones, stride=conv.stride, padding=conv.padding, dilation=conv.dilation)
    return (reach[:, 0] > 0).nonzero().int()


@pytest.mark.parametrize('kernel,stride,padding,dilation', STRIDED_CASES)
def test_strided_conv_matches_dense_conv3d(gen, kernel, stride, padding, dilation):
    x = random_sparse(gen, (7, 10, 9), 3)
    conv = make_conv(sp.SparseConv3d, gen, 3, 5, kernel, stride=stride, padding=padding, dilation=dilation,
                     bias=True, indice_key='down')
    out = conv(x)
    msg = f'seed {gen.initial_seed()} conv k={kernel} s={stride} p={padding} d={dilation}'
    ref = F.conv3d(densify(x), dense_weight(conv), conv.bias, stride=conv.stride, padding=conv.padding,
                   dilation=conv.dilation)
    assert out.spatial_shape == list(ref.shape[2:]), msg
    assert torch.equal(out.indices, expected_sites(x, conv)), msg  # sorted (b, z, y, x) as nonzero()
    check_grads(gen, out.features, read_sites(ref, out.indices), [x.features, conv.weight, conv.bias], msg)


INVERSE_CASES = [(3, 2, 1), ((3, 1, 1), (2, 1, 1), 0), (2, 2, 0), (3, 1, 1), (3, 3, 0)]


@pytest.mark.parametrize('kernel,stride,padding', INVERSE_CASES)
def test_inverse_conv_matches_dense_conv_transpose3d(gen, kernel, stride, padding):
    x = random_sparse(gen, (7, 10, 9), 3)
    down = make_conv(sp.SparseConv3d, gen, 3, 4, kernel, stride=stride, padding=padding, bias=False,
                     indice_key='k1')
    up = make_conv(sp.SparseInverseConv3d, gen, 4, 2, kernel, indice_key='k1', bias=True)
    mid = down(x)
    y = mid.replace_feature(torch.randn(mid.features.shape, generator=gen, dtype=torch.float64)
                            .requires_grad_(True))
    out = up(y)
    msg = f'seed {gen.initial_seed()} inverse k={kernel} s={stride} p={padding}'
    assert torch.equal(out.indices, x.indices) and out.spatial_shape == x.spatial_shape, msg
    base = [(o - 1) * s - 2 * p + (k - 1) + 1 for o, s, p, k in
            zip(mid.spatial_shape, down.stride, down.padding, down.kernel_size)]
    out_pad = [i - b for i, b in zip(x.spatial_shape, base)]
    # conv_transpose weight is [in, out, *k]; ours is [out, *k, in].
    wt = up.weight.permute(4, 0, 1, 2, 3)
    ref = F.conv_transpose3d(densify(y), wt, up.bias, stride=down.stride, padding=down.padding,
                             output_padding=out_pad)
    check_grads(gen, out.features, read_sites(ref, x.indices), [y.features, up.weight, up.bias], msg)


def test_subm_2d_matches_dense_conv2d(gen):
    x = random_sparse(gen, (12, 11), 2, density=0.3)
    conv = make_conv(sp.SubMConv2d, gen, 2, 3, 3, bias=True)
    down = make_conv(sp.SparseConv2d, gen, 3, 2, 3, stride=2, padding=1, bias=False)
    a = conv(x)
    b = down(a)
    ref_a = F.conv2d(densify(x), dense_weight(conv), conv.bias, padding=1)
    ref_a_sites = ref_a * densify(x.replace_feature(torch.ones_like(x.features[:, :1]))).ne(0)  # SubM: 0 off-site
    ref_b = F.conv2d(ref_a_sites, dense_weight(down), stride=2, padding=1)
    msg = f'seed {gen.initial_seed()} 2d'
    check_grads(gen, b.features, read_sites(ref_b, b.indices), [x.features, conv.weight, conv.bias], msg)


def test_stack_float32_matches_dense(gen):
    """A small VoxelBackBone8x-like chain in float32: SubM -> strided -> SubM -> inverse."""
    x = random_sparse(gen, (9, 16, 14), 4, density=0.1)
    x = x.replace_feature(x.features.detach().float())
    c1 = sp.SubMConv3d(4, 8, 3, padding=1, bias=False, indice_key='subm1')
    c2 = sp.SparseConv3d(8, 8, 3, stride=2, padding=1, bias=False, indice_key='spconv2')
    c3 = sp.SubMConv3d(8, 8, 3, padding=1, bias=False, indice_key='subm2')
    out = c3(c2(c1(x)))
    d = F.conv3d(densify(x), dense_weight(c1), padding=1) * densify(x.replace_feature(torch.ones_like(
        x.features[:, :1]))).ne(0)
    d = F.conv3d(d, dense_weight(c2), stride=2, padding=1)
    mask = torch.zeros_like(d[:, :1])
    idx = out.indices.long()
    mask[idx[:, 0], 0, idx[:, 1], idx[:, 2], idx[:, 3]] = 1
    d = F.conv3d(d * mask, dense_weight(c3), padding=1)
    err = (out.features - read_sites(d, out.indices)).abs().max().item()
    assert err < 1e-4, f'seed {gen.initial_seed()}: float32 stack error {err}'
