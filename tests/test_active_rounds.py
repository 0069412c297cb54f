"""tools/al_round.py end to end on a tiny synthetic pool (12 training frames, 4 val frames, a small
PointPillars, 1 epoch): artifacts and budget accounting, entropy ranking, kill-and-resume,
--force, leak test at the round level (with CPSP + CAL), bad input."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from pcdet_ext.active.rounds import ALInputError, RoundOptions, run_active_learning
from pcdet_ext.datasets.kitti.kitti_label_io import read_label_file

from _tools_helpers import load_tool

pytestmark = pytest.mark.usefixtures('one_torch_thread')

REPO = Path(__file__).resolve().parents[1]
CLASSES = ['Car', 'Pedestrian', 'Cyclist']
BUDGET = 15

# the tracked tiny PointPillars (seconds per round), pointed at this module's data
TINY_CFG = """_BASE_CONFIG_: {repo}/cfgs/sssal/pointpillar_tiny.yaml
DATA_CONFIG:
    DATA_PATH: {root}
ACTIVE_LEARNING:
    INITIAL_BOXES: 20
    MIN_TRAIN_ITERS: 0
"""


def _write_cfg(folder: Path, root: Path, name='tiny') -> str:
    f = folder / 'cfgs' / 'al_tiny' / f'{name}.yaml'
    f.parent.mkdir(parents=True, exist_ok=True)
    f.write_text(TINY_CFG.format(repo=REPO, root=root))
    return str(f)


@pytest.fixture(scope='module')
def data(tmp_path_factory):
    from pcdet_ext.datasets.kitti.kitti_infos import create_kitti_infos
    from pcdet_ext.datasets.synthetic import generate_dataset
    base = tmp_path_factory.mktemp('al_rounds')
    root = base / 'data'
    generate_dataset(root, num_frames=16, seed=3, workers=1, progress=False, write_images=False)
    create_kitti_infos(root, workers=1, progress=False, log=lambda *a: None)
    (root / 'ImageSets' / 'empty.txt').write_text('')
    return base, root, _write_cfg(base, root)


def _opts(cfg, out, **kw):
    kw.setdefault('budget_boxes', BUDGET)
    return RoundOptions(cfg_file=cfg, output_root=str(out), workers=0, device='cpu', **kw)


def _round_dir(out, k, tag='default', name='tiny'):
    return Path(out) / 'output' / 'al_tiny' / name / tag / f'round_{k}'


def _lines(p):
    return [x for x in Path(p).read_text().split('\n') if x]


def _true_boxes(root, fid):
    names = read_label_file(root / 'training' / 'label_2' / f'{fid}.txt')['name']
    return int(sum(n in CLASSES for n in names))


@pytest.fixture(scope='module')
def ref_random(data):
    base, root, cfg = data
    out = base / 'ref_random'
    run_active_learning(_opts(cfg, out, strategy='random', rounds=2))
    return out


@pytest.fixture(scope='module')
def ref_sssal(data):
    base, root, cfg = data
    out = base / 'ref_sssal'
    run_active_learning(_opts(cfg, out, strategy='cal', cpsp=True, final_round=True))
    return out


def test_random_rounds_artifacts_and_budget(data, ref_random):
    _, root, _ = data
    pool = _lines(root / 'ImageSets' / 'train.txt')
    for k in (0, 1):
        rd = _round_dir(ref_random, k)
        start_lab = _lines(rd / 'start' / 'labelled.txt')
        lab, unl = _lines(rd / 'labelled.txt'), _lines(rd / 'unlabelled.txt')
        assert len(set(lab)) == len(lab) and sorted(lab + unl) == sorted(pool)
        assert lab[:len(start_lab)] == start_lab
        sel = json.loads((rd / 'selection.json').read_text())
        assert sel['strategy'] == 'Random' and sorted(sel['scores']) == sorted(set(pool) - set(start_lab))
        ann = json.loads((rd / 'annotation.json').read_text())
        new = lab[len(start_lab):]
        assert ann['frame_ids'] == new == (sel['frame_ids'] + sel['reserve'])[:len(new)]  # ranked order
        # true boxes of the chosen classes, counted from the label files: over by < the last frame's boxes
        true = [_true_boxes(root, f) for f in new]
        assert ann['num_boxes'] == sum(true) and sum(true) >= BUDGET and sum(true) - true[-1] < BUDGET
        report = json.loads((rd / 'pool.json').read_text())
        assert report['labelled_boxes'] == sum(_true_boxes(root, f) for f in lab)
        assert list(rd.glob('train/ckpt/checkpoint_epoch_1.pth'))
        ev = json.loads((rd / 'eval.json').read_text())
        assert 'mAP' in ev and 'Car_3d/moderate_R40' in ev['result']
        assert (rd / 'al_curve.png').read_bytes()[:4] == b'\x89PNG'
        assert (rd / 'done' / 'round.json').is_file()
    r0, r1 = _round_dir(ref_random, 0), _round_dir(ref_random, 1)
    assert _lines(r1 / 'start' / 'labelled.txt') == _lines(r0 / 'labelled.txt')
    curve = json.loads((_round_dir(ref_random, 0).parent / 'al_curve.json').read_text())['points']
    assert [p['round'] for p in curve] == [0, 1]
    assert curve[0]['labelled_boxes'] >= 20 and curve[1]['labelled_boxes'] == curve[0]['next_round_labelled_boxes']
    # round 0's random draw tries to cover every class (INITIAL_MIN_PER_CLASS 1) for at most
    # INITIAL_BOXES more boxes; in this pool the 4 cyclists sit in frames it does not reach
    names = [n for f in _lines(r0 / 'start' / 'labelled.txt')
             for n in read_label_file(root / 'training' / 'label_2' / f'{f}.txt')['name']]
    marker = json.loads((r0 / 'done' / 'pool.json').read_text())
    assert marker['initial_uncovered'] == [c for c in CLASSES if c not in names] == ['Cyclist']
    assert marker['initial_extra_boxes'] >= 20 and marker['labelled_boxes'] - marker['initial_extra_boxes'] >= 20
    assert json.loads((r0 / 'settings.json').read_text())['initial_min_per_class'] == 1


def test_entropy_round_ranks_by_entropy(data, monkeypatch):
    base, root, cfg = data
    # a relative --output_root (as typed on the command line): the round's data paths must not be
    # read relative to DATA_PATH
    monkeypatch.chdir(base)
    run_active_learning(_opts(cfg, 'entropy', strategy='entropy'))
    rd = _round_dir(base / 'entropy', 0)
    sel = json.loads((rd / 'selection.json').read_text())
    from pcdet_ext.active import load_summaries
    from pcdet_ext.active.strategies import binary_entropy
    summ = load_summaries(rd / 'summaries.pkl')
    assert any(s.num_boxes for s in summ.values()), 'the tiny model predicted no box at all'
    ent = {f: float(binary_entropy(s.scores).mean()) if s.num_boxes else 0.0 for f, s in summ.items()}
    ranked = sel['frame_ids'] + sel['reserve']
    assert [round(sel['scores'][f], 6) for f in ranked] == sorted((round(ent[f], 6) for f in ranked), reverse=True)
    assert len(set(ent.values())) > 1


def test_kill_and_resume_matches_uninterrupted(data, ref_random):
    base, root, cfg = data
    out = base / 'killed'
    rd = _round_dir(out, 0)
    cmd = [sys.executable, str(REPO / 'tools' / 'al_round.py'), '--cfg_file', cfg, '--strategy', 'random',
           '--budget_boxes', str(BUDGET), '--output_root', str(out), '--workers', '0', '--device', 'cpu']
    env = dict(os.environ, OMP_NUM_THREADS='1')
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=str(REPO), env=env)
    try:
        deadline = time.time() + 90
        while not (rd / 'done' / 'train.json').exists():  # killed while scoring the pool
            assert proc.poll() is None, 'al_round subprocess died early'
            assert time.time() < deadline, 'training did not finish in 90 s'
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert not (rd / 'done' / 'round.json').exists(), 'the round finished before it was killed'
    ckpt = rd / 'train' / 'ckpt' / 'checkpoint_epoch_1.pth'
    mtime = ckpt.stat().st_mtime
    run_active_learning(_opts(cfg, out, strategy='random'))
    assert ckpt.stat().st_mtime == mtime, 'the finished training stage was redone'
    ref = _round_dir(ref_random, 0)
    for name in ('labelled.txt', 'unlabelled.txt', 'start/labelled.txt'):
        assert (rd / name).read_text() == (ref / name).read_text(), name
    lab = _lines(rd / 'labelled.txt')
    assert len(lab) == len(set(lab))
    for name in ('pool.json', 'annotation.json'):
        assert json.loads((rd / name).read_text()) == json.loads((ref / name).read_text())
    sel, ref_sel = (json.loads((d / 'selection.json').read_text()) for d in (rd, ref))
    assert sel['frame_ids'] + sel['reserve'] == ref_sel['frame_ids'] + ref_sel['reserve']
    assert not [p for p in rd.rglob('*.tmp*')]


def test_finished_round_needs_force(data, ref_random):
    base, root, cfg = data
    out = base / 'force'
    shutil.copytree(ref_random, out)
    rd = _round_dir(out, 0)
    sel_file = rd / 'selection.json'
    before = sel_file.read_text(), sel_file.stat().st_mtime
    run_active_learning(_opts(cfg, out, strategy='random', rounds=2))  # same settings: nothing to do
    assert (sel_file.read_text(), sel_file.stat().st_mtime) == before
    with pytest.raises(ALInputError, match='refusing to overwrite'):
        run_active_learning(_opts(cfg, out, strategy='entropy'))
    assert (sel_file.read_text(), sel_file.stat().st_mtime) == before
    assert _round_dir(out, 1).is_dir()
    run_active_learning(_opts(cfg, out, strategy='entropy', force=True))
    assert json.loads(sel_file.read_text())['strategy'] == 'Entropy'
    assert not _round_dir(out, 1).exists(), '--force on round 0 must drop the rounds built on it'
    # a done stage whose checkpoint vanished: a clear error, not a deep traceback
    (rd / 'done' / 'round.json').unlink()
    (rd / 'done' / 'eval.json').unlink()
    (rd / 'train' / 'ckpt' / 'checkpoint_epoch_1.pth').unlink()
    with pytest.raises(ALInputError, match='checkpoint .* is missing; use --force'):
        run_active_learning(_opts(cfg, out, strategy='entropy'))


def test_sssal_recipe_and_leak(data, ref_sssal):
    """CAL over (labelled-only, CPSP) models + final round; then the same round on a copy of the
    dataset where every frame that stays unlabelled has no label file: identical selection and banks."""
    base, root, cfg = data
    r0, r1 = _round_dir(ref_sssal, 0), _round_dir(ref_sssal, 1)
    sel = json.loads((r0 / 'selection.json').read_text())
    assert sel['strategy'] == 'CAL' and sel['info']['passes']
    # CAL's class quotas fill the gaps of the round's labelled set, from its known labels
    start = json.loads((r0 / 'start' / 'pool.json').read_text())['labelled_boxes_per_class']
    assert sel['info']['quota_base'] == 'labelled' and sum(sel['info']['quotas']) == pytest.approx(BUDGET)
    gap = np.maximum((sum(start.values()) + BUDGET) / 3 - np.array([start[c] for c in CLASSES]), 0)
    np.testing.assert_allclose(sel['info']['quotas'], gap * BUDGET / gap.sum())
    assert (r0 / 'cpsp' / 'cpsp_banks.pkl').is_file() and (r0 / 'cpsp' / 'banks_epoch_1.pkl').is_file()
    assert json.loads((r1 / 'settings.json').read_text())['select'] is False
    assert not (r1 / 'selection.json').exists() and (r1 / 'eval.json').is_file()
    assert _lines(r1 / 'labelled.txt') == _lines(r0 / 'labelled.txt')
    assert json.loads((r0 / 'eval.json').read_text())['ckpt'].endswith('cpsp/ckpt/checkpoint_epoch_2.pth')

    leak_root = base / 'data_leak'
    # without the dataset's full-pool infos and gt database either (they hold every frame's labels)
    shutil.copytree(root, leak_root,
                    ignore=shutil.ignore_patterns('gt_database', 'kitti_dbinfos_*', 'kitti_infos_train*'))
    never = _lines(r0 / 'unlabelled.txt')
    assert never
    for f in never:
        (leak_root / 'training' / 'label_2' / f'{f}.txt').unlink()
    leak_cfg = _write_cfg(base / 'leak', leak_root)
    out = base / 'leak_out'
    run_active_learning(_opts(leak_cfg, out, strategy='cal', cpsp=True))
    lr0 = _round_dir(out, 0)
    assert json.loads((lr0 / 'selection.json').read_text()) == sel
    for name in ('labelled.txt', 'unlabelled.txt', 'pool.json'):
        assert (lr0 / name).read_text() == (r0 / name).read_text()
    from pcdet_ext.active import CPSPBanks
    a, b = (CPSPBanks.load(d / 'cpsp' / 'cpsp_banks.pkl') for d in (r0, lr0))
    assert a.counts() == b.counts()
    assert json.loads((lr0 / 'eval.json').read_text())['mAP'] == json.loads((r0 / 'eval.json').read_text())['mAP']


def test_frame_summary_accepts_a_frame_without_boxes():
    """An untrained model often predicts nothing; the hook then hands over empty arrays."""
    from pcdet_ext.active import FrameSummary
    s = FrameSummary('000000', np.zeros((0, 7)), np.zeros(0), np.zeros(0), np.zeros(0),
                     box_features=np.zeros(0), frame_feature=np.zeros(8), box_num_points=np.zeros(0))
    assert s.num_boxes == 0 and s.cls_probs.shape == (0, 0) and s.box_features.shape == (0, 0)
    s = FrameSummary('000000', np.zeros((0, 7)), np.zeros(0), np.zeros(0), np.zeros((0, 3)),
                     box_features=np.zeros((0, 16)))
    assert s.cls_probs.shape == (0, 3) and s.box_features.shape == (0, 16)


def _cli():
    return load_tool('al_round')


@pytest.mark.parametrize('extra, message', [
    (['--strategy', 'no_such_strategy'], 'unknown query strategy'),
    (['--strategy', 'random', '--budget_boxes', '0'], 'smaller than one frame'),
    (['--strategy', 'random', '--pretrained_model', 'missing.pth'], 'does not exist'),
    (['--strategy', 'random', '--round', '3'], 'round 2 is not finished'),
    (['--strategy', 'random', '--set', 'DATA_CONFIG.DATA_SPLIT.train', 'empty'], 'the pool is empty'),
    (['--recipe', 'sssal', '--strategy', 'entropy'], 'uses --strategy cal'),
    (['--strategy', 'random', '--set', 'ACTIVE_LEARNING.MIN_TRAIN_ITERS', '-5'], 'MIN_TRAIN_ITERS must be'),
    (['--strategy', 'cal', '--cpsp', '--set', 'ACTIVE_LEARNING.CPSP.MIN_HIGH_THRESH', '1.5'],
     'MIN_HIGH_THRESH must be a number in [0, 1]'),
    (['--strategy', 'cal', '--cpsp', '--set', 'ACTIVE_LEARNING.CPSP.MAX_CANDIDATES', '-1'],
     'MAX_CANDIDATES must be an integer >= 0'),
    (['--strategy', 'cal', '--cpsp', '--set', 'ACTIVE_LEARNING.CPSP.GENERATIONS', '0'],
     'GENERATIONS must be an integer >= 1'),
    (['--strategy', 'cal', '--cpsp', '--set', 'ACTIVE_LEARNING.CPSP.OBJECT_ROTATION', '4.0'],
     'OBJECT_ROTATION must be an angle in [0, pi]'),
    (['--strategy', 'cal', '--cpsp', '--set', 'ACTIVE_LEARNING.CPSP.BACKGROUND_THRESH', '1.5'],
     'BACKGROUND_THRESH must be null (LOW_THRESH) or a number in [0, 1]'),
    (['--strategy', 'cal', '--cpsp', '--set', 'ACTIVE_LEARNING.CPSP.BACKGROUND_MARGIN', '-0.5'],
     'BACKGROUND_MARGIN must be a number of metres >= 0'),
    (['--strategy', 'cal', '--cpsp', '--set', 'ACTIVE_LEARNING.CPSP.NEGATIVE_MAX_THRESH', '-0.1'],
     'NEGATIVE_MAX_THRESH must be null (the 2-means boundary) or a number in [0, 1]'),
    (['--strategy', 'random', '--set', 'ACTIVE_LEARNING.INITIAL_MIN_PER_CLASS', '-1'],
     'INITIAL_MIN_PER_CLASS) must be an integer >= 0'),
    (['--strategy', 'random', '--initial_min_per_class', '-2'], 'INITIAL_MIN_PER_CLASS) must be an integer >= 0'),
    (['--strategy', 'random', '--set', 'ACTIVE_LEARNING.MIN_TRAIN_ITER', '5'], "'ACTIVE_LEARNING.MIN_TRAIN_ITER' does not exist"),
])
def test_bad_input_fails_before_any_work(data, tmp_path, capsys, extra, message):
    _, _, cfg = data
    argv = ['--cfg_file', cfg, '--budget_boxes', '5', '--output_root', str(tmp_path), '--device', 'cpu', *extra]
    if '--budget_boxes' in extra:
        argv = argv[:2] + argv[4:]
    assert _cli().main(argv) == 2
    assert message in capsys.readouterr().err
    assert not list(tmp_path.rglob('round_*'))


def test_cpsp_teacher_scores_below_the_model_threshold_only_when_needed(data, tmp_path):
    """The teacher scores the pool at the lowest candidate score the banks use (LOW_THRESH or
    BACKGROUND_THRESH), and only when that is below the model's SCORE_THRESH."""
    from pcdet_ext.active.rounds import ActiveLearningRun
    _, _, cfg = data

    def thresh(*sets):
        return ActiveLearningRun(_opts(cfg, tmp_path, strategy='cal', cpsp=True, set_cfgs=list(sets))).cpsp_score_thresh()
    assert thresh() is None                                                   # the tiny model keeps every box (0.0)
    assert thresh('MODEL.POST_PROCESSING.SCORE_THRESH', '0.1') == 0.05        # BACKGROUND_THRESH 0.05
    assert thresh('MODEL.POST_PROCESSING.SCORE_THRESH', '0.1', 'ACTIVE_LEARNING.CPSP.BACKGROUND_THRESH', '0.5') is None
    assert thresh('MODEL.POST_PROCESSING.SCORE_THRESH', '0.3', 'ACTIVE_LEARNING.CPSP.BACKGROUND_THRESH', '0.5') == 0.1


