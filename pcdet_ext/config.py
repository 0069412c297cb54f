"""YAML configs with OpenPCDet semantics, plus validation that makes config typos fail loudly.

`cfg_from_yaml_file` / `cfg_from_list` / `merge_new_config` / `log_config_to_file` behave like
OpenPCDet's (`_BASE_CONFIG_` at any level, recursive dict merge, lists replaced whole,
`--set A.B.C value` with literal parsing and a type check against the existing value).

`ConfigDict` is EasyDict-like (attribute and item access, `.get`, `in`) and additionally records,
for every key, the file that set it and whether any code read it. Modules read all their keys in
`__init__`; the runtime builds dataset, network, optimizer and scheduler and then calls
`check_unused_keys(cfg)`, which names every key nobody read and the file it came from.
"""
from __future__ import annotations

import ast
import copy
import fnmatch
import os
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence

import yaml

__all__ = ['ConfigDict', 'ConfigError', 'cfg', 'cfg_from_yaml_file', 'cfg_from_list', 'merge_new_config',
           'log_config_to_file', 'check_unused_keys', 'find_unused_keys', 'mark_read',
           'register_informational_key', 'exp_group_path', 'default_root_dir', 'to_plain']


class ConfigError(ValueError):
    """A config file or override is malformed (the message names the file or the key)."""


def default_root_dir() -> Path:
    """The repository root when running from a source checkout (has cfgs/), else the cwd."""
    repo = Path(__file__).resolve().parent.parent
    return repo if (repo / 'cfgs').is_dir() else Path.cwd().resolve()


class _Meta:
    """Per-node bookkeeping, shared between a ConfigDict and its (deep)copies so that a module
    reading from a copy still counts as reading the original key."""
    __slots__ = ('sources', 'read')

    def __init__(self):
        self.sources: Dict[str, List[str]] = {}
        self.read: set = set()


def _wrap(value, source: Optional[str] = None):
    if isinstance(value, ConfigDict):
        return value
    if isinstance(value, dict):
        return ConfigDict(value, _source=source)
    if isinstance(value, list):
        return [_wrap(v, source) for v in value]
    return value


class ConfigDict(dict):
    """EasyDict-like dict that tracks which keys were read and which file set them."""

    def __init__(self, data: Optional[dict] = None, _source: Optional[str] = None, **kwargs):
        super().__init__()
        object.__setattr__(self, '_meta', _Meta())
        for k, v in dict(data or {}, **kwargs).items():
            self._set(k, v, _source)

    # ---- writes --------------------------------------------------------------------------
    def _set(self, key, value, source: Optional[str] = None):
        dict.__setitem__(self, key, _wrap(value, source))
        if source is not None:
            srcs = self._meta.sources.setdefault(key, [])
            if source not in srcs:
                srcs.append(source)

    def __setitem__(self, key, value):
        self._set(key, value)

    def __setattr__(self, key, value):
        if key.startswith('__') or key == '_meta':
            object.__setattr__(self, key, value)
        else:
            self._set(key, value)

    def update(self, other=(), **kwargs):
        items = other.items() if hasattr(other, 'items') else other
        for k, v in list(items) + list(kwargs.items()):
            self._set(k, v)

    def setdefault(self, key, default=None):
        if not dict.__contains__(self, key):
            self._set(key, default)
        return self[key]

    def __delitem__(self, key):
        dict.__delitem__(self, key)
        self._meta.sources.pop(key, None)

    def __delattr__(self, key):
        try:
            del self[key]
        except KeyError:
            raise AttributeError(key) from None

    def pop(self, key, *default):
        self._meta.read.add(key)
        self._meta.sources.pop(key, None)
        return dict.pop(self, key, *default)

    # ---- reads (recorded) ----------------------------------------------------------------
    def __getitem__(self, key):
        value = dict.__getitem__(self, key)
        self._meta.read.add(key)
        return value

    def __getattr__(self, key):
        if key.startswith('__'):
            raise AttributeError(key)
        try:
            return self[key]
        except KeyError:
            raise AttributeError(f'config has no key {key!r}; keys: {sorted(dict.keys(self))}') from None

    def get(self, key, default=None):
        return self[key] if dict.__contains__(self, key) else default

    def items(self):
        return [(k, self[k]) for k in dict.keys(self)]

    def values(self):
        return [self[k] for k in dict.keys(self)]

    # Overriding keys/__iter__ makes dict(cfg), {**cfg} and f(**cfg) go through __getitem__,
    # so a module that consumes a whole sub-config marks every key as read.
    def keys(self):
        return dict.keys(self)

    def __iter__(self):
        return dict.__iter__(self)

    # ---- copies share the read record ----------------------------------------------------
    def copy(self):
        new = ConfigDict()
        for k in dict.keys(self):
            dict.__setitem__(new, k, dict.__getitem__(self, k))
        object.__setattr__(new, '_meta', self._meta)
        return new

    def __copy__(self):
        return self.copy()

    def __deepcopy__(self, memo):
        new = ConfigDict()
        memo[id(self)] = new
        for k in dict.keys(self):
            dict.__setitem__(new, k, copy.deepcopy(dict.__getitem__(self, k), memo))
        object.__setattr__(new, '_meta', self._meta)
        return new

    def __reduce__(self):
        return (_rebuild, (to_plain(self),))

    # ---- untracked helpers for the config machinery itself -------------------------------
    def raw_items(self):
        """Items without marking them read (for dumping and validation)."""
        return [(k, dict.__getitem__(self, k)) for k in dict.keys(self)]

    def raw_get(self, key, default=None):
        return dict.get(self, key, default)

    def sources_of(self, key) -> List[str]:
        return list(self._meta.sources.get(key, []))

    def was_read(self, key) -> bool:
        return key in self._meta.read


