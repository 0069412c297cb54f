"""ALPI pipeline end to end on a tiny synthetic set: steps, refinement, export, resume, --step,
the command-line tool, and bad input (skipped, counted, the run goes on)."""
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from pcdet_ext.alpi.pipeline import ALPIPipeline
from pcdet_ext.config import ConfigDict

from _synthetic_helpers import synthetic_root
from _tools_helpers import load_tool

pytestmark = pytest.mark.usefixtures('one_torch_thread')


def tiny_cfg(root, steps=1, refine=True, **data):
    dc = {'DATASET': 'ALPIFrustumDataset', 'DATA_PATH': str(root), 'DATA_SPLIT': {'train': 'train', 'test': 'train'},
          'FRUSTUM': {'NUM_POINTS': 64}, 'PROXY': {'RATIO': 30}, 'PROGRESS': False,
          'DEPTH_HINT': {'MODE': 'lidar'}}  # as the shipped configs: the leak test covers the LiDAR hint
    dc.update(data)
    return ConfigDict({
        'CLASS_NAMES': ['Car', 'Pedestrian', 'Cyclist'], 'DATA_CONFIG': dc,
        'MODEL': {'NAME': 'ALPIAnnotator', 'DEPTH_RANGE': [1.0, 61.0], 'ANCHOR_STRIDE': 2.0, 'SLICE_WIDTH': 4.0,
                  'POINT_MLP': [16, 32], 'DEPTH_CONV': [32, 32], 'NUM_HEADING_BIN': 8,
                  'LOSS_CONFIG': {'WEIGHTS': {'depth_hint': 1.0}, 'PROJ_2D_GRAD': {'Car': 'centre_heading'}}},
        'OPTIMIZATION': {'BATCH_SIZE_PER_GPU': 16, 'NUM_EPOCHS': 1, 'OPTIMIZER': 'adam_onecycle', 'LR': 0.003},
        'ALPI': {'STEPS': steps, 'SEED': 0,
                 # keep every pseudo-label so step 1 really trains on them
                 'PSEUDO_FILTER': {'SCORE_THRESH': 0.0, 'IOU_2D_THRESH': 0.0, 'DEPTH_RANGE': [0.5, 80.0]},
                 'REFINE': {'ENABLED': refine, 'EPOCHS': 1, 'WINDOW': 3.0}}})


@pytest.fixture(scope='module')
def synth_root(tmp_path_factory):
    return synthetic_root(tmp_path_factory, 'alpi_pipe', num_frames=3, seed=5)