def test_min_train_iters_raises_epochs_of_small_labelled_sets(data, tmp_path):
    """A round trains at least MIN_TRAIN_ITERS iterations; larger sets keep their epochs."""
    from pcdet_ext.active.rounds import ActiveLearningRun
    _, _, cfg = data
    off = ActiveLearningRun(_opts(cfg, tmp_path, strategy='random', epochs=2))
    assert off.round_epochs(3) == 2                       # MIN_TRAIN_ITERS 0: --epochs as given
    run = ActiveLearningRun(_opts(cfg, tmp_path, strategy='random', epochs=2,
                                  set_cfgs=['ACTIVE_LEARNING.MIN_TRAIN_ITERS', '30']))
    assert run.round_epochs(3) == 15                      # 2 batches of 2 per epoch -> 15 epochs
    assert run.round_epochs(10) == 6                      # 5 batches per epoch
    assert run.round_epochs(200) == 2                     # 100 batches > 30: unchanged


def test_min_train_iters_raises_cpsp_epochs(data, tmp_path):
    """CPSP trains at least MIN_TRAIN_ITERS iterations over NUM_SCENES pseudo-scenes per epoch, from
    --cpsp_epochs or CPSP.EPOCHS; more scenes per epoch need fewer epochs."""
    from pcdet_ext.active.rounds import ActiveLearningRun
    _, _, cfg = data
    off = ActiveLearningRun(_opts(cfg, tmp_path, strategy='cal', cpsp=True))
    assert off.cpsp_epochs() == 2                         # MIN_TRAIN_ITERS 0: CPSP.EPOCHS as given
    assert ActiveLearningRun(_opts(cfg, tmp_path, strategy='cal', cpsp=True, cpsp_epochs=3)).cpsp_epochs() == 3
    raised = ['ACTIVE_LEARNING.MIN_TRAIN_ITERS', '30']
    run = ActiveLearningRun(_opts(cfg, tmp_path, strategy='cal', cpsp=True, set_cfgs=raised))
    assert run.cpsp_epochs() == 15                        # 4 scenes at batch 2: 2 iterations an epoch
    run = ActiveLearningRun(_opts(cfg, tmp_path, strategy='cal', cpsp=True, cpsp_epochs=20, set_cfgs=raised))
    assert run.cpsp_epochs() == 20                        # 40 iterations >= 30: unchanged
    run = ActiveLearningRun(_opts(cfg, tmp_path, strategy='cal', cpsp=True,
                                  set_cfgs=raised + ['ACTIVE_LEARNING.CPSP.NUM_SCENES', '20']))
    assert run.cpsp_epochs() == 3                         # 10 iterations an epoch


