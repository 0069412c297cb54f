"""Console scripts `pcdet-ext-train` and `pcdet-ext-test`.

Default: run pcdet_ext's own runtime (same flags as OpenPCDet's tools). With
`--openpcdet PATH/TO/OpenPCDet/tools` as the first argument, register pcdet_ext's modules into
that OpenPCDet (`register_all()`) and run OpenPCDet's own train.py / test.py with the remaining
arguments, from its tools/ folder as OpenPCDet expects.
"""
from __future__ import annotations

import os
import runpy
import sys
from pathlib import Path


def _run_openpcdet(script: str, argv):
    tools = Path(argv[1]).expanduser().resolve()
    target = tools / script
    if not target.is_file():
        raise SystemExit(f'--openpcdet {argv[1]}: {target} not found (give OpenPCDet\'s tools/ folder)')
    from .bridge import register_all
    sys.path.insert(0, str(tools.parent))
    inserted = register_all()
    if not inserted and 'pcdet' not in sys.modules:
        raise SystemExit(f'--openpcdet {argv[1]}: `import pcdet` failed; run `python setup.py develop` in '
                         f'{tools.parent} first')
    print(f'[pcdet_ext] registered into OpenPCDet: {inserted}')
    os.chdir(tools)
    sys.path.insert(0, str(tools))
    sys.argv = [str(target)] + list(argv[2:])
    runpy.run_path(str(target), run_name='__main__')


def train_main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ['--openpcdet']:
        return _run_openpcdet('train.py', argv)
    from . import active  # noqa: F401  (registers CPSPDataset)
    from .runtime.train_tool import main
    main(argv)


def test_main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ['--openpcdet']:
        return _run_openpcdet('test.py', argv)
    from . import active  # noqa: F401  (registers CPSPDataset)
    from .runtime.test_tool import main
    main(argv)
