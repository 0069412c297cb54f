"""torchrun with 2 CPU processes (gloo): 2 DDP training steps, equal weights on both ranks,
rank-0-only checkpoints, distributed evaluation merged back into dataset order."""
import pickle
import socket
import subprocess
import sys
from pathlib import Path

import torch

FIXTURES = Path(__file__).resolve().parent / 'fixtures'
REPO = FIXTURES.parents[1]
CFG = str(FIXTURES / 'cfgs' / 'fake_models' / 'fake_tiny.yaml')


def _free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def test_torchrun_two_cpu_processes(tmp_path):
    cmd = [sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node', '2', '--master_addr', '127.0.0.1',
           '--master_port', str(_free_port()), str(FIXTURES / 'fake_train_entry.py'), '--launcher', 'pytorch',
           '--device', 'cpu', '--cfg_file', CFG, '--output_root', str(tmp_path), '--workers', '0',
           '--epochs', '1', '--batch_size', '4']
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=str(REPO), timeout=120,
                          env={**__import__('os').environ, 'OMP_NUM_THREADS': '1'})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = tmp_path / 'output' / 'fake_models' / 'fake_tiny' / 'default'
    w0 = torch.load(out / 'final_rank0.pt')
    w1 = torch.load(out / 'final_rank1.pt')
    ckpt = torch.load(out / 'ckpt' / 'checkpoint_epoch_1.pth', weights_only=False)
    # 8 frames, 2 per process per step, 2 processes -> 2 steps
    assert ckpt['it'] == 2 and int(w0['global_step']) == 2 and int(w1['global_step']) == 2
    for k in w0:
        assert torch.equal(w0[k], w1[k]), f'ranks disagree on {k}'
        assert torch.equal(w0[k], ckpt['model_state'][k])
    assert sorted(p.name for p in (out / 'ckpt').iterdir()) == ['checkpoint_epoch_1.pth']
    assert len(list((out / 'log').glob('train_*.log'))) == 1   # rank 0 only
    det = pickle.load(open(out / 'eval' / 'eval_with_train' / 'epoch_1' / 'val' / 'result.pkl', 'rb'))
    assert [a['frame_id'] for a in det] == [f'{i:06d}' for i in range(6)]


class _FakeDist:
    """Records what dist.destroy asks of torch.distributed, in order."""

    def __init__(self, backend):
        self.backend, self.calls, self.up = backend, [], True

    def is_available(self):
        return True

    def is_initialized(self):
        return self.up

    def get_backend(self):
        return self.backend

    def barrier(self):
        self.calls.append('barrier')

    def destroy_process_group(self):
        self.calls.append('destroy')
        self.up = False


def _destroy_calls(monkeypatch, backend, holders, sync):
    from pcdet_ext.runtime import dist
    fake = _FakeDist(backend)
    monkeypatch.setattr(dist, 'tdist', fake)
    monkeypatch.setattr(dist, '_HOLDERS', holders)
    monkeypatch.setattr(dist.time, 'sleep', lambda s: fake.calls.append(f'sleep {s}'))
    for _ in range(holders):
        dist.destroy(sync=sync)
    return fake.calls


def test_destroy_meets_then_drains_gloo_then_ends_the_group_once(monkeypatch):
    from pcdet_ext.runtime.dist import _GLOO_DRAIN_S
    # nested holders (a driver calling the train tool): only the outermost let-go ends the group
    assert _destroy_calls(monkeypatch, 'gloo', holders=2, sync=True) == ['barrier', f'sleep {_GLOO_DRAIN_S}', 'destroy']
    assert _GLOO_DRAIN_S > 0
    # nccl has no gloo worker threads to drain
    assert _destroy_calls(monkeypatch, 'nccl', holders=1, sync=True) == ['barrier', 'destroy']
    # an error unwinding on one rank: the others may never reach a barrier, so none is awaited
    assert _destroy_calls(monkeypatch, 'gloo', holders=1, sync=False) == ['destroy']
