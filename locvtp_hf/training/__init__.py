"""
What the example training scripts share: their argument groups and `--config` parsing ([`parse_arguments`]), the
run's accelerator, the new small models of a run without a checkpoint, checkpoints with atomic writes and exact
resume, and the one training loop ([`train`]) that pre-training, retrieval and grounding fine-tuning call with their
own loss function (an [`EmbeddingLoss`] makes gradient accumulation add negatives).
"""

from .accelerator import setup_accelerator
from .accumulation import EmbeddingLoss, cached_embedding_step
from .arguments import (
    ModelArguments,
    SyntheticWorldArguments,
    TrainingArguments,
    check_training_arguments,
    parse_arguments,
    recorded_arguments,
)
from .checkpointing import (
    PARTIAL_SUFFIX,
    BestModel,
    RESUMABLE_CHANGES,
    check_resume_arguments,
    checkpoint_step,
    latest_checkpoint,
    load_data_position,
    save_checkpoint,
)
from .gradients import term_gradient_norms
from .loop import EvaluationFunction, LossFunction, TrainingResult, TrainingStep, train
from .nonfinite import NonFiniteLossGuard
from .optimization import adamw_optimizer, cosine_schedule
from .small_model import (
    SMALL_VISION_MODELS,
    check_model_arguments,
    locvtp_fields,
    new_processor,
    small_model_config,
    word_tokenizer,
)


__all__ = [
    "BestModel",
    "PARTIAL_SUFFIX",
    "RESUMABLE_CHANGES",
    "SMALL_VISION_MODELS",
    "ModelArguments",
    "EmbeddingLoss",
    "EvaluationFunction",
    "LossFunction",
    "NonFiniteLossGuard",
    "SyntheticWorldArguments",
    "TrainingArguments",
    "TrainingResult",
    "TrainingStep",
    "adamw_optimizer",
    "cached_embedding_step",
    "check_model_arguments",
    "check_resume_arguments",
    "check_training_arguments",
    "checkpoint_step",
    "cosine_schedule",
    "latest_checkpoint",
    "load_data_position",
    "locvtp_fields",
    "new_processor",
    "parse_arguments",
    "recorded_arguments",
    "save_checkpoint",
    "setup_accelerator",
    "small_model_config",
    "term_gradient_norms",
    "train",
    "word_tokenizer",
]
