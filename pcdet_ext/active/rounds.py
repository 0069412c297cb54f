"""Multi-round active learning driver (what `tools/al_round.py` runs).

One round K (artifacts in output/<cfg group>/<cfg name>/<extra_tag>/round_K/):

    pool      start/{labelled,unlabelled}.txt: round 0 draws random frames up to --initial_boxes,
              round K > 0 starts from round K-1's final lists
    data      data/: the labelled frames' infos and gt database (labels read through the oracle)
    train     train/: the runtime's training on the labelled frames           -> model A
    cpsp      (--cpsp) cpsp/cpsp_banks.pkl from the labelled set and model A's view of the pool
    cpsp_train (--cpsp) cpsp/: training on pseudo-scenes from model A, banks refreshed every
              REFRESH_INTERVAL epochs                                          -> model B
    cpsp_g<n>, cpsp_train_g<n>  (CPSP.GENERATIONS > 1) cpsp_g<n>/: the bank again, from the
              finished model of generation n-1, and CPSP training from model A on it -> model B
    score     summaries*.pkl: the final model's per-frame summaries of the unlabelled and the
              labelled frames (CAL with --cpsp: model A's as well)
    select    selection.json: the strategy's ranking, per-frame scores, expected boxes
    annotate  annotation.json, {labelled,unlabelled}.txt, pool.json: the next round's lists
    eval      eval.json: KITTI evaluation of the final model on the val split
    curve     al_curve.{json,png}: AP3D R40 moderate vs labelled boxes, rounds 0..K

With `initial_from` (another run's folder), round 0 adopts that run's initial set, labelled data
and trained model instead of drawing and training them again: strategies compared from one
initial model, as the papers do, and one training saved per extra strategy. The other run must
have the same config, seed, initial boxes, epochs and pretrained model (checked before any work).

A final round (`select=False`, the S-SSAL recipe's "retrain, final CPSP") trains and evaluates
only. Each stage ends with an atomic done-marker (round_stages.py), so a killed run resumes at the
stage it was in; a finished round is never overwritten without force=True. `redo_cpsp` redoes
the CPSP stages of a round (after a change of ACTIVE_LEARNING.CPSP, which the config hash leaves
out and the settings record apart) and keeps its labelled training.
"""
from __future__ import annotations

import argparse
import math
import shutil
import sys
from pathlib import Path
from typing import List, Optional

import numpy as np

from ..datasets.data_io import read_split_file
from .al_curve import map_from_eval, save_curve_png
from .cpsp import (CPSPBanks, build_banks, check_background_options, check_negative_max_thresh,
                   check_object_rotation, lowest_candidate_score)
from .cpsp_dataset import DEFAULT_NUM_SCENES as CPSP_DEFAULT_NUM_SCENES
from .cpsp_training import CPSP_DATASET_KEYS, cpsp_dataset_cfg, make_cpsp_builders
from .pool import ActivePool, LabelOracle, annotate_until_budget, check_budget, check_min_per_class
from .round_data import INFOS_NAME, DBINFOS_NAME, labelled_training_cfg, write_labelled_data
from .round_options import (AL_DEFAULTS, CPSP_DEFAULTS, RECIPES, ALInputError, RoundOptions, check_floor,
                            config_hash, generation_floor, read_section)
from .round_stages import RoundStages, read_json, write_json
from .strategies import Selection, build_strategy
from .strategies.cal import merge_model_summaries
from .summaries import load_summaries, save_summaries, score_frames, summaries_above


