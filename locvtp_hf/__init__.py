"""LocVTP for Hugging Face transformers: localization-oriented video-text pre-training.

Importing the package registers its classes with transformers' `Auto*` classes, so that `AutoConfig`, `AutoModel`,
`AutoModelForPreTraining`, `AutoVideoProcessor` and `AutoProcessor` load LocVTP checkpoints, and registers the
`video-temporal-grounding` pipeline (with its `AutoModelForVideoTemporalGrounding`). Only what the registration needs
is imported with the package; its other public names (the index, the Hub helpers, the data loaders, ...) are imported
from their modules when first used.
"""

import importlib

from transformers import AutoConfig, AutoModel, AutoModelForPreTraining, AutoProcessor, AutoVideoProcessor
from transformers.pipelines import PIPELINE_REGISTRY

from .configuration_locvtp import LocVTPConfig
from .modeling_locvtp import (
    LocVTPForPreTraining,
    LocVTPForPreTrainingOutput,
    LocVTPForRetrieval,
    LocVTPForTemporalGrounding,
    LocVTPModel,
    LocVTPOutput,
    LocVTPPreTrainedModel,
    LocVTPRetrievalOutput,
    LocVTPTemporalGroundingOutput,
    LocVTPTextModelOutput,
    LocVTPVideoModelOutput,
)
from .pipeline_temporal_grounding import (
    NO_DEFAULT_MODEL,
    AutoModelForVideoTemporalGrounding,
    VideoTemporalGroundingPipeline,
)
from .processing_locvtp import LocVTPProcessor
from .video_processing_locvtp import LocVTPVideoProcessor


__version__ = "0.1.0"

AutoConfig.register(LocVTPConfig.model_type, LocVTPConfig, exist_ok=True)
AutoModel.register(LocVTPConfig, LocVTPModel, exist_ok=True)
AutoModelForPreTraining.register(LocVTPConfig, LocVTPForPreTraining, exist_ok=True)
AutoVideoProcessor.register(LocVTPConfig, LocVTPVideoProcessor, exist_ok=True)
AutoProcessor.register(LocVTPConfig, LocVTPProcessor, exist_ok=True)
AutoModelForVideoTemporalGrounding.register(LocVTPConfig, LocVTPForTemporalGrounding, exist_ok=True)
# `transformers.pipelines` is the only public home of the registry, and the pipeline class subclasses its `Pipeline`
PIPELINE_REGISTRY.register_pipeline(
    "video-temporal-grounding",
    pipeline_class=VideoTemporalGroundingPipeline,
    pt_model=AutoModelForVideoTemporalGrounding,
    default=NO_DEFAULT_MODEL,
    type="multimodal",
)

# Public names served from their modules on first use (PEP 562): each module and what it pulls in (`datasets`,
# `jinja2`, the Hub client, FAISS, ...) is imported only when a name of it is.
_LAZY_NAMES = {
    "GroundingLoadReport": "grounding_datasets",
    "load_grounding_dataset": "grounding_datasets",
    "push_to_hub": "hub",
    "save_for_hub": "hub",
    "LocVTPLoss": "loss",
    "create_model_card": "model_card",
    "eval_results_from_metrics": "model_card",
    "VideoIndex": "retrieval_index",
    "build_video_index": "retrieval_index",
    "load_index": "retrieval_index",
    "VideoDecodingError": "video_io",
    "plot_moments": "visualization",
}

__all__ = [
    "AutoModelForVideoTemporalGrounding",
    "GroundingLoadReport",
    "LocVTPConfig",
    "LocVTPForPreTraining",
    "LocVTPForPreTrainingOutput",
    "LocVTPForRetrieval",
    "LocVTPForTemporalGrounding",
    "LocVTPLoss",
    "LocVTPModel",
    "LocVTPOutput",
    "LocVTPPreTrainedModel",
    "LocVTPProcessor",
    "LocVTPRetrievalOutput",
    "LocVTPTemporalGroundingOutput",
    "LocVTPTextModelOutput",
    "LocVTPVideoModelOutput",
    "LocVTPVideoProcessor",
    "VideoDecodingError",
    "VideoIndex",
    "VideoTemporalGroundingPipeline",
    "build_video_index",
    "create_model_card",
    "eval_results_from_metrics",
    "load_grounding_dataset",
    "load_index",
    "plot_moments",
    "push_to_hub",
    "save_for_hub",
]


def __getattr__(name: str):
    if name not in _LAZY_NAMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_LAZY_NAMES[name]}", __name__), name)
    globals()[name] = value  # later lookups skip `__getattr__`
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
