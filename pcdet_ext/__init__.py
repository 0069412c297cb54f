"""pcdet_ext: label-efficient LiDAR 3D detection (ALPI auto-labelling, S-SSAL active learning)
as an OpenPCDet plugin with its own OpenPCDet-compatible runtime."""
__version__ = '0.1.0'


def register_all():
    """Insert every pcdet_ext module into OpenPCDet's registries when `pcdet` is importable."""
    from .bridge import register_all as _register_all
    return _register_all()
