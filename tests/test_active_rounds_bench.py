"""tools/bench_al.py at smoke size: every run goes through the round driver, the upper bound is
trained, and the JSON / PNG / markdown report come out with one curve point per round."""
import json
from pathlib import Path

import pytest

from _tools_helpers import load_tool


def _load_bench():
    return load_tool('bench_al')


def test_bench_al_smoke(tmp_path):
    import torch
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        _run(tmp_path)
    finally:
        torch.set_num_threads(threads)


def _run(tmp_path):
    bench = _load_bench()
    doc = tmp_path / 'docs' / 'benchmarks_al.md'
    rc = bench.main(['--smoke', '--frames', '12', '--out', str(tmp_path / 'out'), '--strategies', 'random', 'cal+cpsp',
                     '--rounds', '1', '--workers', '0', '--device', 'cpu', '--doc', str(doc)])
    assert rc == 0
    report = json.loads((tmp_path / 'out' / 'bench_al.json').read_text())
    assert report['pool']['frames'] == 9 and report['pool']['boxes'] > 0
    assert set(report['curves']) == {'random', 'cal+cpsp'}
    for pts in report['curves'].values():
        assert [p['round'] for p in pts] == [0, 1]  # one selection round + the final round
        assert pts[1]['labelled_boxes'] > pts[0]['labelled_boxes'] >= report['initial_boxes']
    assert 'mAP' in report['upper_bound']
    text = doc.read_text()
    assert 'Smoke run' in text and '| cal+cpsp | 1 |' in text
    assert (doc.parent / 'benchmarks_al.png').read_bytes()[:4] == b'\x89PNG'
    cal_round0 = tmp_path / 'out' / 'output' / 'bench_al' / 'smoke' / 'cal_cpsp_s0' / 'round_0'
    assert json.loads((cal_round0 / 'selection.json').read_text())['strategy'] == 'CAL'
    # a CPSP variant next to the plain runs: own tags, round 0 adopted from the plain random run
    # (the config hash leaves the CPSP section out), reported under its own name
    rc = bench.main(['--smoke', '--frames', '12', '--out', str(tmp_path / 'out'), '--strategies', 'cal+cpsp',
                     '--initial_strategy', 'random', '--rounds', '1', '--workers', '0', '--device', 'cpu',
                     '--no_upper_bound', '--variant', 'norefresh', '--set', 'ACTIVE_LEARNING.CPSP.REFRESH_INTERVAL', '0'])
    assert rc == 0
    report = json.loads((tmp_path / 'out' / 'bench_al.json').read_text())
    assert set(report['curves']) == {'cal+cpsp (norefresh)'}
    var0 = cal_round0.parent.parent / 'cal_cpsp_norefresh_s0' / 'round_0'
    assert json.loads((var0 / 'done' / 'train.json').read_text())['adopted_from'].endswith('random_s0/round_0')
    assert json.loads((var0 / 'settings.json').read_text())['cpsp_options']['REFRESH_INTERVAL'] == 0
    assert not list(var0.glob('cpsp/banks_epoch_*.pkl')) and list(cal_round0.glob('cpsp/banks_epoch_*.pkl'))


def test_bench_al_set_needs_a_variant(capsys):
    bench = _load_bench()
    with pytest.raises(SystemExit):
        bench.parse_args(['--set', 'ACTIVE_LEARNING.CPSP.REFRESH_INTERVAL', '0'])
    assert '--variant' in capsys.readouterr().err
    with pytest.raises(SystemExit):
        bench.parse_args(['--variant', 'a/b'])
    assert bench.run_tag('cal+cpsp', 2, 'norefresh') == 'cal_cpsp_norefresh_s2' and bench.run_tag('cal', 0) == 'cal_s0'


def _summary(d: Path, rnd: int, boxes: int, m: float):
    (d / f'round_{rnd}').mkdir(parents=True, exist_ok=True)
    (d / f'round_{rnd}' / 'round_summary.json').write_text(json.dumps(
        {'round': rnd, 'labelled_boxes': boxes, 'labelled_frames': 2, 'mAP': m, 'Car': 3 * m, 'Pedestrian': 0.0,
         'Cyclist': 0.0}))