def copy_dataset(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def test_end_to_end_steps_refine_export(synth_root, tmp_path):
    out = tmp_path / 'out'
    reports = ALPIPipeline(tiny_cfg(synth_root), out, progress=False).run()
    for k in ('step_0', 'step_1', 'refine'):
        d = out / k
        assert (d / 'done.json').is_file() and (d / 'report.json').is_file()
        assert list((d / 'ckpt').glob('checkpoint_epoch_*.pth'))
        rep = json.loads((d / 'report.json').read_text())
        assert 'Car' in rep['ap'] and 'quality' in rep  # synthetic labels carry 3D GT: evaluated
    assert reports[1]['pseudo_labels_in'] > 0  # step 1 trained on step 0's pseudo-labels
    # every accepted 2D box of the input has one exported line, with its 2D box and a score
    ids = (synth_root / 'ImageSets' / 'train.txt').read_text().split()
    n_lines = 0
    for fid in ids:
        lines = (out / 'label_2' / f'{fid}.txt').read_text().splitlines()
        n_lines += len(lines)
        for line in lines:
            assert len(line.split()) == 16
    assert n_lines == reports['exported_lines'] > 0
    # resume: a second run finds every step done and changes nothing
    before = (out / 'label_2' / f'{ids[0]}.txt').read_text()
    ALPIPipeline(tiny_cfg(synth_root), out, progress=False).run()
    assert (out / 'label_2' / f'{ids[0]}.txt').read_text() == before


def test_single_step_form_and_order(synth_root, tmp_path):
    pipe = ALPIPipeline(tiny_cfg(synth_root, refine=False), tmp_path / 'o', progress=False)
    with pytest.raises(RuntimeError, match='needs step 0'):
        pipe.run(only_step=1)
    pipe.run(only_step=0)
    assert (tmp_path / 'o' / 'step_0' / 'done.json').is_file()
    assert not (tmp_path / 'o' / 'step_1').exists()


def _scramble_3d(label_dir: Path, mode: str, seed=0):
    rng = np.random.default_rng(seed)
    for path in sorted(label_dir.glob('*.txt')):
        out = []
        for line in path.read_text().splitlines():
            t = line.split()
            if mode == 'random':
                t[3] = f'{rng.uniform(-3, 3):.2f}'
                t[8:15] = [f'{v:.2f}' for v in rng.uniform(-50, 50, 7)]
            else:  # what users without 3D labels have
                t[3] = '-10'
                t[8:15] = ['-1', '-1', '-1', '-1000', '-1000', '-1000', '-10']
            out.append(' '.join(t))
        path.write_text('\n'.join(out) + '\n')


def test_bad_input_is_skipped_counted_and_the_run_goes_on(synth_root, tmp_path, caplog):
    root = copy_dataset(synth_root, tmp_path / 'bad')
    ids = (root / 'ImageSets' / 'train.txt').read_text().split()
    lab = root / 'training' / 'label_2' / f'{ids[0]}.txt'
    lab.write_text(lab.read_text() +
                   'Car 0.00 0 0 2000 100 2100 180 -1 -1 -1 -1000 -1000 -1000 -10\n'   # outside the image
                   'Car 0.00 0 0 300 150 300 200 -1 -1 -1 -1000 -1000 -1000 -10\n'     # degenerate
                   'Tram 0.00 0 0 300 150 400 200 -1 -1 -1 -1000 -1000 -1000 -10\n'    # known, not selected
                   'Bus 0.00 0 0 300 150 400 200 -1 -1 -1 -1000 -1000 -1000 -10\n'     # unknown class
                   'Car 0.00 zero 0 300 150 400 200\n')                                # malformed
    # a frame whose scan lies behind the camera: every frustum is empty
    velo = root / 'training' / 'velodyne' / f'{ids[1]}.bin'
    pts = np.fromfile(velo, dtype=np.float32).reshape(-1, 4)
    pts[:, 0] = -np.abs(pts[:, 0]) - 1
    pts.tofile(velo)
    pipe = ALPIPipeline(tiny_cfg(root, steps=0, refine=False), tmp_path / 'o', progress=False)
    pipe.run()
    rep = pipe.label_set().report
    for reason in ('outside_image', 'degenerate_box', 'unknown_class', 'malformed', 'empty_frustum', 'other_class'):
        assert rep.skipped[reason] >= 1, (reason, rep.skipped)
    # the skipped-but-valid 2D boxes of the empty frame are still exported, with unknown 3D values
    lines = (tmp_path / 'o' / 'label_2' / f'{ids[1]}.txt').read_text().splitlines()
    assert lines and all(line.split()[13] == '-1000.00' for line in lines)
    assert '0 2000' not in (tmp_path / 'o' / 'label_2' / f'{ids[0]}.txt').read_text()


def test_detections_file_with_bad_lines(synth_root, tmp_path):
    ids = (synth_root / 'ImageSets' / 'train.txt').read_text().split()
    dets = tmp_path / 'dets.txt'
    good = []
    for fid in ids:
        for line in (synth_root / 'training' / 'label_2' / f'{fid}.txt').read_text().splitlines():
            t = line.split()
            if t[0] in ('Car', 'Pedestrian', 'Cyclist'):
                good.append(f'{int(fid)} {t[0]} {t[4]} {t[5]} {t[6]} {t[7]} 0.9')
    dets.write_text('# frame class x1 y1 x2 y2 score\n' + '\n'.join(good) +
                    '\n000000 Car 10 20 30\n000000 Car a b c d 0.5\n999999 Car 100 100 200 200 0.9\n')
    from pcdet_ext.alpi.dataset import ALPIFrustumDataset
    cfg = tiny_cfg(synth_root, DETECTIONS_FILE=str(dets))
    ds = ALPIFrustumDataset(cfg.DATA_CONFIG, cfg.CLASS_NAMES, training=False)
    assert ds.report.skipped['malformed'] == 2
    assert ds.report.skipped['unknown_frame'] == 1
    assert len(ds) > 0 and all(ds.samples[i].score == pytest.approx(0.9) for i in range(len(ds.samples)))


def test_command_line_tool(synth_root, tmp_path):
    import yaml
    from pcdet_ext.config import to_plain
    cfg = tmp_path / 'tiny.yaml'
    cfg.write_text(yaml.safe_dump(to_plain(tiny_cfg('unused', steps=0, refine=False))))
    tool = load_tool('alpi_label')
    with pytest.raises(SystemExit, match='not a directory'):
        tool.main(['--data_path', str(tmp_path / 'missing'), '--out', str(tmp_path / 'x')])
    tool.main(['--data_path', str(synth_root), '--split', 'train', '--ratio', '20', '--steps', '0',
               '--out', str(tmp_path / 'o'), '--cfg_file', str(cfg)])
    summary = json.loads((tmp_path / 'o' / 'summary.json').read_text())
    assert summary['exported_lines'] > 0
    assert list((tmp_path / 'o' / 'label_2').glob('*.txt'))
    assert (tmp_path / 'o' / 'step_0' / 'report.txt').is_file()