def test_initial_from_adopts_round0_without_training(data, ref_random):
    """--initial_from: round 0 reuses another run's initial set, labelled data and model (no second
    training), then selects with its own strategy; a run with another seed is refused."""
    base, root, cfg = data
    src = _round_dir(ref_random, 0)
    out = base / 'adopt'
    run_active_learning(_opts(cfg, out, strategy='entropy', initial_from=str(src.parent)))
    rd = _round_dir(out, 0)
    assert _lines(rd / 'start' / 'labelled.txt') == _lines(src / 'start' / 'labelled.txt')
    marker = json.loads((rd / 'done' / 'train.json').read_text())
    assert marker['adopted_from'] == str(src)
    ckpt = Path(marker['ckpt'])
    assert ckpt.parent == rd / 'train' / 'ckpt'
    assert ckpt.read_bytes() == (src / 'train' / 'ckpt' / ckpt.name).read_bytes()
    trained = list(rd.glob('train/log/train_*.log')) + list(rd.glob('train/tensorboard'))
    assert list(src.glob('train/log/train_*.log')) and not trained, 'round 0 was trained again'
    # same model: the round-0 evaluation is the source's, the selection is entropy's own
    assert json.loads((rd / 'eval.json').read_text())['mAP'] == json.loads((src / 'eval.json').read_text())['mAP']
    assert json.loads((rd / 'selection.json').read_text())['strategy'] == 'Entropy'
    assert json.loads((rd / 'settings.json').read_text())['initial_from'] == str(src.parent)
    with pytest.raises(ALInputError, match=r"differs in \['seed'\]"):
        run_active_learning(_opts(cfg, base / 'adopt_seed1', strategy='entropy', seed=1, initial_from=str(src.parent)))
    with pytest.raises(ALInputError, match='no round 0 with finished stages'):
        run_active_learning(_opts(cfg, base / 'adopt_none', strategy='entropy', initial_from=str(base / 'nowhere')))
    assert not (base / 'adopt_seed1').exists() or not list((base / 'adopt_seed1').rglob('round_*'))


