"""Active-learning benchmark on a synthetic pool: mAP (Car / Pedestrian / Cyclist, AP3D R40
moderate, val split) against labelled boxes for several strategies, with the fully labelled pool
as the upper bound. Writes <out>/bench_al.json, a PNG of the curves and a markdown report.

    # full size (hours on a 2-core CPU; minutes per round on a GPU):
    python tools/bench_al.py --frames 400 --seeds 0 1 2 --rounds 2 \\
        --initial_frac 0.01 --budget_frac 0.005 --doc docs/benchmarks_al.md
    # smoke (plumbing check, a tiny PointPillars, seconds):
    python tools/bench_al.py --smoke --out /tmp/bench_al_smoke --doc /tmp/bench_al_smoke/benchmarks_al.md
    # table + PNG of finished runs (e.g. rounds run by hand with tools/al_round.py), nothing trained:
    python tools/bench_al.py --collect /tmp/bench_al_smoke/output/bench_al/smoke --doc /tmp/collected.md
    # one round across seeds from a CSV of results (strategy,seed,labelled_boxes,mAP): table + PNG
    python tools/bench_al.py --seed_table docs/benchmarks_al_1350.csv --upper_bound_map 64.97

Every run goes through tools/al_round.py's driver (pcdet_ext.active.rounds), so a killed benchmark
resumes where it stopped when re-run with the same arguments. Strategies: random, entropy,
mc_dropout, coreset, badge, crb, cal, and `<name>+cpsp` (CPSP pre-training; cal+cpsp is S-SSAL).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import sys
import textwrap
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

import numpy as np  # noqa: E402

from pcdet_ext.active.al_curve import map_from_eval  # noqa: E402
from pcdet_ext.active.rounds import ALInputError, RoundOptions, run_active_learning  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
CLASSES = ['Car', 'Pedestrian', 'Cyclist']
DEFAULT_STRATEGIES = ['random', 'entropy', 'coreset', 'crb', 'cal', 'cal+cpsp']

# The smoke run's detector is cfgs/sssal/pointpillar_tiny.yaml: it proves the plumbing, not accuracy.
SMOKE_BASE = 'cfgs/sssal/pointpillar_tiny.yaml'

FULL_CFG = """_BASE_CONFIG_: {base}
DATA_CONFIG:
    DATA_PATH: {data}
"""
MIN_ITERS_CFG = """ACTIVE_LEARNING:
    MIN_TRAIN_ITERS: {iters}
