"""SparseConvTensor / module API: spconv-2.x compatibility, rulebook reuse, empty inputs, bad input."""
from collections import OrderedDict

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from pcdet_ext.ops import sparse as sp

from test_sparse_conv import dense_weight, densify, random_sparse, read_sites  # noqa: E402


@pytest.fixture
def gen():
    import os
    return torch.Generator().manual_seed(int.from_bytes(os.urandom(4), 'little'))


def test_dense_and_replace_feature(gen):
    x = random_sparse(gen, (5, 6, 7), 3)
    d = x.dense()
    assert d.shape == (2, 3, 5, 6, 7)
    assert torch.equal(d, densify(x))
    assert torch.equal(x.dense(channels_first=False), d.permute(0, 2, 3, 4, 1))
    assert int((d.abs().sum(1) > 0).sum()) == x.indices.shape[0]
    y = x.replace_feature(x.features * 2)
    assert y.indices is x.indices and y.indice_dict is x.indice_dict and y.spatial_shape == x.spatial_shape
    assert torch.equal(y.features, x.features * 2) and y.batch_size == 2
    # dense() is differentiable (used by heads that densify the sparse output)
    g, = torch.autograd.grad((x.dense() * 3).sum(), x.features)
    assert torch.equal(g, torch.full_like(g, 3))
    back = sp.SparseConvTensor.from_dense(d.permute(0, 2, 3, 4, 1))
    assert back.features.shape == x.features.shape
    assert torch.equal(back.dense(), d)


def test_subm_indice_key_reuse(gen):
    x = random_sparse(gen, (6, 8, 8), 2, density=0.2)
    a = sp.SubMConv3d(2, 3, 3, padding=1, bias=False, indice_key='subm1').double()
    b = sp.SubMConv3d(3, 3, 3, padding=1, bias=False, indice_key='subm1').double()
    h = a(x)
    rb = x.indice_dict['subm1']
    assert h.indice_dict is x.indice_dict
    out = b(h)
    assert out.indice_dict['subm1'] is rb          # reused, not rebuilt
    ref = F.conv3d(densify(x), dense_weight(a), padding=1)
    mask = densify(x.replace_feature(torch.ones_like(x.features[:, :1]))).ne(0)
    ref = F.conv3d(ref * mask, dense_weight(b), padding=1)
    ref = read_sites(ref, x.indices)
    assert (out.features - ref).abs().max() <= 1e-9
    g = torch.randn(ref.shape, generator=gen, dtype=torch.float64)
    leaves = [x.features, a.weight, b.weight]
    got = torch.autograd.grad((out.features * g).sum(), leaves)
    want = torch.autograd.grad((ref * g).sum(), leaves)
    for ga, gb in zip(got, want):
        assert (ga - gb).abs().max() <= 1e-9
    c = sp.SubMConv3d(3, 3, 5, padding=2, bias=False, indice_key='subm1').double()
    with pytest.raises(ValueError, match="indice_key 'subm1'"):
        c(h)


def test_inverse_reuses_forward_rulebook(gen):
    x = random_sparse(gen, (8, 8, 8), 2)
    down = sp.SparseConv3d(2, 4, 3, stride=2, padding=1, bias=False, indice_key='spconv2').double()
    up = sp.SparseInverseConv3d(4, 2, 3, indice_key='spconv2', bias=False).double()
    y = down(x)
    rb = y.indice_dict['spconv2']
    z = up(y)
    assert z.indices is rb.in_indices and torch.equal(z.indices, x.indices)
    assert z.spatial_shape == x.spatial_shape and z.features.shape == (x.indices.shape[0], 2)
    wrong_sites = x.replace_feature(torch.zeros((x.indices.shape[0], 4), dtype=torch.float64))
    with pytest.raises(ValueError, match='sites'):
        up(wrong_sites)
    with pytest.raises(ValueError, match='not found'):
        sp.SparseInverseConv3d(4, 2, 3, indice_key='nope')(y)
    with pytest.raises(ValueError, match='kernel_size'):
        sp.SparseInverseConv3d(4, 2, 2, indice_key='spconv2').double()(y)
    with pytest.raises(ValueError, match='indice_key'):
        sp.SparseInverseConv3d(4, 2, 3)


@pytest.mark.parametrize('batch_size', [1, 2])
def test_empty_input(batch_size):
    feats = torch.zeros((0, 4), requires_grad=True)
    x = sp.SparseConvTensor(feats, torch.zeros((0, 4), dtype=torch.int32), [9, 10, 11], batch_size)
    net = sp.SparseSequential(
        sp.SubMConv3d(4, 8, 3, padding=1, bias=False, indice_key='subm1'), nn.BatchNorm1d(8), nn.ReLU(),
        sp.SparseConv3d(8, 16, 3, stride=2, padding=1, bias=True, indice_key='spconv2'), nn.BatchNorm1d(16),
        sp.SubMConv3d(16, 16, 3, padding=1, indice_key='subm2'),
        sp.SparseInverseConv3d(16, 4, 3, indice_key='spconv2'))
    out = net(x)
    assert out.features.shape == (0, 4) and out.indices.shape == (0, 4)
    assert out.spatial_shape == [9, 10, 11]
    assert net[3](net[0](x)).spatial_shape == [5, 5, 6]
    out.features.sum().backward()
    assert net[0].weight.grad is not None and torch.equal(net[0].weight.grad, torch.zeros_like(net[0].weight))
    assert out.dense().shape == (batch_size, 4, 9, 10, 11)


