"""tools/bench_al.py at smoke size: every run goes through the round driver, the upper bound is
trained, and the JSON / PNG / markdown report come out with one curve point per round."""
import importlib.util
import json
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_bench_al_smoke(tmp_path):
    import torch
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        _run(tmp_path)
    finally:
        torch.set_num_threads(threads)


def _run(tmp_path):
    spec = importlib.util.spec_from_file_location('bench_al', REPO / 'tools' / 'bench_al.py')
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
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
    import pytest
    spec = importlib.util.spec_from_file_location('bench_al', REPO / 'tools' / 'bench_al.py')
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    with pytest.raises(SystemExit):
        bench.parse_args(['--set', 'ACTIVE_LEARNING.CPSP.REFRESH_INTERVAL', '0'])
    assert '--variant' in capsys.readouterr().err
    with pytest.raises(SystemExit):
        bench.parse_args(['--variant', 'a/b'])
    assert bench.run_tag('cal+cpsp', 2, 'norefresh') == 'cal_cpsp_norefresh_s2' and bench.run_tag('cal', 0) == 'cal_s0'