def test_bench_al_collect_reports_finished_runs(tmp_path, capsys):
    bench = _load_bench()
    a, b = tmp_path / 'seed0', tmp_path / 'seed1'
    _summary(a / 'random_s0', 0, 30, 4.0)
    _summary(a / 'random_s0', 1, 60, 6.0)
    _summary(b / 'random_s1', 1, 64, 10.0)  # rounds sort numerically and pair across seeds
    _summary(b / 'random_s1', 0, 34, 2.0)
    _summary(b / 'cal_cpsp_norefresh_s1', 0, 34, 5.0)
    _summary(b / 'notes', 0, 1, 99.0)  # no _s<seed> suffix: not a run
    # an adopted round 0 keeps the source run's data marker: the run's time counts from the adoption
    for rnd, stage, t, extra in ((0, 'data', '07:00:00', {}), (0, 'train', '10:00:00', {'adopted_from': 'x/round_0'}),
                                 (1, 'round', '10:15:00', {})):
        (a / 'random_s0' / f'round_{rnd}' / 'done').mkdir(exist_ok=True)
        (a / 'random_s0' / f'round_{rnd}' / 'done' / f'{stage}.json').write_text(
            json.dumps({'stage': stage, 'time': f'2026-12-05 {t}', **extra}))
    doc = tmp_path / 'docs' / 'paired.md'
    doc.parent.mkdir()
    assert bench.main(['--collect', str(a), str(b), '--doc', str(doc), '--upper_bound_map', '50']) == 0
    text = doc.read_text()
    assert '| random | 0 | 2 | 32.0 | 3.00 ± 1.00 | 9.00 |' in text
    assert '| random | 1 | 2 | 62.0 | 8.00 ± 2.00 |' in text and '| s0 6.00, s1 10.00 | 15, 0 |' in text
    assert '| cal_cpsp_norefresh | 0 | 1 | 34.0 | 5.00 ± 0.00 |' in text and '99.00' not in text
    assert (doc.parent / 'paired.png').read_bytes()[:4] == b'\x89PNG'
    (b / 'random_s1' / 'round_0' / 'round_summary.json').write_text('{')
    assert bench.main(['--collect', str(b)]) == 2
    assert 'round_0/round_summary.json: unreadable' in capsys.readouterr().err
    assert bench.main(['--collect', str(tmp_path / 'docs')]) == 2
    assert 'no finished round' in capsys.readouterr().err


def test_bench_al_seed_table_plots_and_checks_its_csv(tmp_path, capsys):
    bench = _load_bench()
    csv = tmp_path / 'round1.csv'
    csv.write_text('strategy,seed,labelled_boxes,mAP\nA,0,60,10\n"B, alone",1,62,7.5\nA,1,64,20\n')
    assert bench.main(['--seed_table', str(csv), '--upper_bound_map', '50']) == 0
    out = capsys.readouterr().out
    assert '| strategy | seed 0 | seed 1 | mean ± std | / upper bound |' in out
    # population std over seeds; a strategy without a seed shows '-' there; rows in file order
    assert '| A | 10.00 (60) | 20.00 (64) | 15.00 ± 5.00 | 0.30 |' in out
    assert '| B, alone | - | 7.50 (62) | 7.50 ± 0.00 | 0.15 |' in out
    assert out.index('| A |') < out.index('| B, alone |')
    assert (tmp_path / 'round1.png').read_bytes()[:4] == b'\x89PNG'
    for text, message in (('strategy,seed,mAP\nA,0,1\n', 'missing column(s) labelled_boxes'),
                          ('strategy,seed,labelled_boxes,mAP\nA,zero,60,1\n', 'line 2: seed and labelled_boxes'),
                          ('strategy,seed,labelled_boxes,mAP\nA,0,60,1\nA,0,61,2\n', "line 3: 'A' has seed 0 twice"),
                          ('strategy,seed,labelled_boxes,mAP\n', 'no result rows')):
        csv.write_text(text)
        assert bench.main(['--seed_table', str(csv)]) == 2
        err = capsys.readouterr().err
        assert str(csv) in err and message in err
    assert bench.main(['--seed_table', str(tmp_path / 'absent.csv')]) == 2
    assert 'absent.csv: No such file' in capsys.readouterr().err
    for argv, message in ((['--seed_table', str(csv), '--collect', str(tmp_path)], 'give one'),
                          (['--seed_table', str(csv), '--target_share', '0'], 'must be > 0')):
        with pytest.raises(SystemExit):
            bench.main(argv)
        assert message in capsys.readouterr().err
