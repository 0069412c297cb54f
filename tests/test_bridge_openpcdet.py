"""register_all() against a stand-in `pcdet` package with OpenPCDet's __all__ dict layout."""
import importlib
import sys
from pathlib import Path

import pytest

from pcdet_ext import register_all
from pcdet_ext.bridge import OPENPCDET_DICTS
from pcdet_ext.registry import REGISTRIES, Registry, register

FAKE_ROOT = Path(__file__).resolve().parent / 'fixtures' / 'fake_pcdet'


def _drop_pcdet_modules():
    for name in [m for m in sys.modules if m == 'pcdet' or m.startswith('pcdet.')]:
        del sys.modules[name]


@pytest.fixture
def fake_pcdet(monkeypatch):
    _drop_pcdet_modules()
    monkeypatch.syspath_prepend(str(FAKE_ROOT))
    importlib.invalidate_caches()
    yield importlib.import_module('pcdet')
    _drop_pcdet_modules()


def _ensure_test_classes():
    """One uniquely named class per family (registered once per session)."""
    names = {}
    for family in OPENPCDET_DICTS:
        name = f'BridgeTest_{family}'
        if name not in REGISTRIES[family]:
            register(family)(type(name, (), {}))
        names[family] = name
    return names


def test_register_all_inserts_every_family_in_place(fake_pcdet):
    names = _ensure_test_classes()
    dicts = {f: importlib.import_module(m).__all__ for f, m in OPENPCDET_DICTS.items()}
    ids_before = {f: id(d) for f, d in dicts.items()}
    inserted = register_all()
    for family, module_name in OPENPCDET_DICTS.items():
        target = importlib.import_module(module_name).__all__
        assert id(target) == ids_before[family], 'dict must be updated in place, not replaced'
        assert target[names[family]] is REGISTRIES[family].get(names[family])
        assert names[family] in inserted[family]
        for name, cls in REGISTRIES[family].items():  # everything registered is bridged
            assert name in target
    # OpenPCDet's own entries survive
    assert importlib.import_module('pcdet.datasets').__all__['DatasetTemplate'].__module__ == 'pcdet.datasets'


def test_register_all_is_idempotent_and_keeps_openpcdet_names(fake_pcdet, monkeypatch):
    _ensure_test_classes()
    from pcdet_ext.bridge import _import_our_modules
    _import_our_modules()  # registers our real modules now, outside the patched registry
    clash = Registry('detector')  # a pcdet_ext detector that reuses OpenPCDet's name
    for name, cls in REGISTRIES['detector'].items():
        clash.register(cls, name=name)
    if 'SECONDNet' not in clash:
        clash.register(type('SECONDNet', (), {}))
    monkeypatch.setitem(REGISTRIES, 'detector', clash)
    first = register_all()
    assert 'SECONDNet' not in first.get('detector', [])
    detectors = importlib.import_module('pcdet.models.detectors')
    assert detectors.__all__['SECONDNet'].__module__ == 'pcdet.models.detectors'
    snapshot = {m: dict(importlib.import_module(m).__all__) for m in OPENPCDET_DICTS.values()}
    assert register_all() == {}
    assert snapshot == {m: dict(importlib.import_module(m).__all__) for m in OPENPCDET_DICTS.values()}


def test_register_all_without_openpcdet_returns_empty(monkeypatch):
    _drop_pcdet_modules()
    monkeypatch.setitem(sys.modules, 'pcdet', None)  # makes `import pcdet` raise ImportError
    assert register_all() == {}


def test_cli_wrapper_runs_openpcdet_tool_after_registering(tmp_path):
    """`pcdet-ext-train --openpcdet TOOLS ...` registers, chdirs to TOOLS and runs its train.py."""
    import os
    import subprocess
    tools = tmp_path / 'OpenPCDet' / 'tools'
    tools.mkdir(parents=True)
    (tools / 'train.py').write_text(
        'import os, sys, json\n'
        'import pcdet.models.detectors as d\n'
        'json.dump({"cwd": os.getcwd(), "argv": sys.argv[1:], "detectors": sorted(d.__all__)},'
        ' open(os.environ["OUT_JSON"], "w"))\n')
    out = tmp_path / 'out.json'
    repo = Path(__file__).resolve().parents[1]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(FAKE_ROOT), str(repo)]), OUT_JSON=str(out))
    code = ('from pcdet_ext.registry import register\n'
            'register("detector")(type("CliBridgeDetector", (), {}))\n'
            'from pcdet_ext.cli import train_main\n'
            f'train_main(["--openpcdet", {str(tools)!r}, "--cfg_file", "cfgs/x.yaml"])\n')
    proc = subprocess.run([sys.executable, '-c', code], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    import json
    got = json.loads(out.read_text())
    assert Path(got['cwd']).resolve() == tools.resolve()
    assert got['argv'] == ['--cfg_file', 'cfgs/x.yaml']
    assert 'CliBridgeDetector' in got['detectors'] and 'SECONDNet' in got['detectors']