def test_sequential_batchnorm_on_active_sites(gen):
    """BatchNorm1d inside SparseSequential normalises over active sites only (as spconv)."""
    x = random_sparse(gen, (6, 7, 8), 3)
    net = sp.SparseSequential(sp.SubMConv3d(3, 5, 3, padding=1, bias=False, indice_key='subm1'),
                              nn.BatchNorm1d(5, eps=1e-3), nn.ReLU()).double().train()
    with torch.no_grad():
        net[1].weight.copy_(torch.rand(5, generator=gen, dtype=torch.float64) + 0.5)
        net[1].bias.copy_(torch.randn(5, generator=gen, dtype=torch.float64))
    out = net(x)
    y = read_sites(F.conv3d(densify(x), dense_weight(net[0]), padding=1), x.indices)
    mean, var = y.mean(0), y.var(0, unbiased=False)
    ref = torch.relu((y - mean) / torch.sqrt(var + 1e-3) * net[1].weight + net[1].bias)
    assert (out.features - ref).abs().max() <= 1e-9
    assert torch.equal(out.indices, x.indices)
    assert list(net.state_dict()) == ['0.weight', '1.weight', '1.bias', '1.running_mean', '1.running_var',
                                      '1.num_batches_tracked']


def test_sequential_api():
    a = sp.SubMConv3d(2, 2, 3, indice_key='k')
    seq = sp.SparseSequential(OrderedDict([('conv', a), ('bn', nn.BatchNorm1d(2))]))
    assert seq[0] is a and len(seq) == 2 and list(seq.state_dict())[0] == 'conv.weight'
    kw = sp.SparseSequential(conv=sp.SubMConv3d(2, 2, 3), relu=nn.ReLU())
    kw.add(nn.ReLU())
    assert list(kw._modules) == ['conv', 'relu', '2']
    assert isinstance(kw, sp.SparseModule) and isinstance(seq[0:1], sp.SparseSequential)


SPCONV_LAYOUT = {  # spconv 2.x: weight [out, *kernel, in], bias [out]
    'subm': ((16, 3, 3, 3, 4), (16,)),
    'down': ((32, 3, 1, 1, 16), (32,)),
    'inv': ((4, 2, 2, 2, 16), (4,)),
}


def _layers(lib):
    return {
        'subm': lib.SubMConv3d(4, 16, 3, padding=1, bias=True, indice_key='subm1'),
        'down': lib.SparseConv3d(16, 32, (3, 1, 1), stride=(2, 1, 1), padding=0, bias=True, indice_key='d'),
        'inv': lib.SparseInverseConv3d(16, 4, 2, indice_key='x', bias=True),
    }


def test_state_dict_layout_is_spconv_2x():
    for name, layer in _layers(sp).items():
        sd = layer.state_dict()
        assert list(sd) == ['weight', 'bias']
        assert (tuple(sd['weight'].shape), tuple(sd['bias'].shape)) == SPCONV_LAYOUT[name]
    nobias = sp.SubMConv3d(4, 16, 3, bias=False)
    assert list(nobias.state_dict()) == ['weight'] and list(nobias.parameters())[0] is nobias.weight


def test_state_dict_loads_into_spconv_when_installed():
    spt = pytest.importorskip('spconv.pytorch', reason='spconv not installed (benchmark-only dependency)')
    ours, theirs = _layers(sp), _layers(spt)
    for name in ours:
        sd = ours[name].state_dict()
        theirs[name].load_state_dict(sd, strict=True)
        ours[name].load_state_dict(theirs[name].state_dict(), strict=True)
        assert {k: tuple(v.shape) for k, v in theirs[name].state_dict().items()} == \
            {k: tuple(v.shape) for k, v in sd.items()}


