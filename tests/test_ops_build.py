"""setup.py's hook for the compiled ops: never raises, decides CUDA by torch's build."""
import torch

from pcdet_ext.ops import build_ext


def test_get_extensions_cpu_and_cuda_decision(monkeypatch, capsys):
    exts, cmdclass = build_ext.get_extensions()
    names = [e.name for e in exts]
    assert names[0] == 'pcdet_ext.ops._C_cpu' and 'build_ext' in cmdclass
    assert all(s.endswith('.cpp') for s in exts[0].sources) and exts[0].sources
    assert ('pcdet_ext.ops._C_cuda' in names) == bool(torch.version.cuda and build_ext._cuda_possible()[0])
    if not torch.version.cuda:
        assert 'torch is a CPU build' in capsys.readouterr().out


def test_get_extensions_can_be_disabled(monkeypatch):
    monkeypatch.setenv('PCDET_EXT_NO_COMPILE', '1')
    assert build_ext.get_extensions() == ([], {})


def test_build_only_one_extension(monkeypatch, capsys):
    monkeypatch.setenv('PCDET_EXT_ONLY', 'cpu')
    assert [e.name for e in build_ext.get_extensions()[0]] == ['pcdet_ext.ops._C_cpu']
    monkeypatch.setenv('PCDET_EXT_ONLY', 'cuda')
    names = [e.name for e in build_ext.get_extensions()[0]]
    assert names == (['pcdet_ext.ops._C_cuda'] if torch.version.cuda and build_ext._cuda_possible()[0] else [])
    monkeypatch.setenv('PCDET_EXT_ONLY', 'gpu')
    assert 'pcdet_ext.ops._C_cpu' in [e.name for e in build_ext.get_extensions()[0]]
    assert "PCDET_EXT_ONLY='gpu' ignored" in capsys.readouterr().out


def test_failed_build_is_reported_not_raised(monkeypatch, capsys):
    """A compiler failure inside build_extension is caught and explained."""
    _, cmdclass = build_ext.get_extensions()
    cls = cmdclass['build_ext']
    from torch.utils.cpp_extension import BuildExtension as base

    def boom(self, ext):
        raise RuntimeError('compiler exploded')

    monkeypatch.setattr(base, 'build_extension', boom)
    from setuptools import Distribution
    cmd = cls(Distribution())
    ext = type('Ext', (), {'name': 'pcdet_ext.ops._C_cpu'})()
    cls.build_extension(cmd, ext)
    out = capsys.readouterr().out
    assert 'could not build pcdet_ext.ops._C_cpu' in out and 'compiler exploded' in out


def test_cuda_failure_falls_back_to_cpu_only(monkeypatch, capsys):
    """When the whole build fails with a CUDA extension in the list, the CPU one is retried."""
    _, cmdclass = build_ext.get_extensions()
    cls = cmdclass['build_ext']
    from torch.utils.cpp_extension import BuildExtension as base
    seen = []

    def fake_run(self):
        names = [x.name for x in self.extensions]
        seen.append(names)
        if any(n.endswith('_C_cuda') for n in names):
            raise RuntimeError('CUDA version mismatch')

    monkeypatch.setattr(base, 'run', fake_run)
    from setuptools import Distribution
    cmd = cls(Distribution())
    mk = lambda n: type('Ext', (), {'name': n})()  # noqa: E731
    cmd.extensions = [mk('pcdet_ext.ops._C_cpu'), mk('pcdet_ext.ops._C_cuda')]
    cls.run(cmd)
    assert seen == [['pcdet_ext.ops._C_cpu', 'pcdet_ext.ops._C_cuda'], ['pcdet_ext.ops._C_cpu']]
    assert 'building the CPU ops alone' in capsys.readouterr().out
