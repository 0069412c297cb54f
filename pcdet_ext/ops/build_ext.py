"""setup.py hook: the optional compiled ops. `get_extensions()` never raises.

- `pcdet_ext.ops._C_cpu`: C++ with OpenMP (via at::parallel_for), built whenever torch's
  C++ extension tooling imports.
- `pcdet_ext.ops._C_cuda`: CUDA kernels, only when torch itself was built with CUDA
  (`torch.version.cuda`) and a CUDA toolkit is found (CUDA_HOME). A CPU torch cannot link a
  CUDA extension even when nvcc exists, so nvcc alone is never the test.
`PCDET_EXT_ONLY=cpu` or `=cuda` builds just that one, so that two processes can build the two
at once (tools/gpu_check.sh does, with separate --build-temp folders).
The returned build_ext command builds each extension separately and, when one fails (no
compiler, broken toolkit), prints why and continues without it: install still succeeds and
the pure-PyTorch references are used.
"""
from __future__ import annotations

import glob
import os

_HERE = os.path.dirname(os.path.abspath(__file__))
_CPU_FLAGS = ['-O3', '-std=c++17', '-fopenmp', '-ffp-contract=off']   # no FMA: match the reference


def _say(msg: str):
    print(f'[pcdet_ext] {msg}', flush=True)


def _rel(paths):
    # setuptools wants source paths relative to setup.py
    root = os.path.dirname(os.path.dirname(_HERE))
    return [os.path.relpath(p, root) for p in paths]


def _cuda_possible():
    import torch
    from torch.utils import cpp_extension
    if not torch.version.cuda:
        return False, 'torch is a CPU build (torch.version.cuda is None)'
    if not cpp_extension.CUDA_HOME:
        return False, 'no CUDA toolkit found (CUDA_HOME unset and nvcc not found)'
    if os.environ.get('PCDET_EXT_NO_CUDA'):
        return False, 'PCDET_EXT_NO_CUDA is set'
    return True, ''


def get_extensions():
    """-> (ext_modules, cmdclass) for setup(); ([], {}) when torch's tooling is unusable."""
    if os.environ.get('PCDET_EXT_NO_COMPILE'):
        _say('compiled ops skipped: PCDET_EXT_NO_COMPILE is set; using the PyTorch reference ops')
        return [], {}
    try:
        from torch.utils.cpp_extension import BuildExtension, CppExtension, CUDAExtension
    except Exception as e:  # noqa: BLE001 - torch missing or broken: reference ops only
        _say(f'compiled ops skipped: torch.utils.cpp_extension unavailable ({e})')
        return [], {}
    only = os.environ.get('PCDET_EXT_ONLY', '').strip().lower()
    if only not in ('', 'cpu', 'cuda'):
        _say(f"PCDET_EXT_ONLY={only!r} ignored: expected 'cpu' or 'cuda'")
        only = ''
    cpu_dir = os.path.join(_HERE, 'csrc', 'cpu')
    exts = [CppExtension('pcdet_ext.ops._C_cpu', _rel(sorted(glob.glob(os.path.join(cpu_dir, '*.cpp')))),
                         include_dirs=[cpu_dir], extra_compile_args=_CPU_FLAGS, extra_link_args=['-fopenmp'])]
    try:
        ok, why = _cuda_possible()
    except Exception as e:  # noqa: BLE001
        ok, why = False, str(e)
    if ok:
        cuda_dir = os.path.join(_HERE, 'csrc', 'cuda')
        sources = sorted(glob.glob(os.path.join(cuda_dir, '*.cu')) + glob.glob(os.path.join(cuda_dir, '*.cpp')))
        exts.append(CUDAExtension('pcdet_ext.ops._C_cuda', _rel(sources), include_dirs=[cpu_dir, cuda_dir],
                                  extra_compile_args={'cxx': ['-O3', '-std=c++17'],
                                                      'nvcc': ['-O3', '--fmad=false']}))
    else:
        _say(f'CUDA ops not built: {why}')
    if only:
        exts = [e for e in exts if e.name.endswith(f'_C_{only}')]
        _say(f'PCDET_EXT_ONLY={only}: building {[e.name for e in exts] or "nothing"}')

    class OptionalBuildExtension(BuildExtension):
        """Builds each extension on its own; a failure is reported, not fatal."""

        def build_extension(self, ext):
            try:
                super().build_extension(ext)
                if not os.path.exists(self.get_ext_fullpath(ext.name)):
                    raise RuntimeError('the compiler reported success but wrote no library')
                _say(f'built {ext.name}')
            except Exception as e:  # noqa: BLE001 - compiler missing / failing: fall back
                _say(f'could not build {ext.name} ({type(e).__name__}: {e}); '
                     'pcdet_ext will use the PyTorch reference ops instead')

        def run(self):
            try:
                super().run()
                return
            except Exception as e:  # noqa: BLE001 - e.g. no compiler, CUDA version mismatch
                err = e
            cuda = [x for x in self.extensions if x.name.endswith('_C_cuda')]
            if cuda:   # torch checks the CUDA toolkit before building anything: retry CPU alone
                _say(f'CUDA ops skipped ({type(err).__name__}: {err}); building the CPU ops alone')
                self.extensions = [x for x in self.extensions if x not in cuda]
                try:
                    super().run()
                    return
                except Exception as e:  # noqa: BLE001
                    err = e
            _say(f'compiled ops skipped ({type(err).__name__}: {err}); using the PyTorch reference ops')

    return exts, {'build_ext': OptionalBuildExtension.with_options(use_ninja=False)}
