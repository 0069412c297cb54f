"""S-SSAL active learning (DESIGN.md section 4): pools and box budgets, pool summaries, query
strategies (random, entropy, mc_dropout, coreset, badge, crb, cal) and CPSP banks and pseudo-scenes.
See docs/active_learning.md. Never imports pcdet_ext.alpi."""
from .cpsp import (BankObject, CPSPBanks, build_banks, build_labelled_banks, class_thresholds,
                   compose_scene, kmeans_1d, merge_candidates, refresh_pseudo_bank)
from .cpsp_dataset import CPSPDataset
from .pool import ActivePool, Annotation, LabelOracle, annotate_until_budget, check_budget
from .rounds import ActiveLearningRun, ALInputError, RoundOptions, run_active_learning
from .strategies import QueryStrategy, Selection, build_strategy, strategy_names
from .summaries import (FrameSummary, InferenceDropout, LabelFreeKittiDataset, build_label_free_dataloader,
                        load_detector, load_summaries, merge_summaries, save_summaries, score_frames,
                        score_pool)

__all__ = [n for n in dir() if not n.startswith('_')]
