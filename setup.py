"""Install pcdet_ext. Compiled ops (C++/OpenMP, and CUDA when torch has CUDA) are optional:
when they cannot be built, install still succeeds and the pure-PyTorch references are used."""
import os

from setuptools import find_packages, setup

HERE = os.path.dirname(os.path.abspath(__file__))


def _ext_modules_and_cmdclass():
    # Build logic lives next to the kernels; it never raises (falls back and says why).
    # Load build_ext.py by path: importing the pcdet_ext package would need its runtime
    # dependencies (numpy ...), which pip may not have installed yet when it runs setup.py.
    try:
        import importlib.util
        spec = importlib.util.spec_from_file_location(
            '_pcdet_ext_build_ext', os.path.join(HERE, 'pcdet_ext', 'ops', 'build_ext.py'))
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        get_extensions = mod.get_extensions
    except Exception as e:  # noqa: BLE001 - any import problem just means no compiled ops
        print(f'[pcdet_ext] compiled ops skipped: {e}')
        return [], {}
    return get_extensions()


ext_modules, cmdclass = _ext_modules_and_cmdclass()

setup(
    name='pcdet_ext',
    version='0.1.0',
    description='Label-efficient LiDAR 3D detection (ALPI, S-SSAL) as an OpenPCDet plugin',
    long_description=open(os.path.join(HERE, 'README.md')).read() if os.path.exists(
        os.path.join(HERE, 'README.md')) else '',
    long_description_content_type='text/markdown',
    python_requires='>=3.9',
    packages=find_packages(include=['pcdet_ext', 'pcdet_ext.*']),
    include_package_data=True,
    package_data={'pcdet_ext': ['ops/csrc/*/*.cpp', 'ops/csrc/*/*.cu', 'ops/csrc/*/*.h']},
    install_requires=[
        'torch>=2.1',
        'numpy>=1.23',
        'scipy>=1.10',
        'numba>=0.58',
        'shapely>=2.0',
        'pyyaml>=6.0',
        'easydict>=1.10',
        'tqdm>=4.60',
        'tensorboardX>=2.6',
        'matplotlib>=3.6',
        'pillow>=9.0',
        'psutil>=5.9',
    ],
    extras_require={
        'dev': ['pytest>=7', 'pytest-timeout>=2.1'],
        'cuda': ['spconv-cu126>=2.3.8'],   # wheels for Python 3.10-3.13; bundles its own CUDA runtime
    },
    entry_points={'console_scripts': [
        'pcdet-ext-train=pcdet_ext.cli:train_main',
        'pcdet-ext-test=pcdet_ext.cli:test_main',
    ]},
    ext_modules=ext_modules,
    cmdclass=cmdclass,
    zip_safe=False,
)
