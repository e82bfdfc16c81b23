"""LocVTP for Hugging Face transformers: localization-oriented video-text pre-training.

Importing the package registers its classes with transformers' `Auto*` classes, so that `AutoConfig`, `AutoModel`,
`AutoVideoProcessor` and `AutoProcessor` load LocVTP checkpoints.
"""

from transformers import AutoConfig, AutoModel, AutoProcessor, AutoVideoProcessor

from .configuration_locvtp import LocVTPConfig
from .loss import LocVTPLoss
from .modeling_locvtp import (
    LocVTPModel,
    LocVTPOutput,
    LocVTPPreTrainedModel,
    LocVTPTextModelOutput,
    LocVTPVideoModelOutput,
)
from .processing_locvtp import LocVTPProcessor
from .video_io import VideoDecodingError
from .video_processing_locvtp import LocVTPVideoProcessor


__version__ = "0.1.0"

AutoConfig.register(LocVTPConfig.model_type, LocVTPConfig, exist_ok=True)
AutoModel.register(LocVTPConfig, LocVTPModel, exist_ok=True)
AutoVideoProcessor.register(LocVTPConfig, LocVTPVideoProcessor, exist_ok=True)
AutoProcessor.register(LocVTPConfig, LocVTPProcessor, exist_ok=True)

__all__ = [
    "LocVTPConfig",
    "LocVTPLoss",
    "LocVTPModel",
    "LocVTPOutput",
    "LocVTPPreTrainedModel",
    "LocVTPProcessor",
    "LocVTPTextModelOutput",
    "LocVTPVideoModelOutput",
    "LocVTPVideoProcessor",
    "VideoDecodingError",
]