def test_config_hash_leaves_out_the_cpsp_section(data):
    from pcdet_ext.active.round_options import config_hash
    from pcdet_ext.runtime.common import load_config
    _, _, cfg = data

    def h(*sets):
        import argparse
        return config_hash(load_config(argparse.Namespace(cfg_file=cfg, set_cfgs=list(sets) or None,
                                                          output_root=None, extra_tag='x')))
    base = h()
    assert h('ACTIVE_LEARNING.CPSP.REFRESH_INTERVAL', '0') == base
    assert h('ACTIVE_LEARNING.MIN_TRAIN_ITERS', '7') != base
    assert h('OPTIMIZATION.LR', '0.5') != base


def test_redo_cpsp_keeps_model_a_and_redoes_the_cpsp_stages(data, ref_sssal):
    """A CPSP key changed after a finished S-SSAL round: refused with a hint; --redo_cpsp keeps
    the round's initial set and labelled training (model A, byte for byte, not retrained) and
    redoes banks, CPSP training, selection and evaluation under the new key; later rounds go."""
    base, root, cfg = data
    out = base / 'redo'
    shutil.copytree(ref_sssal, out)
    r0 = _round_dir(out, 0)
    ckpt_a = Path(json.loads((r0 / 'done' / 'train.json').read_text())['ckpt'])
    a_before = ckpt_a.read_bytes(), ckpt_a.stat().st_mtime
    start = _lines(r0 / 'start' / 'labelled.txt')
    assert (r0 / 'cpsp' / 'banks_epoch_1.pkl').is_file()  # the reference refreshes every epoch
    no_refresh = ['ACTIVE_LEARNING.CPSP.REFRESH_INTERVAL', '0']
    with pytest.raises(ALInputError, match=r"different settings \['cpsp_options'\].*--redo_cpsp"):
        run_active_learning(_opts(cfg, out, strategy='cal', cpsp=True, set_cfgs=no_refresh))
    with pytest.raises(ALInputError, match=r"differs in \['strategy', 'strategy_options'\], not only"):
        run_active_learning(_opts(cfg, out, strategy='entropy', cpsp=True, set_cfgs=no_refresh, redo_cpsp=True))
    run_active_learning(_opts(cfg, out, strategy='cal', cpsp=True, set_cfgs=no_refresh, redo_cpsp=True))
    assert (ckpt_a.read_bytes(), ckpt_a.stat().st_mtime) == a_before
    assert not list(r0.glob('train/log/train_*.log'))[1:], 'model A was trained again'
    assert _lines(r0 / 'start' / 'labelled.txt') == start
    assert json.loads((r0 / 'settings.json').read_text())['cpsp_options']['REFRESH_INTERVAL'] == 0
    assert (r0 / 'cpsp' / 'cpsp_banks.pkl').is_file() and not (r0 / 'cpsp' / 'banks_epoch_1.pkl').exists()
    assert (r0 / 'done' / 'round.json').is_file() and json.loads((r0 / 'selection.json').read_text())['strategy'] == 'CAL'
    assert json.loads((r0 / 'eval.json').read_text())['ckpt'].endswith('cpsp/ckpt/checkpoint_epoch_2.pth')
    assert not _round_dir(out, 1).exists(), 'the final round was built on the old CPSP model'
    # the same settings again: nothing to do
    run_active_learning(_opts(cfg, out, strategy='cal', cpsp=True, set_cfgs=no_refresh))


