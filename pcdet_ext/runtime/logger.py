"""Logging: console + log file on rank 0, warnings only elsewhere."""
from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Optional

_FMT = '%(asctime)s  %(levelname)5s  %(message)s'


def create_logger(log_file: Optional[Path] = None, rank: int = 0, name: Optional[str] = None) -> logging.Logger:
    """A fresh logger (own name per log file so repeated in-process runs do not stack handlers)."""
    logger = logging.getLogger(name or f'pcdet_ext.run.{log_file or "console"}')
    logger.setLevel(logging.INFO if rank == 0 else logging.WARNING)
    logger.propagate = False
    for h in list(logger.handlers):
        logger.removeHandler(h)
        h.close()
    fmt = logging.Formatter(_FMT)
    console = logging.StreamHandler(sys.stdout)
    console.setFormatter(fmt)
    logger.addHandler(console)
    if log_file is not None and rank == 0:
        Path(log_file).parent.mkdir(parents=True, exist_ok=True)
        fh = logging.FileHandler(str(log_file))
        fh.setFormatter(fmt)
        logger.addHandler(fh)
    return logger


def close_logger(logger: logging.Logger):
    for h in list(logger.handlers):
        logger.removeHandler(h)
        h.close()


def create_tb_writer(log_dir: Path, rank: int = 0):
    """tensorboardX writer on rank 0, None elsewhere (callers check)."""
    if rank != 0:
        return None
    from tensorboardX import SummaryWriter
    return SummaryWriter(log_dir=str(log_dir))