def test_bad_input_is_clear():
    f = torch.zeros(3, 2)
    with pytest.raises(ValueError, match='integer'):
        sp.SparseConvTensor(f, torch.zeros(3, 4), [4, 4, 4], 1)
    with pytest.raises(ValueError, match='rows'):
        sp.SparseConvTensor(f, torch.zeros(2, 4, dtype=torch.int32), [4, 4, 4], 1)
    with pytest.raises(ValueError, match='out of range'):
        sp.SparseConvTensor(f, torch.tensor([[0, 0, 0, 0], [0, 4, 0, 0], [0, 1, 1, 1]], dtype=torch.int32),
                            [4, 4, 4], 1)
    with pytest.raises(ValueError, match='batch index'):
        sp.SparseConvTensor(f, torch.tensor([[1, 0, 0, 0], [0, 3, 0, 0], [0, 1, 1, 1]], dtype=torch.int32),
                            [4, 4, 4], 1)
    with pytest.raises(ValueError, match='spatial_shape'):
        sp.SparseConvTensor(f, torch.zeros(3, 4, dtype=torch.int32), [4, 4], 1)
    x = sp.SparseConvTensor(f, torch.tensor([[0, 0, 0, 0], [0, 3, 0, 0], [0, 1, 1, 1]], dtype=torch.int32),
                            [4, 4, 4], 1)
    with pytest.raises(ValueError, match='channels'):
        sp.SubMConv3d(3, 4, 3)(x)
    with pytest.raises(ValueError, match='odd'):
        sp.SubMConv3d(2, 4, 2)
    with pytest.raises(ValueError, match='too small'):
        sp.SparseConv3d(2, 4, 7, stride=1, padding=0)(x)
    with pytest.raises(ValueError, match='dtype'):
        sp.SubMConv3d(2, 4, 3).double()(x)
    with pytest.raises(ValueError, match='SparseConvTensor'):
        sp.SubMConv3d(2, 4, 3)(f)
    down = sp.SparseConv3d(2, 2, 3, stride=2, padding=1, indice_key='d')
    y = down(x)
    with pytest.raises(ValueError, match='already exists'):
        sp.SparseConv3d(2, 2, 2, stride=2, indice_key='d')(x.replace_feature(f))
    assert y.features.shape[1] == 2


def test_native_backend_is_used_on_cpu(monkeypatch):
    assert sp.backend_mode() == 'auto'
    monkeypatch.setenv('PCDET_EXT_SPARSE_BACKEND', 'bogus')
    with pytest.raises(ValueError, match='PCDET_EXT_SPARSE_BACKEND'):
        sp.backend_mode()
    from pcdet_ext.ops.sparse import spconv_backend
    monkeypatch.setenv('PCDET_EXT_SPARSE_BACKEND', 'spconv')
    assert spconv_backend.use_spconv(torch.zeros(1, 1)) is False   # never spconv's CPU path


_SPCONV_WRAPPER_CHECK = r'''
import os, sys
os.environ["OMP_NUM_THREADS"] = "1"   # spconv's CPU scatter is only reliable single-threaded
import torch
torch.set_num_threads(1)
from torch import nn
from pcdet_ext.ops import sparse as sp
from pcdet_ext.ops.sparse import spconv_backend
g = torch.Generator().manual_seed(int(sys.argv[1]))
occ = torch.rand((2, 9, 12, 10), generator=g) < 0.15
idx = occ.nonzero().int()
idx = idx[torch.randperm(len(idx), generator=g)]
feats = torch.randn(len(idx), 3, generator=g)
net = sp.SparseSequential(
    sp.SubMConv3d(3, 8, 3, padding=1, bias=False, indice_key="subm1"), nn.BatchNorm1d(8), nn.ReLU(),
    sp.SparseConv3d(8, 8, 3, stride=2, padding=1, bias=False, indice_key="spconv2"),
    sp.SubMConv3d(8, 8, 3, padding=1, bias=False, indice_key="subm2"),
    sp.SubMConv3d(8, 8, 3, padding=1, bias=False, indice_key="subm2"),
    sp.SparseInverseConv3d(8, 4, 3, indice_key="spconv2", bias=False)).eval()
with torch.no_grad():
    a = net(sp.SparseConvTensor(feats, idx, [9, 12, 10], 2))
    spconv_backend.use_spconv = lambda f: True   # route through the wrapper (spconv CPU forward)
    b = net(sp.SparseConvTensor(feats, idx, [9, 12, 10], 2))
assert isinstance(b, sp.SparseConvTensor) and "subm2" in b.indice_dict
assert not isinstance(b.indice_dict["subm2"], sp.Rulebook)
assert torch.equal(a.indices, b.indices.to(a.indices.dtype)), "inverse conv sites differ"
assert len(net.state_dict()) == 10, list(net.state_dict())   # twins stay out of the state_dict
print("MAXDIFF", float((a.features - b.features).abs().max()), float(a.features.abs().max()))
'''


def test_spconv_wrapper_matches_native_forward(tmp_path):
    """The CUDA delegation path (spconv twin modules sharing our Parameters), run through spconv's CPU
    forward in a single-threaded child process (its CPU path has no bias); no GPU here, so this checks
    the plumbing only."""
    pytest.importorskip('spconv.pytorch', reason='spconv not installed (benchmark-only dependency)')
    import os
    import subprocess
    import sys
    from pathlib import Path
    seed = int.from_bytes(os.urandom(4), 'little') % 2 ** 31
    repo = Path(__file__).resolve().parents[1]
    env = dict(os.environ, OMP_NUM_THREADS='1', PYTHONPATH=str(repo))
    out = subprocess.run([sys.executable, '-c', _SPCONV_WRAPPER_CHECK, str(seed)], capture_output=True,
                         text=True, env=env, cwd=str(repo), timeout=120)
    assert out.returncode == 0, f'seed {seed}:\n{out.stderr[-3000:]}'
    line = [ln for ln in out.stdout.splitlines() if ln.startswith('MAXDIFF')][-1]
    diff, scale = map(float, line.split()[1:])
    assert diff <= 1e-4 * max(1.0, scale), f'seed {seed}: spconv wrapper differs from native by {diff}'