"""


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--cfg_file', default='cfgs/sssal/second_synthetic.yaml', help='detector + ACTIVE_LEARNING config')
    p.add_argument('--smoke', action='store_true', help='tiny PointPillars, 16 frames, 1 epoch (plumbing check)')
    p.add_argument('--frames', type=int, default=None, help='synthetic frames (train pool + val), default 400 (smoke 16)')
    p.add_argument('--data', default=None, help='dataset folder (default <out>/data)')
    p.add_argument('--out', default='output/bench_al', help='output folder')
    p.add_argument('--strategies', nargs='+', default=DEFAULT_STRATEGIES)
    p.add_argument('--seeds', type=int, nargs='+', default=[0])
    p.add_argument('--rounds', type=int, default=2, help='selection rounds after the initial set')
    p.add_argument('--initial_frac', type=float, default=None,
                   help='initial set, share of the pool\'s boxes (default 0.01; smoke 0.15)')
    p.add_argument('--budget_frac', type=float, default=None,
                   help='boxes per round, share of the pool\'s boxes (default 0.005; smoke 0.1)')
    p.add_argument('--epochs', type=int, default=None, help='epochs per training (default: the config\'s; smoke 1)')
    p.add_argument('--cpsp_epochs', type=int, default=None, help='CPSP epochs (default: the config\'s; smoke 2)')
    p.add_argument('--min_train_iters', type=int, default=None,
                   help='ACTIVE_LEARNING.MIN_TRAIN_ITERS of every round\'s training (default: the config\'s)')
    p.add_argument('--initial_strategy', default=None,
                   help='the run whose round 0 (initial random set + model) every other strategy of the same seed '
                        'adopts (default: the first of --strategies)')
    p.add_argument('--no_share_initial', action='store_true',
                   help='every strategy draws and trains its own round 0 (same seed, so the same set)')
    p.add_argument('--variant', default=None,
                   help='name of a config variant (with --set): its runs are tagged <strategy>_<variant>_s<seed> and '
                        'reported as "<strategy> (<variant>)", next to the plain runs of the same --out')
    p.add_argument('--set', dest='set_cfgs', nargs='+', default=[], metavar='KEY VALUE',
                   help='config keys for every strategy run, as tools/al_round.py --set (e.g. '
                        'ACTIVE_LEARNING.CPSP.REFRESH_INTERVAL 2); needs --variant')
    p.add_argument('--workers', type=int, default=2)
    p.add_argument('--device', default='auto')
    p.add_argument('--no_upper_bound', action='store_true', help='skip the fully labelled training')
    p.add_argument('--doc', default=None, help='markdown report to write (e.g. docs/benchmarks_al.md)')
    p.add_argument('--collect', nargs='+', default=None, metavar='EXP_ROOT',
                   help='train nothing: report the finished runs found under these folders (e.g. rounds run by hand '
                        'with tools/al_round.py --extra_tag NAME_s<seed>), one curve per NAME over the seeds')
    p.add_argument('--upper_bound_map', type=float, default=None,
                   help='with --collect or --seed_table: the fully labelled mAP of an earlier run, drawn as the '
                        'reference line')
    p.add_argument('--seed_table', default=None, metavar='CSV',
                   help='train nothing: plot one round\'s per-seed mAP per strategy from a CSV with the columns '
                        'strategy,seed,labelled_boxes,mAP (rows kept in file order), next to the upper bound and '
                        'the target; writes CSV\'s name with .png and prints the markdown table')
    p.add_argument('--target_share', type=float, default=0.95,
                   help='with --seed_table: the target, as a share of --upper_bound_map (default 0.95)')
    args = p.parse_args(argv)
    if args.collect and args.seed_table:
        p.error('--collect and --seed_table are two reports: give one')
    if args.target_share <= 0:
        p.error(f'--target_share {args.target_share}: must be > 0 (a share of --upper_bound_map)')
    if args.set_cfgs and not args.variant:
        p.error('--set changes the runs\' config: name the variant with --variant (its runs get their own tags)')
    if args.variant is not None and not args.variant.replace('_', '').replace('-', '').isalnum():
        p.error(f'--variant {args.variant!r}: letters, digits, "_" and "-" only (it is part of folder names)')
    return args


def prepare_data(data: Path, frames: int, seed: int = 0) -> dict:
    from pcdet_ext.datasets.kitti.kitti_infos import create_kitti_infos
    from pcdet_ext.datasets.synthetic import generate_dataset
    generate_dataset(data, num_frames=frames, seed=seed, workers=1, progress=True, write_images=False)
    if not (data / 'kitti_infos_val.pkl').is_file() or not (data / 'kitti_infos_train.pkl').is_file():
        create_kitti_infos(data, workers=1, progress=True)
    return pool_stats(data)


def pool_stats(data: Path) -> dict:
    """Boxes of the chosen classes in the pool (the benchmark's yardstick; the AL runs never read
    these labels, they go through the oracle)."""
    import pickle
    with open(data / 'kitti_infos_train.pkl', 'rb') as f:
        infos = pickle.load(f)
    per_class = {c: 0 for c in CLASSES}
    for info in infos:
        for n in info['annos']['name']:
            if n in per_class:
                per_class[str(n)] += 1
    return {'frames': len(infos), 'boxes': int(sum(per_class.values())), 'boxes_per_class': per_class}


def write_cfg(out: Path, data: Path, base: str, smoke: bool, min_train_iters=None) -> str:
    f = out / 'cfgs' / 'bench_al' / ('smoke.yaml' if smoke else Path(base).name)
    f.parent.mkdir(parents=True, exist_ok=True)
    text = FULL_CFG.format(base=(REPO / SMOKE_BASE if smoke else Path(base)).resolve(), data=data.resolve())
    if min_train_iters is not None:
        text += MIN_ITERS_CFG.format(iters=int(min_train_iters))
    f.write_text(text)
    return str(f)


def upper_bound(cfg: str, out: Path, args) -> dict:
    """The detector trained on every pool frame with its labels (same schedule)."""
    marker = out / 'full_pool.json'
    if marker.is_file():
        return json.loads(marker.read_text())
    import pcdet_ext.active  # noqa: F401  (ACTIVE_LEARNING is informational for the training tool)
    from pcdet_ext.runtime import train_tool
    argv = ['--cfg_file', cfg, '--output_root', str(out), '--extra_tag', 'full_pool', '--workers', str(args.workers),
            '--device', args.device, '--fix_random_seed', '--max_ckpt_save_num', '2']
    if args.epochs:
        argv += ['--epochs', str(args.epochs)]
    t0 = time.time()
    ret = train_tool.main(argv)
    res = {'wall_s': time.time() - t0, **map_from_eval(ret['eval'], CLASSES)}
    marker.write_text(json.dumps(res, indent=1))
    return res


def run_tag(name: str, seed: int, variant=None) -> str:
    return f'{name.replace("+", "_")}{"_" + variant if variant else ""}_s{seed}'


def report_name(name: str, variant=None) -> str:
    return f'{name} ({variant})' if variant else name


def run_strategy(cfg: str, out: Path, name: str, seed: int, initial: int, budget: int, args) -> dict:
    strategy, _, extra = name.partition('+')
    if extra not in ('', 'cpsp'):
        raise ALInputError(f'--strategies: {name!r}: only "+cpsp" may follow a strategy name')
    initial_from = None
    source = args.initial_strategy or args.strategies[0]
    if not args.no_share_initial and name != source:
        # round 0 (labelled set + model A) is the same for every strategy of a seed: train it once
        # a source run outside --strategies is an earlier run of this --out, without the variant
        src_variant = args.variant if source in args.strategies else None
        initial_from = str(out / 'output' / Path(cfg).parent.name / Path(cfg).stem / run_tag(source, seed, src_variant))
    tag = run_tag(name, seed, args.variant)
    rounds = run_active_learning(RoundOptions(
        cfg_file=cfg, strategy=strategy, cpsp=extra == 'cpsp', budget_boxes=budget, initial_boxes=initial,
        rounds=args.rounds, final_round=True, extra_tag=tag, epochs=args.epochs,
        cpsp_epochs=args.cpsp_epochs, seed=seed, workers=args.workers, device=args.device, output_root=str(out),
        initial_from=initial_from, set_cfgs=list(args.set_cfgs)))
    exp = out / 'output' / Path(cfg).parent.name / Path(cfg).stem / tag
    return {'strategy': report_name(name, args.variant), 'seed': seed, 'wall_s': run_wall_s(exp),
            'points': [{k: r.get(k) for k in ('round', 'labelled_boxes', 'labelled_frames', 'mAP', *CLASSES)}
                       for r in rounds]}


def run_wall_s(exp_dir: Path) -> float:
    """Wall time of a run from its stage markers (first to last), so a run finished by an earlier
    or a parallel invocation reports its own time, not the resuming call's. An adopted round 0
    counts from its adoption (its training belongs to the source run)."""
    stamps, adopted = [], None
    for f in exp_dir.glob('round_*/done/*.json'):
        try:
            marker = json.loads(f.read_text())
            stamps.append(time.mktime(time.strptime(marker['time'], '%Y-%m-%d %H:%M:%S')))
        except (OSError, ValueError, KeyError):
            continue
        if f.parent.parent.name == 'round_0' and f.stem == 'train' and marker.get('adopted_from'):
            adopted = stamps[-1]
    if adopted is not None:  # the adopted round's data / pool markers keep the source run's times
        stamps = [t for t in stamps if t >= adopted]
    return max(stamps) - min(stamps) if stamps else 0.0


def collect_runs(roots: list) -> list:
    """Finished runs under experiment folders, in run_strategy's format. A run is a folder named
    <name>_s<seed> holding round_K/round_summary.json files; its curve is named <name>."""
    runs = []
    for root in map(Path, roots):
        if not root.is_dir():
            raise ALInputError(f'--collect: {root}: no such folder')
        for exp in sorted(d for d in root.iterdir() if d.is_dir()):
            m = re.fullmatch(r'(.+)_s(\d+)', exp.name)
            summaries = sorted(exp.glob('round_*/round_summary.json'), key=lambda f: int(f.parent.name[6:]))
            if not m or not summaries:
                continue
            points = []
            for f in summaries:
                try:
                    r = json.loads(f.read_text())
                except (OSError, ValueError) as e:
                    raise ALInputError(f'--collect: {f}: unreadable round summary ({e})') from e
                points.append({k: r.get(k) for k in ('round', 'labelled_boxes', 'labelled_frames', 'mAP', *CLASSES)})
            runs.append({'strategy': m.group(1), 'seed': int(m.group(2)), 'wall_s': run_wall_s(exp), 'points': points})
    if not runs:
        raise ALInputError(f'--collect: no finished round (round_K/round_summary.json) under {", ".join(roots)}')
    return runs


def aggregate(runs: list) -> dict:
    """Per strategy and round: mean labelled boxes, mean / std mAP over seeds."""
    table = {}
    for r in runs:
        for p in r['points']:
            table.setdefault(r['strategy'], {}).setdefault(p['round'], []).append(p)
    out = {}
    for s, rounds in table.items():
        out[s] = []
        for k in sorted(rounds):
            ps = rounds[k]
            out[s].append({'round': k, 'labelled_boxes': float(np.mean([p['labelled_boxes'] for p in ps])),
                           'mAP': float(np.mean([p['mAP'] for p in ps])),
                           'mAP_std': float(np.std([p['mAP'] for p in ps])), 'seeds': len(ps),
                           **{c: float(np.mean([p.get(c) or 0.0 for p in ps])) for c in CLASSES}})
    return out


def save_png(agg: dict, ub: dict, pool, path: Path, title: str) -> None:
    """AP against labelled boxes, as % of the pool, or as a count when pool is None."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=110)
    for s, pts in agg.items():
        xs = [100.0 * p['labelled_boxes'] / max(pool['boxes'], 1) if pool else p['labelled_boxes'] for p in pts]
        ax.errorbar(xs, [p['mAP'] for p in pts], yerr=[p['mAP_std'] for p in pts], marker='o', capsize=3, label=s)
    if ub:
        ax.axhline(ub['mAP'], color='k', ls='--', label='fully labelled')
    ax.set_xlabel('labelled boxes (% of the pool)' if pool else 'labelled boxes')
    ax.set_ylabel('mAP, AP3D R40 moderate (%)')
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def write_doc(path: Path, report: dict, png: Path) -> None:
    pool, ub, agg = report['pool'], report['upper_bound'], report['curves']
    lines = ['# Active-learning benchmark (synthetic pool)', '']
    if report['smoke']:
        lines += ['**Smoke run**: a tiny PointPillars, 1 epoch, a 16-frame dataset. It proves the benchmark runs '
                  'end to end; its numbers say nothing about the strategies.', '']
    lines += [f'Generated by `{report["command"]}`', '',
              f'* machine: {report["machine"]}', f'* date: {report["date"]}',
              f'* pool: {pool["frames"]} frames, {pool["boxes"]} boxes ({pool["boxes_per_class"]}); '
              f'val: KITTI-format synthetic val split',
              f'* schedule: initial {report["initial_boxes"]} boxes ({report["args"]["initial_frac"]:.1%}), '
              f'{report["budget_boxes"]} boxes per round ({report["args"]["budget_frac"]:.1%}), '
              f'{report["args"]["rounds"]} selection rounds + a final round; epochs {report["args"]["epochs"] or "cfg"}, '
              f'CPSP epochs {report["args"]["cpsp_epochs"] or "cfg"}; seeds {report["args"]["seeds"]}',
              f'* detector config: `{report["args"]["cfg_file"] if not report["smoke"] else "tiny PointPillars (smoke)"}`',
              f'* compute: {sum(r["wall_s"] for r in report["runs"]) / 60:.0f} min for the strategy runs '
              f'(per run, first to last stage marker: '
              + ', '.join(f'{r["strategy"]} {r["wall_s"] / 60:.0f}' for r in report['runs']) + ' min)'
              + (f', {ub["wall_s"] / 60:.0f} min for the upper bound' if ub else ''), '']
    if ub:
        lines += [f'Fully labelled upper bound: mAP {ub["mAP"]:.2f} '
                  f'(Car {ub.get("Car", float("nan")):.2f}, Pedestrian {ub.get("Pedestrian", float("nan")):.2f}, '
                  f'Cyclist {ub.get("Cyclist", float("nan")):.2f}), {ub["wall_s"]:.0f} s.', '']
    lines += ['| strategy | round | labelled boxes | % of pool | mAP (mean ± std) | Car | Ped | Cyc | / upper bound |',
              '|---|---|---|---|---|---|---|---|---|']
    for s, pts in agg.items():
        for p in pts:
            rel = f'{p["mAP"] / ub["mAP"]:.2f}' if ub and ub['mAP'] > 0 else '-'
            lines.append(f'| {s} | {p["round"]} | {p["labelled_boxes"]:.0f} | '
                         f'{100 * p["labelled_boxes"] / max(pool["boxes"], 1):.2f} | {p["mAP"]:.2f} ± {p["mAP_std"]:.2f} | '
                         f'{p["Car"]:.2f} | {p["Pedestrian"]:.2f} | {p["Cyclist"]:.2f} | {rel} |')
    lines += ['', f'![AP vs labelled boxes]({os.path.relpath(png, path.parent)})', '']
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text('\n'.join(lines))


