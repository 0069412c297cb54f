"""Typed registries (detectron2 style) and the bridge into OpenPCDet's module dicts.

Each family maps a name (the config's NAME) to a class. `@register('detector')` adds a class
under its own name; duplicate names are refused so two modules can never shadow each other.
"""
from __future__ import annotations

from typing import Callable, Dict, Optional

FAMILIES = ('dataset', 'vfe', 'backbone_3d', 'map_to_bev', 'backbone_2d', 'dense_head',
            'roi_head', 'detector', 'query_strategy')


class Registry:
    def __init__(self, family: str):
        self.family = family
        self._items: Dict[str, type] = {}

    def register(self, obj: Optional[type] = None, name: Optional[str] = None):
        def _add(o):
            key = name or o.__name__
            if key in self._items and self._items[key] is not o:
                raise KeyError(f'{self.family} registry: name {key!r} is already taken by '
                               f'{self._items[key].__module__}.{self._items[key].__qualname__}')
            self._items[key] = o
            return o
        return _add(obj) if obj is not None else _add

    def get(self, name: str) -> type:
        if name not in self._items:
            raise KeyError(f'unknown {self.family} {name!r}; registered: {sorted(self._items)}')
        return self._items[name]

    def __contains__(self, name: str) -> bool:
        return name in self._items

    def items(self):
        return dict(self._items).items()

    def names(self):
        return sorted(self._items)


REGISTRIES: Dict[str, Registry] = {f: Registry(f) for f in FAMILIES}


def register(family: str, name: Optional[str] = None) -> Callable:
    """Class decorator: `@register('backbone_3d')` or `@register('dataset', name='KittiDataset')`."""
    if family not in REGISTRIES:
        raise KeyError(f'unknown registry family {family!r}; families: {FAMILIES}')
    return REGISTRIES[family].register(name=name)


def get(family: str, name: str) -> type:
    if family not in REGISTRIES:
        raise KeyError(f'unknown registry family {family!r}; families: {FAMILIES}')
    return REGISTRIES[family].get(name)
