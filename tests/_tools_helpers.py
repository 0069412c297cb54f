"""Load a script of tools/ as a module (tools/ is not a package), for tests of its main()."""
import importlib.util
from pathlib import Path

TOOLS = Path(__file__).resolve().parents[1] / 'tools'


def load_tool(name: str):
    """tools/<name>.py as a fresh module."""
    spec = importlib.util.spec_from_file_location(f'tool_{name}', TOOLS / f'{name}.py')
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod
