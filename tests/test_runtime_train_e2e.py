"""tools/train.py + tools/test.py on a tiny fake dataset/model: layout, checkpoints, kill -> resume
(bit-for-bit the same result as an uninterrupted run), evaluation, config typos."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

FIXTURES = Path(__file__).resolve().parent / 'fixtures'
REPO = FIXTURES.parents[1]
sys.path.insert(0, str(FIXTURES))
from runtime_fakes import fake_build_dataloader, fake_build_network  # noqa: E402

from pcdet_ext.runtime import test_tool, train_tool  # noqa: E402

CFG = str(FIXTURES / 'cfgs' / 'fake_models' / 'fake_tiny.yaml')


def _train(root, *extra):
    torch.set_num_threads(1)
    return train_tool.main(['--cfg_file', CFG, '--output_root', str(root), '--workers', '0', *extra],
                           build_dataloader_fn=fake_build_dataloader, build_network_fn=fake_build_network)


def _state(path):
    return torch.load(path, weights_only=False)


def test_train_layout_then_kill_resume_matches_uninterrupted(tmp_path):
    ref = _train(tmp_path / 'ref', '--max_ckpt_save_num', '2', '--fix_random_seed')
    out = ref['output_dir']
    assert out == tmp_path / 'ref' / 'output' / 'fake_models' / 'fake_tiny' / 'default'
    assert {p.name for p in out.iterdir()} >= {'ckpt', 'eval', 'log', 'tensorboard', 'fake_tiny.yaml'}
    assert [p.name for p in sorted((out / 'ckpt').iterdir())] == ['checkpoint_epoch_3.pth', 'checkpoint_epoch_4.pth']
    assert list((out / 'tensorboard').glob('events.out.tfevents.*'))
    log = next((out / 'log').glob('train_*.log')).read_text()
    assert 'Start training' in log and 'centre MAE' in log
    assert (out / 'eval' / 'eval_with_train' / 'epoch_4' / 'val' / 'result.pkl').is_file()
    assert ref['eval']['frames'] == [f'{i:06d}' for i in range(6)]
    ref_state = _state(out / 'ckpt' / 'checkpoint_epoch_4.pth')
    assert ref_state['epoch'] == 4 and ref_state['it'] == 16

    # same run in a subprocess, slowed down, killed (SIGKILL) after its 2nd checkpoint, then resumed
    root = tmp_path / 'killed'
    ckpt_dir = root / 'output' / 'fake_models' / 'fake_tiny' / 'default' / 'ckpt'
    cmd = [sys.executable, str(FIXTURES / 'fake_train_entry.py'), '--cfg_file', CFG, '--output_root', str(root),
           '--workers', '0', '--fix_random_seed', '--set', 'DATA_CONFIG.SLEEP_S', '0.1']
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=str(REPO))
    try:
        deadline = time.time() + 60
        while not (ckpt_dir / 'checkpoint_epoch_2.pth').exists():
            assert proc.poll() is None, 'training subprocess died early'
            assert time.time() < deadline, 'no checkpoint after 60 s'
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    done = sorted(p.name for p in ckpt_dir.glob('checkpoint_epoch_*.pth'))
    assert 'checkpoint_epoch_4.pth' not in done, 'the run finished before it was killed'
    resumed = _train(root, '--fix_random_seed')
    assert resumed['start_epoch'] >= 2
    new_state = _state(ckpt_dir / 'checkpoint_epoch_4.pth')
    assert new_state['it'] == 16
    for k, v in ref_state['model_state'].items():
        torch.testing.assert_close(new_state['model_state'][k], v, rtol=1e-5, atol=1e-6)
    assert not list(ckpt_dir.glob('.*tmp*'))

    # test.py: one checkpoint, then every checkpoint of the run
    one = test_tool.main(['--cfg_file', CFG, '--output_root', str(root), '--workers', '0', '--save_to_file',
                          '--ckpt', str(ckpt_dir / 'checkpoint_epoch_4.pth')],
                         build_dataloader_fn=fake_build_dataloader, build_network_fn=fake_build_network)
    assert one['eval_output_dir'] == ckpt_dir.parent / 'eval' / 'epoch_4' / 'val'
    assert one['results']['4']['centre_mae'] == pytest.approx(resumed['eval']['centre_mae'])
    assert len(list((one['eval_output_dir'] / 'final_result' / 'data').glob('*.txt'))) == 6
    allres = test_tool.main(['--cfg_file', CFG, '--output_root', str(root), '--workers', '0', '--eval_all',
                             '--max_waiting_mins', '0'],
                            build_dataloader_fn=fake_build_dataloader, build_network_fn=fake_build_network)
    assert sorted(allres['results']) == sorted(p.name.split('_')[-1][:-4] for p in ckpt_dir.glob('*.pth'))
    assert (allres['eval_output_dir'] / 'eval_list_val.txt').read_text().split() == sorted(
        allres['results'], key=int)


def test_config_typo_fails_before_training(tmp_path):
    bad = tmp_path / 'cfgs' / 'fake_models' / 'typo.yaml'
    bad.parent.mkdir(parents=True)
    bad.write_text(Path(CFG).read_text().replace('HIDDEN: 16', 'HIDDEN: 16\n    HIDEN_LAYERS: 2')
                   .replace('cfgs/dataset_configs/fake_dataset.yaml', str(FIXTURES / 'cfgs/dataset_configs/fake_dataset.yaml')))
    with pytest.raises(ValueError, match=r'MODEL\.HIDEN_LAYERS \(set in .*typo\.yaml\) is not read by any module'):
        _train(tmp_path, '--cfg_file', str(bad))
    assert not list((tmp_path / 'output').rglob('*.pth'))


def test_bad_set_key_is_one_line_error_before_any_output(tmp_path):
    with pytest.raises(SystemExit, match=r"error: --set OPTIMIZATION\.LRR: key 'OPTIMIZATION\.LRR' does not exist"):
        _train(tmp_path, '--set', 'OPTIMIZATION.LRR', '0.1')
    assert not (tmp_path / 'output').exists()


def test_cli_help_lists_openpcdet_flags():
    env = dict(os.environ, PYTHONPATH=str(REPO))
    for script, flags in (('train.py', ['--cfg_file', '--batch_size', '--epochs', '--workers', '--extra_tag', '--ckpt',
                                        '--pretrained_model', '--launcher', '--tcp_port', '--sync_bn',
                                        '--fix_random_seed', '--ckpt_save_interval', '--max_ckpt_save_num',
                                        '--set', '--max_waiting_mins', '--start_epoch', '--save_to_file',
                                        '--logger_iter_interval', '--device']),
                          ('test.py', ['--cfg_file', '--batch_size', '--workers', '--ckpt', '--ckpt_dir',
                                       '--eval_all', '--extra_tag', '--launcher', '--save_to_file', '--set'])):
        text = subprocess.run([sys.executable, str(REPO / 'tools' / script), '--help'], capture_output=True,
                              text=True, env=env, cwd=str(REPO), timeout=60).stdout
        missing = [f for f in flags if f not in text]
        assert not missing, f'{script} lacks {missing}'
