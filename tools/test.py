"""OpenPCDet-style test entry point (thin face over pcdet_ext.runtime.test_tool); see --help."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

import pcdet_ext.active  # noqa: E402,F401  (registers CPSPDataset)
from pcdet_ext.runtime.test_tool import main  # noqa: E402

if __name__ == '__main__':
    main()