def test_cpsp_generations_teach_from_the_previous_model(data, ref_sssal):
    """GENERATIONS 2: generation 1 is the usual CPSP (model A's bank, the same banks as a
    one-generation run from the same model A); generation 2 builds its bank with generation 1's
    finished checkpoint, trains from model A into cpsp_g2/, and is the model evaluated and scored.
    Forgetting stages after cpsp_train removes generation 2 only."""
    from pcdet_ext.active import CPSPBanks
    from pcdet_ext.active.round_stages import RoundStages
    base, root, cfg = data
    out = base / 'gen2'
    src = _round_dir(ref_sssal, 0)
    run_active_learning(_opts(cfg, out, strategy='cal', cpsp=True, initial_from=str(src.parent),
                              set_cfgs=['ACTIVE_LEARNING.CPSP.GENERATIONS', '2']))
    rd = _round_dir(out, 0)
    done = {p.stem: json.loads(p.read_text()) for p in (rd / 'done').glob('*.json')}
    ckpt_a = done['train']['ckpt']
    assert done['cpsp']['teacher'] == ckpt_a
    gen1 = done['cpsp_train']['ckpt']
    assert Path(gen1).parent == rd / 'cpsp' / 'ckpt'
    assert done['cpsp_g2']['teacher'] == gen1
    gen2 = done['cpsp_train_g2']['ckpt']
    assert Path(gen2).parent == rd / 'cpsp_g2' / 'ckpt' and Path(gen2).is_file()
    assert (rd / 'cpsp_g2' / 'summaries_teacher.pkl').is_file()
    ref_banks = CPSPBanks.load(src / 'cpsp' / 'cpsp_banks.pkl').counts()
    assert CPSPBanks.load(rd / 'cpsp' / 'cpsp_banks.pkl').counts() == ref_banks
    assert CPSPBanks.load(rd / 'cpsp_g2' / 'cpsp_banks.pkl').labelled_frames  # labelled part kept
    log = next((rd / 'cpsp_g2' / 'log').glob('train_*.log')).read_text()
    assert f'pretrained_model {ckpt_a}' in log, 'generation 2 did not start from model A'
    assert json.loads((rd / 'eval.json').read_text())['ckpt'] == gen2
    assert json.loads((rd / 'selection.json').read_text())['strategy'] == 'CAL'

    st = RoundStages(rd)
    st.remove_stages_after('cpsp_train')
    assert st.is_done('cpsp_train') and (rd / 'cpsp' / 'cpsp_banks.pkl').is_file()
    assert not st.is_done('cpsp_g2') and not st.is_done('cpsp_train_g2') and not (rd / 'cpsp_g2').exists()
    assert not st.is_done('eval') and not (rd / 'eval.json').exists()