class ActiveLearningRun:
    """Validates everything at construction (bad input fails before any work), then `run()`."""

    def __init__(self, opts: RoundOptions):
        from ..runtime.checkpoint import CheckpointError, read_checkpoint
        from ..runtime.common import load_config, output_dir_for, resolve_device, resolve_root_path
        self.opts = opts
        if not Path(opts.cfg_file).is_file():
            raise ALInputError(f'--cfg_file {opts.cfg_file}: file not found')
        ns = argparse.Namespace(cfg_file=opts.cfg_file, set_cfgs=list(opts.set_cfgs) or None,
                                output_root=opts.output_root, extra_tag=opts.extra_tag)
        self.cfg = load_config(ns)
        self.class_names = list(self.cfg.CLASS_NAMES)
        self.al = read_section(self.cfg, 'ACTIVE_LEARNING', AL_DEFAULTS, f'{opts.cfg_file}: ACTIVE_LEARNING')
        self.cpsp_opts = read_section(self.al, 'CPSP', CPSP_DEFAULTS, f'{opts.cfg_file}: ACTIVE_LEARNING.CPSP') \
            if self.al['CPSP'] else dict(CPSP_DEFAULTS)
        self.strategy_name = opts.strategy or self.al['STRATEGY']
        if not self.strategy_name:
            raise ALInputError('no query strategy: give --strategy (or ACTIVE_LEARNING.STRATEGY)')
        self.strategy = self._build_strategy()  # unknown names / options fail here
        budget = opts.budget_boxes if opts.budget_boxes is not None else self.al['BUDGET_BOXES']
        if budget is None:
            raise ALInputError('no box budget: give --budget_boxes (or ACTIVE_LEARNING.BUDGET_BOXES)')
        try:
            self.budget_boxes = check_budget(budget, '--budget_boxes')
            init = opts.initial_boxes if opts.initial_boxes is not None else self.al['INITIAL_BOXES']
            self.initial_boxes = check_budget(init if init is not None else self.budget_boxes, '--initial_boxes')
            mpc = opts.initial_min_per_class if opts.initial_min_per_class is not None \
                else self.al['INITIAL_MIN_PER_CLASS']
            self.initial_min_per_class = check_min_per_class(
                mpc, '--initial_min_per_class (ACTIVE_LEARNING.INITIAL_MIN_PER_CLASS)')
        except ValueError as e:
            raise ALInputError(str(e)) from None
        if opts.first_round < 0 or opts.rounds < 0 or (opts.rounds == 0 and not opts.final_round):
            raise ALInputError(f'--round must be >= 0 and --rounds >= 1 (0 only with --final_round), '
                               f'got --round {opts.first_round} --rounds {opts.rounds}')
        for what, v in (('--epochs', opts.epochs), ('--cpsp_epochs', opts.cpsp_epochs)):
            if v is not None and v < 1:
                raise ALInputError(f'{what} must be >= 1, got {v}')
        mi = self.al['MIN_TRAIN_ITERS']
        if isinstance(mi, bool) or not isinstance(mi, int) or mi < 0:
            raise ALInputError(f'ACTIVE_LEARNING.MIN_TRAIN_ITERS must be an integer >= 0 (0: off), got {mi!r}')
        if opts.cpsp:
            ri = self.cpsp_opts['REFRESH_INTERVAL']
            if isinstance(ri, bool) or not isinstance(ri, int) or ri < 0:
                raise ALInputError(f'ACTIVE_LEARNING.CPSP.REFRESH_INTERVAL must be an integer >= 0 (0: never), '
                                   f'got {ri!r}')
            check_floor(self.cpsp_opts['MIN_HIGH_THRESH'])
            mc = self.cpsp_opts['MAX_CANDIDATES']
            if isinstance(mc, bool) or not isinstance(mc, int) or mc < 0:
                raise ALInputError(f'ACTIVE_LEARNING.CPSP.MAX_CANDIDATES must be an integer >= 0 (0: all), '
                                   f'got {mc!r}')
            gen = self.cpsp_opts['GENERATIONS']
            if isinstance(gen, bool) or not isinstance(gen, int) or gen < 1:
                raise ALInputError(f'ACTIVE_LEARNING.CPSP.GENERATIONS must be an integer >= 1, got {gen!r}')
            try:
                check_object_rotation(self.cpsp_opts['OBJECT_ROTATION'], 'ACTIVE_LEARNING.CPSP.OBJECT_ROTATION')
                check_background_options(self.cpsp_opts['BACKGROUND_THRESH'], self.cpsp_opts['BACKGROUND_MARGIN'],
                                         'ACTIVE_LEARNING.CPSP')
                check_negative_max_thresh(self.cpsp_opts['NEGATIVE_MAX_THRESH'], 'ACTIVE_LEARNING.CPSP')
            except ValueError as e:
                raise ALInputError(str(e)) from None
        if opts.pretrained_model is not None:
            try:
                read_checkpoint(opts.pretrained_model)
            except CheckpointError as e:
                raise ALInputError(f'--pretrained_model: {e}') from None
        self.device = resolve_device(opts.device)
        self.root = resolve_root_path(self.cfg)
        if self.root is None or not (Path(self.root) / 'training').is_dir():
            raise ALInputError(f'DATA_CONFIG.DATA_PATH {self.root}: no training/ folder (dataset root expected)')
        self.root = Path(self.root)
        data_split = self.cfg.DATA_CONFIG.DATA_SPLIT
        pool_split = self.al['POOL_SPLIT'] or data_split['train']
        try:
            self.pool_ids = read_split_file(self.root / 'ImageSets' / f'{pool_split}.txt')
        except Exception as e:  # noqa: BLE001 - DataFileError with the path in it
            raise ALInputError(str(e)) from None
        if not self.pool_ids:
            raise ALInputError(f'{self.root / "ImageSets" / f"{pool_split}.txt"}: the pool is empty (no frame ids)')
        val_infos = [self.root / p for p in self.cfg.DATA_CONFIG.INFO_PATH['test']]
        missing = [str(p) for p in val_infos if not p.is_file()]
        if missing:
            raise ALInputError(f'evaluation infos {missing} not found; create them with '
                               f'`python tools/create_data.py ...` first')
        self.exp_dir = output_dir_for(self.cfg, ns)
        self.cfg_hash = config_hash(self.cfg)
        self.initial_src = self._check_initial_from() if opts.initial_from is not None else None
        prev = self.round_dir(opts.first_round - 1)
        if opts.first_round > 0 and not RoundStages(prev).finished:
            raise ALInputError(f'round {opts.first_round - 1} is not finished ({prev}); run it first '
                               f'(--round {opts.first_round - 1})')
        if opts.first_round > 0 and opts.rounds > 0 and not read_split_file(prev / 'unlabelled.txt'):
            raise ALInputError(f'the pool is empty: round {opts.first_round - 1} labelled every frame')
        self.logger = None
        self.rank, self.world = 0, 1  # set by run() under --launcher pytorch

    # ---- helpers ---------------------------------------------------------------------------
    def _build_strategy(self):
        opts = dict(self.al['STRATEGY_OPTIONS'] or {})
        by_name = {k.lower().replace('_', ''): v for k, v in opts.items()}
        key = str(self.strategy_name).lower().replace('_', '').replace('-', '')
        options = dict(by_name.get(key, {}) or {})
        if key == 'cal' and 'class_names' not in {k.lower() for k in options}:
            options['class_names'] = self.class_names
        try:
            return build_strategy(self.strategy_name, options)
        except ValueError as e:
            raise ALInputError(str(e)) from None

    def round_dir(self, k: int) -> Path:
        return self.exp_dir / f'round_{k}'

    # settings --redo_cpsp may change in a started round (its labelled training does not depend on them)
    CPSP_SETTINGS = ('cpsp_epochs', 'cpsp_options')

    # stages round 0 can adopt from another run (--initial_from), and the settings they depend on
    ADOPTED_STAGES = ('pool', 'data', 'train')
    ADOPT_KEYS = ('seed', 'initial_boxes', 'initial_min_per_class', 'cfg_hash', 'epochs', 'pretrained_model')

    def _check_initial_from(self) -> Path:
        src = Path(self.opts.initial_from)
        if (src / 'round_0').is_dir():
            src = src / 'round_0'
        st = RoundStages(src)
        missing = [s for s in self.ADOPTED_STAGES if not st.is_done(s)]
        if not st.settings_file().is_file() or missing:
            raise ALInputError(f'--initial_from {self.opts.initial_from}: no round 0 with finished stages '
                               f'{list(self.ADOPTED_STAGES)} there (missing: {missing or ["settings.json"]})')
        if src.resolve() == self.round_dir(0).resolve():
            raise ALInputError(f'--initial_from {self.opts.initial_from} is this run\'s own round 0')
        theirs = read_json(st.settings_file())
        ours = self.settings(0, True)
        diff = sorted(k for k in self.ADOPT_KEYS if theirs.get(k) != ours.get(k))
        if diff:
            raise ALInputError(f'--initial_from {src}: its round 0 differs in {diff} '
                               f'({ {k: theirs.get(k) for k in diff} } vs ours { {k: ours.get(k) for k in diff} }); '
                               f'the initial set and model would not be the same')
        return src

    def _adopt_initial(self, st: RoundStages) -> None:
        """Copy the source run's round-0 pool lists, labelled data and checkpoint, then mark those
        stages done (artifacts first, markers last: a kill in between redoes the copy)."""
        src = RoundStages(self.initial_src)
        for stage, sub in (('pool', 'start'), ('data', 'data')):
            if not st.is_done(stage):
                shutil.rmtree(st.dir / sub, ignore_errors=True)
                shutil.copytree(src.dir / sub, st.dir / sub)
                st.mark(stage, {**src.load(stage), 'adopted_from': str(src.dir)})
        if not st.is_done('train'):
            ckpt = Path(src.load('train')['ckpt'])
            if not ckpt.is_file():
                raise ALInputError(f'--initial_from {src.dir}: its checkpoint {ckpt} is missing')
            dst = st.dir / 'train' / 'ckpt' / ckpt.name
            dst.parent.mkdir(parents=True, exist_ok=True)
            tmp = dst.with_name(f'.{dst.name}.tmp')
            shutil.copyfile(ckpt, tmp)
            tmp.replace(dst)
            st.mark('train', {'ckpt': str(dst), 'adopted_from': str(src.dir)})
        self._log(f'round 0: initial set and model adopted from {src.dir}')

    def _log(self, msg: str) -> None:
        if self.rank != 0:
            return
        if self.logger is not None:
            self.logger.info(msg)
        else:
            print(msg, flush=True)

    # ---- several ranks (torchrun): training and scoring are split, rank 0 writes every artifact
    @property
    def dist(self) -> bool:
        return self.world > 1

    def _barrier(self) -> None:
        if self.dist:
            from ..runtime.dist import barrier
            barrier()

    def _on_main(self, fn, read_fn=None):
        """Run fn on rank 0 (it writes the stage's artifacts and marker), then read_fn (default fn,
        which then finds the stage done and loads it) on the other ranks. An error on rank 0 is
        raised on every rank, so no rank waits forever."""
        if not self.dist:
            return fn()
        import torch.distributed as tdist
        out, err, status = None, None, [None]
        if self.rank == 0:
            try:
                out = fn()
            except Exception as e:  # noqa: BLE001 - re-raised below, after telling the other ranks
                err = e
                status = [(type(e).__name__, str(e))]
        tdist.broadcast_object_list(status, src=0)
        if err is not None:
            raise err
        if status[0] is not None:
            kind = ALInputError if status[0][0] == 'ALInputError' else RuntimeError
            raise kind(f'rank 0: {status[0][1]}')
        return out if self.rank == 0 else (read_fn or fn)()

    def _mark_main(self, st: RoundStages, stage: str, payload: Optional[dict] = None) -> None:
        """A stage every rank ran (training, scoring): rank 0 marks it done, then all meet."""
        if self.rank == 0:
            st.mark(stage, payload)
        self._barrier()

    def settings(self, k: int, select: bool) -> dict:
        o = self.opts
        return {'round': k, 'select': select, 'strategy': self.strategy.name if select else None,
                'strategy_options': self.strategy.cfg if select else None,
                'budget_boxes': self.budget_boxes if select else None,
                'initial_boxes': self.initial_boxes if k == 0 else None,
                'initial_min_per_class': self.initial_min_per_class if k == 0 else None, 'cpsp': o.cpsp, 'epochs': o.epochs,
                'cpsp_epochs': o.cpsp_epochs if o.cpsp else None,
                'cpsp_options': dict(self.cpsp_opts) if o.cpsp else None, 'seed': o.seed, 'cfg_hash': self.cfg_hash,
                'pretrained_model': o.pretrained_model,
                'initial_from': str(o.initial_from) if k == 0 and o.initial_from is not None else None}

    # ---- driver ----------------------------------------------------------------------------
    def run(self) -> List[dict]:
        from ..runtime import dist as dist_utils
        from ..runtime.common import timestamp
        from ..runtime.logger import close_logger, create_logger
        if self.opts.launcher == 'pytorch':
            self.world, self.rank = dist_utils.init_dist_pytorch(self.opts.tcp_port, device=str(self.device))
            if self.device.type == 'cuda':
                import torch
                self.device = torch.device('cuda', torch.cuda.current_device())
        if self.rank == 0:
            self.exp_dir.mkdir(parents=True, exist_ok=True)
            self.logger = create_logger(self.exp_dir / 'log' / f'al_round_{timestamp()}.log',
                                        name=f'pcdet_ext.al.{self.exp_dir}')
        self._barrier()
        try:
            out = []
            ks = list(range(self.opts.first_round, self.opts.first_round + self.opts.rounds))
            for k in ks:
                out.append(self.run_round(k, select=True))
            if self.opts.final_round:
                out.append(self.run_round(self.opts.first_round + self.opts.rounds, select=False))
            return out
        finally:
            if self.logger is not None:
                close_logger(self.logger)
            self.logger = None
            if self.opts.launcher == 'pytorch':
                dist_utils.destroy(sync=sys.exc_info()[0] is None)  # no meeting while an error unwinds

    def _prepare_round_dir(self, k: int, settings: dict) -> Optional[dict]:
        """Returns the summary of a finished round with the same settings (nothing to do)."""
        rd = self.round_dir(k)
        st = RoundStages(rd)
        existing = read_json(st.settings_file()) if st.settings_file().is_file() else None
        if existing is not None and isinstance(existing.get('cpsp_options'), dict):
            # CPSP keys added since the round was started read as their defaults (GENERATIONS: 1)
            existing['cpsp_options'] = {**CPSP_DEFAULTS, **existing['cpsp_options']}
        if existing is not None:
            diff = sorted(key for key in set(existing) | set(settings) if existing.get(key) != settings.get(key))
            if self.opts.redo_cpsp and not self.opts.force and k == self.opts.first_round:
                if not set(diff) <= set(self.CPSP_SETTINGS):
                    raise ALInputError(f'--redo_cpsp: round {k} ({rd}) differs in {sorted(set(diff) - set(self.CPSP_SETTINGS))}, '
                                       f'not only in the CPSP settings; use --force to restart it')
                if not st.is_done('train'):
                    raise ALInputError(f'--redo_cpsp: round {k} ({rd}) has no finished labelled training to '
                                       f'keep; run it without --redo_cpsp')
                keep = self._kept_generations(existing, settings)
                if keep:
                    kept = 'generation 1' if keep == 1 else f'generations 1..{keep}'
                    self._log(f'round {k}: --redo_cpsp, the CPSP change leaves {kept} as before: keeping its '
                              f'labelled set, model A and {kept}, removing the later stages and rounds')
                else:
                    self._log(f'round {k}: --redo_cpsp, keeping its labelled set and model A, removing its CPSP '
                              f'and later stages and later rounds')
                self._remove_from(k + 1)
                self._remove_cpsp_stages(st, keep)
            elif self.opts.force:
                self._log(f'round {k}: --force, removing {rd} and later rounds')
                self._remove_from(k)
            elif st.finished and not diff:
                self._log(f'round {k} is already finished with these settings ({rd}); skipped '
                          f'(--force recomputes it)')
                return read_json(rd / 'round_summary.json')
            elif st.finished:
                raise ALInputError(f'round {k} is finished ({rd}) with different settings {diff}; refusing to '
                                   f'overwrite it: use --force (removes round {k} and later rounds){self._redo_hint(diff)} '
                                   f'or another --extra_tag')
            elif diff:
                raise ALInputError(f'round {k} was started ({rd}) with different settings {diff}; use --force '
                                   f'to restart it{self._redo_hint(diff)}, or the same settings to resume it')
            else:
                self._log(f'round {k}: resuming ({rd})')
        rd.mkdir(parents=True, exist_ok=True)
        st.remove_stale_tmp()
        write_json(settings, st.settings_file())
        return None

    @staticmethod
    def _kept_generations(existing: dict, settings: dict) -> int:
        """CPSP generations a --redo_cpsp may keep: generation n depends on the CPSP options, of
        MIN_HIGH_THRESH only on the floors of generations 1..n, and not on how many generations
        follow it. When nothing else changed, the generations up to the first whose floor changed
        (at most min(old, new) GENERATIONS) stay; otherwise none (0)."""
        old, new = existing.get('cpsp_options'), settings.get('cpsp_options')
        if not isinstance(old, dict) or not isinstance(new, dict) or existing.get('cpsp_epochs') != settings.get('cpsp_epochs'):
            return 0
        per_gen = {'GENERATIONS': None, 'MIN_HIGH_THRESH': None}
        if {**old, **per_gen} != {**new, **per_gen}:
            return 0
        keep = 0
        for gen in range(1, min(int(old.get('GENERATIONS', 1)), int(new.get('GENERATIONS', 1))) + 1):
            if generation_floor(old['MIN_HIGH_THRESH'], gen) != generation_floor(new['MIN_HIGH_THRESH'], gen):
                break
            keep = gen
        return keep

    def _remove_cpsp_stages(self, st: RoundStages, keep: int) -> None:
        """Forget the CPSP generations after `keep` (0: all of them) and every later stage."""
        if keep == 0:
            st.remove_stages_after('train')
            return
        gens = [int(m.stem[len('cpsp_g'):]) for m in st.done_dir.glob('cpsp_g*.json')]
        gens += [int(d.name[len('cpsp_g'):]) for d in st.dir.glob('cpsp_g*') if d.is_dir()]
        for g in sorted(set(gens)):
            if g > keep:  # markers first: a kill in between leaves stages to redo, never half-kept ones
                for stage in self.cpsp_names(g)[1:]:
                    st.marker(stage).unlink(missing_ok=True)
                shutil.rmtree(st.dir / self.cpsp_names(g)[0], ignore_errors=True)
        st.remove_stages_after('cpsp_train_g*')

    def _redo_hint(self, diff) -> str:
        return ', --redo_cpsp (keeps its model A, redoes its CPSP and later stages)' \
            if set(diff) <= set(self.CPSP_SETTINGS) else ''

    def _remove_from(self, k: int) -> None:
        for d in self.exp_dir.glob('round_*'):
            try:
                j = int(d.name.split('_', 1)[1])
            except ValueError:
                continue
            if j >= k:
                shutil.rmtree(d)

    def run_round(self, k: int, select: bool = True) -> dict:
        settings = self.settings(k, select)
        rd = self.round_dir(k)
        st = RoundStages(rd)
        done = self._on_main(lambda: self._prepare_round_dir(k, settings),
                             lambda: read_json(rd / 'round_summary.json') if st.finished else None)
        if done is not None:
            return done
        if k == 0 and self.initial_src is not None:
            self._on_main(lambda: self._adopt_initial(st))
        oracle = LabelOracle(self.root, self.class_names)
        pool = self._on_main(lambda: self.stage_pool(k, st, oracle))
        trained_on = pool.report()  # the curve's x: the boxes this round's model is trained on
        if select and not pool.unlabelled:
            raise ALInputError(f'round {k}: the pool is empty (every frame is labelled); nothing to select')
        data = self._on_main(lambda: self.stage_data(st, oracle, pool))
        ckpt_a = self.stage_train(k, st, data)
        final_ckpt, ckpt_for_cal = ckpt_a, None
        if self.opts.cpsp:
            for gen in range(1, int(self.cpsp_opts['GENERATIONS']) + 1):
                # generation 1 is taught by model A, each later one by the finished model before it
                banks_file = self.stage_cpsp_banks(st, oracle, pool, final_ckpt, gen)
                final_ckpt = self.stage_cpsp_train(k, st, data, pool, banks_file, ckpt_a, gen)
            ckpt_for_cal = ckpt_a
        if select:
            self.stage_score(st, pool, final_ckpt, ckpt_for_cal)
            sel = self._on_main(lambda: self.stage_select(k, st, pool))
            next_pool = self._on_main(lambda: self.stage_annotate(k, st, oracle, pool, sel))
        else:
            next_pool = pool
            self._on_main(lambda: self._final_round_lists(k, st, pool))
        result = self.stage_eval(k, st, final_ckpt)
        summary = self._on_main(lambda: self.stage_curve(k, st, trained_on, next_pool, result),
                                lambda: read_json(rd / 'round_summary.json'))
        self._log(f'round {k} finished: {summary["labelled_boxes"]} labelled boxes, mAP {summary["mAP"]:.2f} '
                  f'-> {rd}')
        return summary

    # ---- stages ----------------------------------------------------------------------------
    @staticmethod
    def _final_round_lists(k: int, st: RoundStages, pool: ActivePool) -> None:
        """A final round selects nothing: its lists are its start lists."""
        if not st.is_done('annotate'):
            pool.round_index = k + 1
            pool.write(st.dir)
            st.mark('annotate', {'final_round': True})

    def stage_pool(self, k: int, st: RoundStages, oracle: LabelOracle) -> ActivePool:
        start = st.dir / 'start'
        if st.is_done('pool'):
            return ActivePool.load(start, oracle, round_index=k)
        if k == 0:
            pool = ActivePool(self.pool_ids, oracle, round_index=0)
            ann = pool.initial_selection(self.initial_boxes, seed=self.opts.seed,
                                         min_per_class=self.initial_min_per_class)
            self._log(f'round 0: initial random selection of {ann.num_frames} frames, {ann.num_boxes} boxes '
                      f'{ann.boxes_per_class}' + (f', {ann.extra_boxes} past the budget to cover every class'
                                                  if ann.extra_boxes else ''))
            if ann.uncovered:
                self._log(f'WARNING: round 0: classes {ann.uncovered} have fewer than {self.initial_min_per_class} '
                          f'labelled boxes after drawing {ann.extra_boxes} boxes past the budget; the query '
                          f'strategies cannot ask for a class the models never predict')
        else:
            pool = ActivePool.load(self.round_dir(k - 1), oracle, round_index=k)
        pool.write(start)
        extra = {'initial_extra_boxes': ann.extra_boxes, 'initial_uncovered': ann.uncovered} if k == 0 else {}
        st.mark('pool', {**pool.report(), **extra})
        return pool

    def stage_data(self, st: RoundStages, oracle: LabelOracle, pool: ActivePool) -> dict:
        d = st.dir / 'data'
        if not st.is_done('data'):
            write_labelled_data(self.root, oracle, pool.labelled, d, self.class_names)
            st.mark('data', {'frames': len(pool.labelled)})
        return {'infos': d / INFOS_NAME, 'dbinfos': d / DBINFOS_NAME}

    def _train_argv(self, k: int, sub: str, epochs: Optional[int], pretrained: Optional[str]) -> list:
        o = self.opts
        argv = ['--cfg_file', o.cfg_file, '--extra_tag', f'{o.extra_tag}/round_{k}/{sub}', '--workers',
                str(o.workers), '--device', o.device, '--fix_random_seed', '--skip_eval', '--max_ckpt_save_num', '2']
        if self.dist:  # DDP over the ranks this driver runs on (the tool joins the existing group)
            argv += ['--launcher', 'pytorch', '--tcp_port', str(o.tcp_port)]
        if o.output_root:
            argv += ['--output_root', str(o.output_root)]
        if epochs is not None:
            # a tiny labelled set trains hundreds of one-batch epochs: ~20 checkpoints are enough to resume
            argv += ['--epochs', str(epochs), '--ckpt_save_interval', str(max(1, epochs // 20))]
        if o.batch_size is not None:
            argv += ['--batch_size', str(o.batch_size)]
        if pretrained:
            argv += ['--pretrained_model', str(pretrained)]
        if o.set_cfgs:
            argv += ['--set', *o.set_cfgs]
        return argv

    def _raise_to_min_iters(self, epochs: Optional[int], samples_per_epoch: int) -> Optional[int]:
        """`epochs` (None: the config's NUM_EPOCHS) raised so that training runs at least
        ACTIVE_LEARNING.MIN_TRAIN_ITERS iterations; unchanged when that is 0 (off)."""
        min_iters = int(self.al['MIN_TRAIN_ITERS'])
        if min_iters <= 0:
            return epochs
        epochs = epochs or int(self.cfg.OPTIMIZATION.NUM_EPOCHS)
        batch = self.opts.batch_size or int(self.cfg.OPTIMIZATION.BATCH_SIZE_PER_GPU)
        per_epoch = max(math.ceil(samples_per_epoch / batch), 1)
        return max(epochs, math.ceil(min_iters / per_epoch))

    def round_epochs(self, frames: int) -> Optional[int]:
        """Epochs of a round's training on `frames` labelled frames: --epochs (else the config's),
        raised to MIN_TRAIN_ITERS iterations - an epoch over the 10 frames of a 1 % set is 3
        batches, too few steps to learn anything."""
        return self._raise_to_min_iters(self.opts.epochs, frames)

    def cpsp_epochs(self) -> Optional[int]:
        """Epochs of CPSP training: --cpsp_epochs, else CPSP.EPOCHS, else --epochs, raised to
        MIN_TRAIN_ITERS iterations over CPSP.NUM_SCENES pseudo-scenes per epoch. A pseudo-scene
        epoch is a fixed count, not the labelled set, so without the raise a short CPSP schedule
        leaves the final model far less trained than the fully labelled one it is compared to."""
        epochs = self.opts.cpsp_epochs or self.cpsp_opts['EPOCHS'] or self.opts.epochs
        scenes = self.cpsp_opts.get('NUM_SCENES') or CPSP_DEFAULT_NUM_SCENES
        return self._raise_to_min_iters(epochs, int(scenes))

    def _final_ckpt(self, st: RoundStages, stage: str) -> str:
        path = st.load(stage)['ckpt']
        if not Path(path).is_file():
            raise ALInputError(f'{st.marker(stage)} says stage {stage} is done but its checkpoint {path} is '
                               f'missing; use --force to redo the round')
        return path

    def _run_training(self, argv, build_dataloader_fn, build_network_fn) -> str:
        from ..runtime import train_tool
        from ..runtime.checkpoint import list_checkpoints
        ret = train_tool.main(argv, build_dataloader_fn=build_dataloader_fn, build_network_fn=build_network_fn)
        ckpts = list_checkpoints(ret['ckpt_dir'])
        if not ckpts:
            raise RuntimeError(f'training wrote no checkpoint in {ret["ckpt_dir"]}')
        return str(ckpts[-1])

    def stage_train(self, k: int, st: RoundStages, data: dict) -> str:
        if st.is_done('train'):
            return self._final_ckpt(st, 'train')
        from ..datasets import build_dataloader

        def loader_fn(dataset_cfg, *args, training=True, **kwargs):
            if training:
                dataset_cfg = labelled_training_cfg(dataset_cfg, data['infos'], data['dbinfos'])
            return build_dataloader(dataset_cfg, *args, training=training, **kwargs)
        epochs = self.round_epochs(int(st.load('data')['frames']))
        self._log(f'round {k}: training on the labelled frames' + (f' ({epochs} epochs)' if epochs else ''))
        ckpt = self._run_training(self._train_argv(k, 'train', epochs, self.opts.pretrained_model),
                                  loader_fn, None)
        self._mark_main(st, 'train', {'ckpt': ckpt})
        return ckpt

    # scoring --------------------------------------------------------------------------------
    def score(self, ckpt_or_model, ids, mc_passes: int = 0, dist: Optional[bool] = None,
              score_thresh: Optional[float] = None) -> dict:
        """Summaries of `ids`; split across the ranks (and merged on each) when several run."""
        dist = self.dist if dist is None else dist
        return score_frames(self.cfg, ids, ckpt_or_model, root_path=self.root,
                            batch_size=int(self.al['SCORE_BATCH_SIZE']), workers=self.opts.workers,
                            device=self.device, mc_passes=mc_passes, dropout_p=float(self.al['MC_DROPOUT_P']),
                            seed=self.opts.seed, dist=dist, score_thresh=score_thresh)

    def cpsp_score_thresh(self) -> Optional[float]:
        """The score threshold a CPSP teacher scores the pool at: the lowest candidate score the banks
        use (LOW_THRESH, or BACKGROUND_THRESH when lower) where it is below the model's
        POST_PROCESSING.SCORE_THRESH, else None (the model's own)."""
        model_thresh = self.cfg.MODEL.get('POST_PROCESSING', {}).get('SCORE_THRESH', None)
        lowest = lowest_candidate_score(self.cpsp_opts['LOW_THRESH'], self.cpsp_opts['BACKGROUND_THRESH'])
        return lowest if model_thresh is not None and lowest < float(model_thresh) else None

    @staticmethod
    def cpsp_names(gen: int) -> tuple:
        """(folder, banks stage, training stage) of CPSP generation `gen` (1: cpsp, cpsp, cpsp_train)."""
        return ('cpsp', 'cpsp', 'cpsp_train') if gen == 1 else (f'cpsp_g{gen}', f'cpsp_g{gen}', f'cpsp_train_g{gen}')

    @staticmethod
    def cpsp_teacher(gen: int) -> str:
        """The model whose pool scores make generation `gen`'s bank, for the logs."""
        return 'model A' if gen == 1 else f'the CPSP model of generation {gen - 1}'

    def stage_cpsp_banks(self, st: RoundStages, oracle: LabelOracle, pool: ActivePool, teacher_ckpt: str,
                         gen: int = 1) -> Path:
        """The banks of CPSP generation `gen`, the pool scored by `teacher_ckpt` (generation 1:
        model A, whose summaries CAL reuses as summaries_A.pkl)."""
        sub, stage, _ = self.cpsp_names(gen)
        d = st.dir / sub
        banks_file = d / 'cpsp_banks.pkl'
        if st.is_done(stage):
            return banks_file
        d.mkdir(parents=True, exist_ok=True)
        low_score = self.cpsp_score_thresh()
        self._log(f'CPSP: scoring {len(pool.unlabelled)} unlabelled frames with {self.cpsp_teacher(gen)}'
                  + (f' (score threshold {low_score:g})' if low_score is not None else ''))
        summaries = self.score(teacher_ckpt, pool.unlabelled, score_thresh=low_score)

        def build():
            if gen == 1:  # CAL reuses model A's summaries: they keep the model's own threshold
                model_thresh = self.cfg.MODEL.POST_PROCESSING.SCORE_THRESH
                save_summaries(summaries if low_score is None else summaries_above(summaries, model_thresh),
                               st.dir / 'summaries_A.pkl')
            if gen > 1 or low_score is not None:
                save_summaries(summaries, d / 'summaries_teacher.pkl')
            banks = build_banks(self.root, oracle, pool.labelled, summaries, self.class_names,
                                seed=self.opts.seed, low_thresh=float(self.cpsp_opts['LOW_THRESH']),
                                min_high_thresh=generation_floor(self.cpsp_opts['MIN_HIGH_THRESH'], gen),
                                max_candidates=int(self.cpsp_opts['MAX_CANDIDATES']),
                                background_thresh=self.cpsp_opts['BACKGROUND_THRESH'],
                                background_margin=float(self.cpsp_opts['BACKGROUND_MARGIN']),
                                negative_max_thresh=self.cpsp_opts['NEGATIVE_MAX_THRESH'])
            banks.save(banks_file)
            st.mark(stage, {'banks': str(banks_file), 'counts': banks.counts(), 'teacher': str(teacher_ckpt)})
        self._on_main(build, lambda: None)
        return banks_file

    def _cpsp_options(self) -> dict:
        o = {k: self.cpsp_opts[k] for k in CPSP_DATASET_KEYS if self.cpsp_opts.get(k) is not None}
        o['SEED'] = self.opts.seed
        return o

    def stage_cpsp_train(self, k: int, st: RoundStages, data: dict, pool: ActivePool, banks_file: Path,
                         ckpt_a: str, gen: int = 1) -> str:
        sub, _, stage = self.cpsp_names(gen)
        if st.is_done(stage):
            return self._final_ckpt(st, stage)
        banks = CPSPBanks.load(banks_file)
        unlabelled = list(pool.unlabelled)
        options = self._cpsp_options()
        loader_fn, net_fn, _ = make_cpsp_builders(
            lambda dataset_cfg: cpsp_dataset_cfg(dataset_cfg, options, banks_file, data['infos'], data['dbinfos']),
            banks, st.dir / sub, int(self.cpsp_opts['REFRESH_INTERVAL']),
            lambda model, dist: self.score(model, unlabelled, dist=dist, score_thresh=self.cpsp_score_thresh()),
            sampler_seed=self.opts.seed)
        epochs = self.cpsp_epochs()
        self._log(f'round {k}: CPSP training (generation {gen}, from model A) on pseudo-scenes from '
                  f'{self.cpsp_teacher(gen)}'
                  + (f' ({epochs} epochs)' if epochs else ''))
        ckpt = self._run_training(self._train_argv(k, sub, epochs, ckpt_a), loader_fn, net_fn)
        self._mark_main(st, stage, {'ckpt': ckpt})
        return ckpt

    def stage_score(self, st: RoundStages, pool: ActivePool, ckpt: str, ckpt_a: Optional[str]) -> None:
        if st.is_done('score'):
            return
        mc = int(self.al['MC_PASSES']) if self.strategy.name == 'MCDropout' else 0
        self._log(f'scoring {len(pool.unlabelled)} unlabelled and {len(pool.labelled)} labelled frames')

        def save(summaries, name):  # every rank scores its share; rank 0 writes the merged summaries
            if self.rank == 0:
                save_summaries(summaries, st.dir / name)
        save(self.score(ckpt, pool.unlabelled, mc_passes=mc), 'summaries.pkl')
        save(self.score(ckpt, pool.labelled), 'summaries_labelled.pkl')
        if self.strategy.name == 'CAL' and ckpt_a is not None:
            if not (st.dir / 'summaries_A.pkl').is_file():
                save(self.score(ckpt_a, pool.unlabelled), 'summaries_A.pkl')
            save(self.score(ckpt_a, pool.labelled), 'summaries_labelled_A.pkl')
        self._mark_main(st, 'score')

    def stage_select(self, k: int, st: RoundStages, pool: ActivePool) -> Selection:
        path = st.dir / 'selection.json'
        if st.is_done('select'):
            return _selection_from_json(read_json(path))
        summaries = load_summaries(st.dir / 'summaries.pkl')
        labelled = load_summaries(st.dir / 'summaries_labelled.pkl')
        if self.strategy.name == 'CAL' and (st.dir / 'summaries_labelled_A.pkl').is_file():
            summaries = (load_summaries(st.dir / 'summaries_A.pkl'), summaries)
            labelled = merge_model_summaries(load_summaries(st.dir / 'summaries_labelled_A.pkl'), labelled,
                                                  self.strategy.merge_iou)
        rng = np.random.default_rng([self.opts.seed, k])
        # the labelled frames' true boxes per class (their labels are read): CAL balances against them
        sel = self.strategy.select(summaries, labelled or None, self.budget_boxes, rng, dict(pool.boxes_per_class))
        sel.write(path)
        st.mark('select', {'frames': len(sel.frame_ids), 'expected_boxes': sel.total_expected_boxes})
        return sel

    def stage_annotate(self, k: int, st: RoundStages, oracle: LabelOracle, pool: ActivePool,
                       sel: Selection) -> ActivePool:
        """Annotate the selection in ranked order until the budget; returns the next round's pool."""
        if st.is_done('annotate'):
            return ActivePool.load(st.dir, oracle, round_index=k + 1)
        ann = annotate_until_budget(sel.ranked, oracle, self.budget_boxes)
        pool.add_annotation(ann)
        pool.round_index = k + 1
        write_json(ann.to_dict(), st.dir / 'annotation.json')
        pool.write(st.dir)
        st.mark('annotate', {'frames': ann.num_frames, 'boxes': ann.num_boxes})
        self._log(f'round {k}: annotated {ann.num_frames} frames, {ann.num_boxes} boxes '
                  f'(budget {self.budget_boxes}); next round has {pool.num_labelled_boxes} labelled boxes')
        return pool

    def stage_eval(self, k: int, st: RoundStages, ckpt: str) -> dict:
        path = st.dir / 'eval.json'
        if st.is_done('eval'):
            return read_json(path)
        from ..runtime import test_tool
        o = self.opts
        sub = self.cpsp_names(int(self.cpsp_opts['GENERATIONS']))[0] if o.cpsp else 'train'
        argv = ['--cfg_file', o.cfg_file, '--extra_tag', f'{o.extra_tag}/round_{k}/{sub}', '--ckpt', ckpt,
                '--workers', str(o.workers), '--device', o.device]
        if o.output_root:
            argv += ['--output_root', str(o.output_root)]
        if o.batch_size is not None:
            argv += ['--batch_size', str(o.batch_size)]
        if o.set_cfgs:
            argv += ['--set', *o.set_cfgs]
        if self.dist:  # every rank evaluates its share of the val split; rank 0 gets the merged result
            argv += ['--launcher', 'pytorch', '--tcp_port', str(o.tcp_port)]
        self._log(f'round {k}: evaluating {ckpt} on the val split')
        ret = test_tool.main(argv)
        out = None
        if self.rank == 0:
            result = next(iter(ret['results'].values())) if ret['results'] else {}
            result = {key: float(v) for key, v in result.items() if isinstance(v, (int, float, np.floating))}
            out = {'ckpt': ckpt, 'result': result, **map_from_eval(result, self.class_names)}
            write_json(out, path)
        self._mark_main(st, 'eval', {'mAP': out['mAP']} if out is not None else None)
        return out if out is not None else read_json(path)  # the other ranks read rank 0's result

    def stage_curve(self, k: int, st: RoundStages, trained_on: dict, pool: ActivePool, result: dict) -> dict:
        summary = {'round': k, 'labelled_boxes': trained_on['labelled_boxes'],
                   'labelled_frames': trained_on['labelled_frames'],
                   'labelled_boxes_per_class': trained_on['labelled_boxes_per_class'],
                   'next_round_labelled_boxes': pool.num_labelled_boxes, 'mAP': result['mAP'],
                   **{c: result[c] for c in self.class_names if c in result},
                   'strategy': self.strategy.name, 'cpsp': self.opts.cpsp}
        write_json(summary, st.dir / 'round_summary.json')
        points = []
        for j in range(k + 1):
            f = self.round_dir(j) / 'round_summary.json'
            if f.is_file():
                points.append(read_json(f))
        title = f'{self.exp_dir.parent.name}/{self.exp_dir.name}: {self.strategy.name}' + \
            (' + CPSP' if self.opts.cpsp else '')
        write_json({'points': points}, st.dir / 'al_curve.json')
        save_curve_png(points, self.class_names, st.dir / 'al_curve.png', title)
        write_json({'points': points}, self.exp_dir / 'al_curve.json')
        save_curve_png(points, self.class_names, self.exp_dir / 'al_curve.png', title)
        st.mark('round', {'mAP': summary['mAP'], 'labelled_boxes': summary['labelled_boxes']})
        return summary


def _selection_from_json(d: dict) -> Selection:
    return Selection(strategy=d['strategy'], budget_boxes=d['budget_boxes'], frame_ids=d['frame_ids'],
                     reserve=d['reserve'], scores=d['scores'], expected_boxes=d['expected_boxes'],
                     info=d.get('info', {}))


def run_active_learning(opts: RoundOptions) -> List[dict]:
    return ActiveLearningRun(opts).run()