def collect_main(args) -> int:
    """--collect: the table and PNG of finished runs, nothing trained."""
    try:
        runs = collect_runs(args.collect)
    except ALInputError as e:
        print(f'bench_al.py: error: {e}', file=sys.stderr)
        return 2
    agg = aggregate(runs)
    out = Path(args.doc).parent if args.doc else Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    png = out / (Path(args.doc).stem + '.png' if args.doc else 'bench_al_collected.png')
    ub = {'mAP': args.upper_bound_map} if args.upper_bound_map is not None else {}
    boxes = [p['labelled_boxes'] for r in runs for p in r['points']]
    save_png(agg, ub, None, png, 'AL curves (mean ± std over seeds)')  # a round summary has no pool size: x in boxes
    lines = ['| curve | round | seeds | labelled boxes | mAP (mean ± std) | Car | Ped | Cyc | per seed | run time (min) |',
             '|---|---|---|---|---|---|---|---|---|---|']
    for s, pts in agg.items():
        for p in pts:
            per_seed = ', '.join(f's{r["seed"]} {q["mAP"]:.2f}' for r in runs if r['strategy'] == s
                                 for q in r['points'] if q['round'] == p['round'])
            wall = ', '.join(f'{r["wall_s"] / 60:.0f}' for r in runs if r['strategy'] == s)
            lines.append(f'| {s} | {p["round"]} | {p["seeds"]} | {p["labelled_boxes"]:.1f} | '
                         f'{p["mAP"]:.2f} ± {p["mAP_std"]:.2f} | {p["Car"]:.2f} | {p["Pedestrian"]:.2f} | '
                         f'{p["Cyclist"]:.2f} | {per_seed} | {wall} |')
    text = '\n'.join(lines) + f'\n\n![AP vs labelled boxes]({png.name})\n'
    if args.doc:
        Path(args.doc).write_text(text)
    print(text + f'({len(runs)} runs, {min(boxes)}-{max(boxes)} labelled boxes; wrote {png})')
    return 0