def _rebuild(data):
    return ConfigDict(data)


def to_plain(value):
    """ConfigDict tree -> plain dicts/lists (no reads recorded)."""
    if isinstance(value, ConfigDict):
        return {k: to_plain(v) for k, v in value.raw_items()}
    if isinstance(value, dict):
        return {k: to_plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [to_plain(v) for v in value]
    return value


cfg = ConfigDict()
cfg.ROOT_DIR = default_root_dir()
cfg.LOCAL_RANK = 0


# ---- loading -------------------------------------------------------------------------------
def _display(path: Path) -> str:
    """Short, stable name for a config file in error messages (relative to the repo if inside)."""
    path = Path(path).resolve()
    for base in (default_root_dir(), Path.cwd().resolve()):
        try:
            return str(path.relative_to(base))
        except ValueError:
            continue
    return str(path)


def _load_yaml(path: Path) -> dict:
    if not path.is_file():
        raise ConfigError(f'config file {path} does not exist')
    try:
        with open(path, 'r') as f:
            data = yaml.safe_load(f)
    except yaml.YAMLError as e:
        raise ConfigError(f'config file {path} is not valid YAML: {e}') from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f'config file {path} must hold a mapping at top level, got {type(data).__name__}')
    return data


def _resolve_base(base: str, including_file: Optional[Path]) -> Path:
    """`_BASE_CONFIG_` paths: absolute, relative to the including file, to the tree that holds its
    cfgs/ folder (OpenPCDet writes them relative to the repo, e.g. cfgs/dataset_configs/x.yaml),
    to the package's repo root, or to the cwd."""
    p = Path(os.path.expanduser(str(base)))
    candidates = []
    if p.is_absolute():
        candidates.append(p)
    else:
        if including_file is not None:
            d = including_file.resolve().parent
            candidates.append(d / p)
            for anc in [d] + list(d.parents):
                if (anc / 'cfgs').is_dir() or anc.name == 'cfgs':
                    candidates.append(anc / p)
                    if anc.name == 'cfgs':
                        candidates.append(anc.parent / p)
        candidates += [default_root_dir() / p, Path.cwd() / p]
    for c in candidates:
        if c.is_file():
            return c.resolve()
    where = f' (included from {_display(including_file)})' if including_file is not None else ''
    raise ConfigError(f'_BASE_CONFIG_ {base!r}{where} not found; tried: '
                      + ', '.join(str(c) for c in dict.fromkeys(candidates)))


