"""OpenPCDet-compatible runtime: training loop, evaluation loop, checkpoints, optimizer and
LR schedules, distributed helpers, logging. `tools/train.py` and `tools/test.py` are thin faces
over `train_tool.main` / `test_tool.main`."""
from .batch import load_data_to_gpu, model_fn_decorator
from .checkpoint import (CheckpointError, checkpoint_state, list_checkpoints, load_params_from_file,
                         load_params_with_optimizer, prune_checkpoints, read_checkpoint, resume_latest,
                         save_checkpoint)
from .dist import get_dist_info, init_dist_pytorch, is_main_process, merge_results_dist, set_random_seed
from .eval_loop import eval_one_epoch, eval_settings
from .logger import create_logger, create_tb_writer
from .optimization import IterScheduler, build_optimizer, build_scheduler
from .train_loop import train_model, train_one_epoch

__all__ = [n for n in dir() if not n.startswith('_')]
