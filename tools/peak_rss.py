"""Run a command and report the peak resident memory of its whole process tree (the command
plus its children, e.g. data-loader workers), sampled every 0.2 s.

    python tools/peak_rss.py -- python tools/train.py --cfg_file ...
"""
import subprocess
import sys
import time

import psutil


def tree_rss(proc: psutil.Process) -> int:
    total = 0
    for p in [proc] + proc.children(recursive=True):
        try:
            total += p.memory_info().rss
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return total


def main(argv):
    if '--' in argv:
        argv = argv[argv.index('--') + 1:]
    if not argv:
        raise SystemExit('usage: python tools/peak_rss.py -- COMMAND [ARGS...]')
    t0 = time.time()
    child = subprocess.Popen(argv)
    proc = psutil.Process(child.pid)
    peak = 0
    while child.poll() is None:
        try:
            peak = max(peak, tree_rss(proc))
        except psutil.NoSuchProcess:
            break
        time.sleep(0.2)
    print(f'[peak_rss] exit {child.returncode}, wall {time.time() - t0:.1f} s, '
          f'peak resident memory of the process tree {peak / 2**30:.2f} GiB', flush=True)
    return child.returncode


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