def merge_new_config(config: ConfigDict, new_config: dict, source: Optional[str] = None,
                     _file: Optional[Path] = None) -> ConfigDict:
    """Merge `new_config` into `config` in place, OpenPCDet style: `_BASE_CONFIG_` first, then
    dicts merged key by key, everything else (lists included) replaced."""
    if '_BASE_CONFIG_' in new_config:
        base_path = _resolve_base(new_config['_BASE_CONFIG_'], _file)
        merge_new_config(config, _load_yaml(base_path), _display(base_path), base_path)
    for key, val in new_config.items():
        if key == '_BASE_CONFIG_':
            config._set(key, val, source)
            config._meta.read.add(key)  # consumed by the loader itself
            continue
        if isinstance(val, dict):
            if not isinstance(config.raw_get(key), ConfigDict):
                config._set(key, ConfigDict(), source)
            elif source is not None:
                config._set(key, config.raw_get(key), source)
            merge_new_config(config.raw_get(key), val, source, _file)
        else:
            config._set(key, val, source)
    return config


def cfg_from_yaml_file(cfg_file, config: ConfigDict) -> ConfigDict:
    """Load `cfg_file` (with its `_BASE_CONFIG_`s) into `config`; returns `config`."""
    path = Path(cfg_file)
    if not path.is_file():
        raise ConfigError(f'--cfg_file {cfg_file}: no such file')
    path = path.resolve()
    return merge_new_config(config, _load_yaml(path), _display(path), path)


def _parse_literal(text: str):
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def _convert_scalar(text: str, like, key: str):
    """Cast `text` to the type of the existing value `like` (bool-aware, int->float allowed)."""
    if isinstance(like, bool):
        low = str(text).strip().lower()
        if low in ('true', '1', 'yes'):
            return True
        if low in ('false', '0', 'no'):
            return False
        raise ConfigError(f'--set {key}: {text!r} is not a bool')
    try:
        return type(like)(_parse_literal(text) if not isinstance(like, str) else text)
    except (TypeError, ValueError):
        raise ConfigError(f'--set {key}: cannot convert {text!r} to {type(like).__name__} '
                          f'(the current value is {like!r})') from None


def cfg_from_list(cfg_list: Sequence[str], config: ConfigDict) -> ConfigDict:
    """Apply `--set A.B.C value ...` overrides; the key must exist and the type must match."""
    cfg_list = list(cfg_list or [])
    if len(cfg_list) % 2 != 0:
        raise ConfigError(f'--set expects KEY VALUE pairs, got an odd number of items: {cfg_list}')
    for k, v in zip(cfg_list[0::2], cfg_list[1::2]):
        node = config
        parts = k.split('.')
        for i, sub in enumerate(parts):
            if not isinstance(node, dict) or sub not in node.keys():
                have = sorted(node.keys()) if isinstance(node, dict) else []
                raise ConfigError(f'--set {k}: key {".".join(parts[:i + 1])!r} does not exist '
                                  f'(available here: {have})')
            if i < len(parts) - 1:
                node = dict.__getitem__(node, sub)
        sub = parts[-1]
        old = dict.__getitem__(node, sub)
        value = _parse_literal(v) if isinstance(v, str) else v
        if isinstance(old, dict) and not isinstance(value, dict):
            # OpenPCDet: --set A.B x:1,y:2 updates several children of a dict
            for item in str(v).split(','):
                if ':' not in item:
                    raise ConfigError(f'--set {k}: {k} is a dict, expected "key:value,..." got {v!r}')
                ck, cv = item.split(':', 1)
                ck = ck.strip()
                if ck not in old.keys():
                    raise ConfigError(f'--set {k}: key {k}.{ck} does not exist')
                old._set(ck, _convert_scalar(cv.strip(), dict.__getitem__(old, ck), f'{k}.{ck}'), '--set')
            continue
        if isinstance(old, list) and not isinstance(value, (list, tuple)):
            items = str(v).split(',')
            like = old[0] if old else ''
            value = [_convert_scalar(x.strip(), like, k) for x in items]
        elif isinstance(old, list) and isinstance(value, tuple):
            value = list(value)
        elif old is not None and not isinstance(old, (list, dict)):
            if isinstance(old, bool) and isinstance(value, str):
                value = _convert_scalar(value, old, k)  # accepts true/false/yes/no
            elif isinstance(old, float) and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
            elif isinstance(old, str) and not isinstance(value, str):
                value = str(v)
            elif type(value) is not type(old):
                raise ConfigError(f'--set {k}: value {v!r} has type {type(value).__name__}, '
                                  f'but the config has {type(old).__name__} ({old!r})')
        node._set(sub, value, '--set')
    return config