def test_settings_without_a_newer_cpsp_key_read_it_as_its_default(data, ref_sssal):
    """A round finished before GENERATIONS existed (no such key in its settings.json) is the same
    round as one with GENERATIONS 1: rerunning it skips, and GENERATIONS 2 is a changed setting."""
    base, root, cfg = data
    out = base / 'old_settings'
    shutil.copytree(ref_sssal, out)
    for k in (0, 1):
        f = _round_dir(out, k) / 'settings.json'
        s = json.loads(f.read_text())
        del s['cpsp_options']['GENERATIONS']
        f.write_text(json.dumps(s))
    before = (_round_dir(out, 0) / 'eval.json').read_bytes()
    run_active_learning(_opts(cfg, out, strategy='cal', cpsp=True, final_round=True))
    assert (_round_dir(out, 0) / 'eval.json').read_bytes() == before
    with pytest.raises(ALInputError, match=r"different settings \['cpsp_options'\]"):
        run_active_learning(_opts(cfg, out, strategy='cal', cpsp=True, final_round=True,
                                  set_cfgs=['ACTIVE_LEARNING.CPSP.GENERATIONS', '2']))


def test_redo_cpsp_keeps_the_generations_a_changed_count_does_not_touch(data, ref_sssal):
    """--redo_cpsp when only GENERATIONS changed: 1 -> 2 keeps generation 1 (checkpoint and
    banks byte for byte) and adds generation 2; 2 -> 1 removes generation 2 and evaluates
    generation 1 again. Later rounds go either way."""
    base, root, cfg = data
    out = base / 'redo_gen'
    shutil.copytree(ref_sssal, out)
    r0 = _round_dir(out, 0)
    gen1 = Path(json.loads((r0 / 'done' / 'cpsp_train.json').read_text())['ckpt'])
    kept = {p: p.read_bytes() for p in (gen1, r0 / 'cpsp' / 'cpsp_banks.pkl', r0 / 'done' / 'cpsp_train.json')}
    two = ['ACTIVE_LEARNING.CPSP.GENERATIONS', '2']
    run_active_learning(_opts(cfg, out, strategy='cal', cpsp=True, set_cfgs=two, redo_cpsp=True))
    assert {p: p.read_bytes() for p in kept} == kept, 'generation 1 was redone'
    assert len(list(r0.glob('cpsp/log/train_*.log'))) == 1
    gen2 = json.loads((r0 / 'done' / 'cpsp_train_g2.json').read_text())['ckpt']
    assert json.loads((r0 / 'done' / 'cpsp_g2.json').read_text())['teacher'] == str(gen1)
    assert json.loads((r0 / 'eval.json').read_text())['ckpt'] == gen2
    assert not _round_dir(out, 1).exists()
    run_active_learning(_opts(cfg, out, strategy='cal', cpsp=True, redo_cpsp=True))
    assert {p: p.read_bytes() for p in kept} == kept
    assert not (r0 / 'cpsp_g2').exists() and not list((r0 / 'done').glob('cpsp_*g2.json'))
    assert json.loads((r0 / 'eval.json').read_text())['ckpt'] == str(gen1)


