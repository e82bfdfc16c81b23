"""LocVTP for Hugging Face transformers: localization-oriented video-text pre-training.

Importing the package registers its classes with transformers' `Auto*` classes, so that `AutoConfig`, `AutoModel`,
`AutoVideoProcessor` and `AutoProcessor` load LocVTP checkpoints, and registers the `video-temporal-grounding`
pipeline (with its `AutoModelForVideoTemporalGrounding`).
"""

from transformers import AutoConfig, AutoModel, AutoProcessor, AutoVideoProcessor
from transformers.pipelines import PIPELINE_REGISTRY

from .configuration_locvtp import LocVTPConfig
from .grounding_datasets import GroundingLoadReport, load_grounding_dataset
from .hub import push_to_hub, save_for_hub
from .loss import LocVTPLoss
from .modeling_locvtp import (
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
from .model_card import create_model_card, eval_results_from_metrics
from .pipeline_temporal_grounding import (
    NO_DEFAULT_MODEL,
    AutoModelForVideoTemporalGrounding,
    VideoTemporalGroundingPipeline,
)
from .processing_locvtp import LocVTPProcessor
from .retrieval_index import VideoIndex, build_video_index, load_index
from .video_io import VideoDecodingError
from .video_processing_locvtp import LocVTPVideoProcessor
from .visualization import plot_moments


__version__ = "0.1.0"

AutoConfig.register(LocVTPConfig.model_type, LocVTPConfig, exist_ok=True)
AutoModel.register(LocVTPConfig, LocVTPModel, exist_ok=True)
AutoVideoProcessor.register(LocVTPConfig, LocVTPVideoProcessor, exist_ok=True)
AutoProcessor.register(LocVTPConfig, LocVTPProcessor, exist_ok=True)
AutoModelForVideoTemporalGrounding.register(LocVTPConfig, LocVTPForTemporalGrounding, exist_ok=True)
PIPELINE_REGISTRY.register_pipeline(
    "video-temporal-grounding",
    pipeline_class=VideoTemporalGroundingPipeline,
    pt_model=AutoModelForVideoTemporalGrounding,
    default=NO_DEFAULT_MODEL,
    type="multimodal",
)

__all__ = [
    "AutoModelForVideoTemporalGrounding",
    "GroundingLoadReport",
    "LocVTPConfig",
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