def exp_group_path(cfg_file) -> str:
    """OpenPCDet's EXP_GROUP_PATH: the folders between `cfgs/` and the file (e.g. kitti_models);
    for a file outside any cfgs/ folder, its parent folder's name."""
    parts = Path(cfg_file).parts
    if 'cfgs' in parts[:-1]:
        i = len(parts) - 2 - list(reversed(parts[:-1])).index('cfgs')
        group = '/'.join(parts[i + 1:-1])
        if group:
            return group
    return Path(cfg_file).resolve().parent.name


def log_config_to_file(config, pre: str = 'cfg', logger=None):
    """Log every key (without marking anything read)."""
    for key, val in (config.raw_items() if isinstance(config, ConfigDict) else config.items()):
        if isinstance(val, dict):
            if logger is not None:
                logger.info(f'----------- {key} -----------')
            log_config_to_file(val, pre=f'{pre}.{key}', logger=logger)
        elif logger is not None:
            logger.info(f'{pre}.{key}: {to_plain(val)}')


# ---- validation ----------------------------------------------------------------------------
_INFORMATIONAL: List[str] = ['_BASE_CONFIG_', '*._BASE_CONFIG_', 'ROOT_DIR', 'LOCAL_RANK',
                             'EXP_GROUP_PATH', 'TAG']


def register_informational_key(pattern: str):
    """Declare a documented key (fnmatch pattern over the dotted path) that no module reads on
    purpose, e.g. a comment-like field. Keep this list short: every entry hides typos."""
    if pattern not in _INFORMATIONAL:
        _INFORMATIONAL.append(pattern)


def mark_read(config: ConfigDict, path: Optional[str] = None, recursive: bool = True):
    """Mark `path` (dotted; the whole tree when None) as read, e.g. for sections a tool knowingly
    does not build (OPTIMIZATION in test.py)."""
    node = config
    if path:
        parts = path.split('.')
        for sub in parts[:-1]:
            node = node.raw_get(sub) if isinstance(node, ConfigDict) else None
            if not isinstance(node, ConfigDict):
                return
        if parts[-1] not in node.keys():
            return
        node._meta.read.add(parts[-1])
        node = node.raw_get(parts[-1])
    if recursive:
        _mark_tree(node)


def _mark_tree(node):
    if isinstance(node, ConfigDict):
        for k, v in node.raw_items():
            node._meta.read.add(k)
            _mark_tree(v)
    elif isinstance(node, list):
        for v in node:
            _mark_tree(v)


def _walk_unread(node, prefix: str, out: list):
    if isinstance(node, ConfigDict):
        for k, v in node.raw_items():
            path = f'{prefix}.{k}' if prefix else str(k)
            srcs = node.sources_of(k)
            if not srcs:
                continue  # set by code, not by a file: nothing a user could have mistyped
            if not node.was_read(k):
                out.append((path, srcs))
            else:
                _walk_unread(v, path, out)
    elif isinstance(node, list):
        for i, v in enumerate(node):
            _walk_unread(v, f'{prefix}[{i}]', out)


def find_unused_keys(config: ConfigDict, ignore: Iterable[str] = ()) -> List[tuple]:
    """[(dotted path, [files that set it])] for every file-set key that was never read."""
    out: list = []
    _walk_unread(config, '', out)
    patterns = list(_INFORMATIONAL) + list(ignore)

    def ignored(path):
        plain = path.replace('[', '.[')
        return any(fnmatch.fnmatchcase(path, p) or fnmatch.fnmatchcase(plain, p)
                   or path.startswith(p + '.') or path.startswith(p + '[') for p in patterns)
    return [(p, s) for p, s in out if not ignored(p)]


def check_unused_keys(config: ConfigDict, ignore: Iterable[str] = ()):
    """Raise ValueError naming every key that was set in a config file but read by no module."""
    unused = find_unused_keys(config, ignore)
    if unused:
        lines = [f'{path} (set in {", ".join(srcs)}) is not read by any module: typo?'
                 for path, srcs in unused]
        raise ValueError('config keys not used:\n  ' + '\n  '.join(lines))