def test_per_generation_floor_redoes_only_the_generations_it_changes(data, ref_sssal):
    """MIN_HIGH_THRESH as one floor per generation: generation g's bank uses the g-th (the last
    goes on). --redo_cpsp after a change of generation 2's floor keeps generation 1 byte for byte;
    a change of generation 1's floor redoes both. The same list again resumes as finished."""
    from pcdet_ext.active import CPSPBanks
    base, root, cfg = data
    out = base / 'redo_floor'
    shutil.copytree(ref_sssal, out)
    r0 = _round_dir(out, 0)
    gen1 = Path(json.loads((r0 / 'done' / 'cpsp_train.json').read_text())['ckpt'])

    def floors(values):  # the same output folder (al_tiny/tiny), another file
        f = base / f'floor_cfgs_{len(list(base.glob("floor_cfgs_*")))}' / 'cfgs' / 'al_tiny' / 'tiny.yaml'
        f.parent.mkdir(parents=True)
        f.write_text(TINY_CFG.format(repo=REPO, root=root)
                     + f'    CPSP:\n        GENERATIONS: 2\n        MIN_HIGH_THRESH: {values}\n')
        return str(f)

    def run(c):
        run_active_learning(_opts(c, out, strategy='cal', cpsp=True, redo_cpsp=True))

    run(floors('[0.5]'))  # one entry: every generation 0.5, the reference's floor; adds generation 2
    kept = {p: p.read_bytes() for p in (gen1, r0 / 'cpsp' / 'cpsp_banks.pkl', r0 / 'done' / 'cpsp_train.json')}
    assert CPSPBanks.load(r0 / 'cpsp_g2' / 'cpsp_banks.pkl').min_high_thresh == 0.5
    run(floors('[0.5, 0.2]'))
    assert {p: p.read_bytes() for p in kept} == kept, 'generation 1 was redone'
    assert CPSPBanks.load(r0 / 'cpsp_g2' / 'cpsp_banks.pkl').min_high_thresh == 0.2
    assert json.loads((r0 / 'done' / 'cpsp_g2.json').read_text())['teacher'] == str(gen1)
    stamp = (r0 / 'eval.json').read_bytes()
    same = floors('[0.5, 0.2]')
    run_active_learning(_opts(same, out, strategy='cal', cpsp=True))  # finished with these settings
    assert (r0 / 'eval.json').read_bytes() == stamp
    run(floors('[0.3, 0.2]'))
    assert CPSPBanks.load(r0 / 'cpsp' / 'cpsp_banks.pkl').min_high_thresh == 0.3
    fresh = Path(json.loads((r0 / 'done' / 'cpsp_train.json').read_text())['ckpt'])
    assert fresh.parent == r0 / 'cpsp' / 'ckpt' and fresh.is_file(), 'generation 1 was not trained again'
    assert (r0 / 'cpsp' / 'cpsp_banks.pkl').read_bytes() != kept[r0 / 'cpsp' / 'cpsp_banks.pkl']
    assert json.loads((r0 / 'done' / 'cpsp_g2.json').read_text())['teacher'] == str(fresh)


def test_generation_floor_reads_a_number_or_one_per_generation():
    from pcdet_ext.active.round_options import check_floor, generation_floor
    assert [generation_floor(0.5, g) for g in (1, 2, 3)] == [0.5, 0.5, 0.5]
    assert [generation_floor([0.5, 0.4], g) for g in (1, 2, 3)] == [0.5, 0.4, 0.4]
    check_floor([0.5, 0.4])
    check_floor(1)
    for bad in ([], [0.5, 1.5], 'high', True, [0.5, None]):
        with pytest.raises(ALInputError, match='MIN_HIGH_THRESH must be a number in'):
            check_floor(bad)