SEED_TABLE_COLUMNS = ('strategy', 'seed', 'labelled_boxes', 'mAP')


def read_seed_table(path: Path) -> dict:
    """{strategy: [(seed, labelled_boxes, mAP), ...]} in file order, from a results CSV."""
    import csv
    try:
        with open(path, newline='') as f:
            reader = csv.DictReader(f)
            missing = [c for c in SEED_TABLE_COLUMNS if c not in (reader.fieldnames or [])]
            if missing:
                raise ALInputError(f'--seed_table: {path}: missing column(s) {", ".join(missing)} '
                                   f'(needs {",".join(SEED_TABLE_COLUMNS)})')
            table = {}
            for line, row in enumerate(reader, start=2):
                try:
                    entry = (int(row['seed']), int(row['labelled_boxes']), float(row['mAP']))
                except (TypeError, ValueError):
                    raise ALInputError(f'--seed_table: {path}, line {line}: seed and labelled_boxes must be '
                                       f'integers and mAP a number, got {row}') from None
                name = row['strategy'].strip()
                if any(seed == entry[0] for seed, _, _ in table.get(name, ())):
                    raise ALInputError(f'--seed_table: {path}, line {line}: {name!r} has seed {entry[0]} twice')
                table.setdefault(name, []).append(entry)
    except OSError as e:
        raise ALInputError(f'--seed_table: {path}: {e.strerror or e}') from e
    if not table:
        raise ALInputError(f'--seed_table: {path}: no result rows')
    return table


