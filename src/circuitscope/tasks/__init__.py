"""Tasks (clean/corrupted prompt pairs with answers) and the metrics that score them.

``Task`` holds the batches; ``IOIDataset`` generates IOI prompts; ``simple_ioi_task``,
``day_of_week_task``, ``induction_task`` and ``speaker_task`` build the seed notebooks' other
tasks; ``metrics`` turns logits into logit differences, normalised patching scores, KL
divergences and span losses.
"""

from circuitscope.tasks.days import day_of_week_task
from circuitscope.tasks.induction import INDUCTION_CORRUPTIONS, default_token_pool, induction_task
from circuitscope.tasks.ioi import NAMES, IOIDataset, IOIPrompt, filter_names, ioi_task
from circuitscope.tasks.metrics import (
    CONVENTIONS,
    NormalizedMetric,
    check_baselines,
    kl_to_clean,
    logit_diff,
    logits_at,
    span_log_prob,
    span_loss,
    task_logit_diff,
    task_span_log_prob,
)
from circuitscope.tasks.simple_ioi import simple_ioi_task
from circuitscope.tasks.speaker import speaker_task
from circuitscope.tasks.task import Task, TaskError, as_tokenizer, find_token
from circuitscope.tasks.task_file import load_task_file

__all__ = [
    "Task",
    "TaskError",
    "as_tokenizer",
    "find_token",
    "load_task_file",
    "IOIDataset",
    "IOIPrompt",
    "NAMES",
    "filter_names",
    "ioi_task",
    "simple_ioi_task",
    "day_of_week_task",
    "induction_task",
    "default_token_pool",
    "INDUCTION_CORRUPTIONS",
    "speaker_task",
    "logits_at",
    "logit_diff",
    "task_logit_diff",
    "NormalizedMetric",
    "check_baselines",
    "CONVENTIONS",
    "kl_to_clean",
    "span_log_prob",
    "span_loss",
    "task_span_log_prob",
]