def save_seed_png(table: dict, ub_map, target_share: float, path: Path, title: str) -> None:
    """One row per strategy: each seed's mAP as a dot, the mean ± std as a bar; the upper bound and
    the target as vertical lines, so the distance to the target reads at a glance."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    names = list(table)
    seeds = sorted({s for rows in table.values() for s, _, _ in rows})
    markers = 'osD^vP*X'
    height = 0.7 * len(names) + 2.0  # inches
    fig, ax = plt.subplots(figsize=(11, height), dpi=110)
    in_legend = set()
    for i, name in enumerate(names):
        maps = np.array([m for _, _, m in table[name]])
        y = len(names) - 1 - i  # the first row of the CSV on top
        ax.barh(y, maps.mean(), xerr=maps.std(), height=0.5, color='0.75', capsize=3)
        for seed, _, m in table[name]:  # one colour and marker per seed, so a seed reads across rows
            k = seeds.index(seed)
            ax.scatter(m, y, color=f'C{k}', marker=markers[k % len(markers)], zorder=3, s=28,
                       label=None if seed in in_legend else f'seed {seed}')
            in_legend.add(seed)
    if ub_map is not None:
        ax.axvline(ub_map, color='k', ls='--', label=f'fully labelled ({ub_map:.2f})')
        ax.axvline(target_share * ub_map, color='C3', ls=':', label=f'target ({target_share:.2f} of it)')
    # below the plot: beside it, the legend and long strategy names left the axes a sliver
    ax.legend(fontsize=8, loc='upper center', bbox_to_anchor=(0.5, -0.6 / height - 0.02),
              ncol=len(seeds) + 2)
    ax.set_yticks(range(len(names)), [textwrap.fill(n, 48) for n in names[::-1]], fontsize=8)
    ax.set_xlabel('mAP, AP3D R40 moderate (%)')
    ax.set_title(title)
    ax.grid(axis='x', alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def seed_table_main(args) -> int:
    """--seed_table: the markdown table (mean ± std over seeds, share of the upper bound) and the PNG."""
    path = Path(args.seed_table)
    try:
        table = read_seed_table(path)
    except ALInputError as e:
        print(f'bench_al.py: error: {e}', file=sys.stderr)
        return 2
    seeds = sorted({s for rows in table.values() for s, _, _ in rows})
    lines = ['| strategy | ' + ' | '.join(f'seed {s}' for s in seeds) + ' | mean ± std | / upper bound |',
             '|---|' + '---|' * (len(seeds) + 2)]
    for name, rows in table.items():
        by_seed = {s: (b, m) for s, b, m in rows}
        maps = np.array([m for _, _, m in rows])
        cells = [f'{by_seed[s][1]:.2f} ({by_seed[s][0]})' if s in by_seed else '-' for s in seeds]
        rel = f'{maps.mean() / args.upper_bound_map:.2f}' if args.upper_bound_map else '-'
        lines.append(f'| {name} | ' + ' | '.join(cells) + f' | {maps.mean():.2f} ± {maps.std():.2f} | {rel} |')
    png = path.with_suffix('.png')
    save_seed_png(table, args.upper_bound_map, args.target_share, png, f'{path.stem}: mAP per seed, bar = mean ± std')
    print('\n'.join(lines) + f'\n\nwrote {png}')
    return 0


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.collect:
        return collect_main(args)
    if args.seed_table:
        return seed_table_main(args)
    t0 = time.time()
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    frames = args.frames or (16 if args.smoke else 400)
    if args.smoke:
        args.epochs = args.epochs or 1
        args.cpsp_epochs = args.cpsp_epochs or 2
    if args.initial_frac is None:
        args.initial_frac = 0.15 if args.smoke else 0.01
    if args.budget_frac is None:
        args.budget_frac = 0.1 if args.smoke else 0.005
    data = Path(args.data).resolve() if args.data else out / 'data'
    try:
        pool = prepare_data(data, frames)
        initial = max(1, int(round(args.initial_frac * pool['boxes'])))
        budget = max(1, int(round(args.budget_frac * pool['boxes'])))
        cfg = write_cfg(out, data, args.cfg_file, args.smoke, args.min_train_iters)
        ub = {} if args.no_upper_bound else upper_bound(cfg, out, args)
        source = args.initial_strategy or args.strategies[0]
        order = sorted(args.strategies, key=lambda s: s != source)  # the shared round 0 first
        runs = [run_strategy(cfg, out, s, seed, initial, budget, args) for seed in args.seeds for s in order]
    except ALInputError as e:
        print(f'bench_al.py: error: {e}', file=sys.stderr)
        return 2
    agg = aggregate(runs)
    import torch
    report = {'smoke': args.smoke, 'args': vars(args), 'command': 'python tools/bench_al.py ' + ' '.join(argv or sys.argv[1:]),
              'machine': f'{platform.node()} {platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores, '
                         f'torch {torch.__version__}, device {args.device}'
                         + (f' ({torch.cuda.get_device_name(0)})' if torch.cuda.is_available() else ''),
              'date': time.strftime('%Y-%m-%d'), 'pool': pool, 'initial_boxes': initial, 'budget_boxes': budget,
              'upper_bound': ub, 'runs': runs, 'curves': agg, 'wall_s': time.time() - t0}
    (out / 'bench_al.json').write_text(json.dumps(report, indent=1))
    png = (Path(args.doc).parent if args.doc else out) / 'benchmarks_al.png'
    png.parent.mkdir(parents=True, exist_ok=True)
    save_png(agg, ub, pool, png, f'AL on a {pool["frames"]}-frame synthetic pool' + (' (smoke)' if args.smoke else ''))
    if args.doc:
        write_doc(Path(args.doc), report, png)
    print(f'{"strategy":>12} {"round":>5} {"boxes":>7} {"mAP":>7}')
    for s, pts in agg.items():
        for p in pts:
            print(f'{s:>12} {p["round"]:>5} {p["labelled_boxes"]:>7.0f} {p["mAP"]:>7.2f}')
    if ub:
        print(f'{"full pool":>12} {"":>5} {pool["boxes"]:>7} {ub["mAP"]:>7.2f}')
    print(f'wrote {out / "bench_al.json"}, {png}' + (f', {args.doc}' if args.doc else ''))
    return 0


if __name__ == '__main__':
    sys.exit(main())
