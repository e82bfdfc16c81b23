"""
The new small models the example scripts train when no checkpoint is given: a word-level tokenizer over the run's
sentences (the synthetic world needs no Hub tokenizer), the config of both towers, and the matching processor.
"""

from tokenizers.pre_tokenizers import BertPreTokenizer
from transformers import BertTokenizer

from ..configuration_locvtp import LocVTPConfig
from ..processing_locvtp import LocVTPProcessor
from ..video_processing_locvtp import LocVTPVideoProcessor
from .arguments import ModelArguments


# the clip encoders a new small model can have; a video transformer's tubelets span two frames
SMALL_VISION_MODELS = {"videomae": {"tubelet_size": 2}, "timesformer": {}, "vit": {}}


def check_model_arguments(args: ModelArguments) -> None:
    """A clear error for a clip encoder a new small model cannot have."""
    if args.vision_model_type not in SMALL_VISION_MODELS:
        raise ValueError(
            f"--vision_model_type must be one of {list(SMALL_VISION_MODELS)}, got {args.vision_model_type!r}."
        )


def word_tokenizer(sentences) -> BertTokenizer:
    """A word-level BERT tokenizer over the words of `sentences` (the synthetic world needs no Hub tokenizer)."""
    split = BertPreTokenizer().pre_tokenize_str  # the tokenizer's own word and punctuation split
    words = sorted({word for sentence in sentences for word, _ in split(sentence.lower())})
    return BertTokenizer(
        vocab={token: i for i, token in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words])}
    )


def locvtp_fields(args: ModelArguments) -> dict:
    """The LocVTP fields of a new model, whatever its towers."""
    return dict(projection_dim=args.projection_dim, num_clips=args.num_clips)


def small_model_config(args: ModelArguments, tokenizer, **config_fields) -> LocVTPConfig:
    """
    The config of a new small model: two towers of `args.hidden_size` x `args.num_hidden_layers`, a BERT text tower
    over `tokenizer`'s vocabulary and the clip encoder `args.vision_model_type`. `config_fields` set other
    [`LocVTPConfig`] fields (e.g. the pre-training loss weights).
    """
    tower = dict(
        hidden_size=args.hidden_size,
        num_hidden_layers=args.num_hidden_layers,
        num_attention_heads=4,
        intermediate_size=2 * args.hidden_size,
    )
    vision = dict(model_type=args.vision_model_type, image_size=args.image_size, patch_size=args.patch_size, **tower)
    return LocVTPConfig(
        vision_config={**vision, **SMALL_VISION_MODELS[args.vision_model_type]},
        text_config=dict(
            model_type="bert",
            vocab_size=len(tokenizer),
            max_position_embeddings=max(128, args.max_text_length),
            **tower,
        ),
        frames_per_clip=args.frames_per_clip,
        **locvtp_fields(args),
        **config_fields,
    )


def new_processor(config: LocVTPConfig, tokenizer, max_text_length: int) -> LocVTPProcessor:
    """The processor of a new model: clips laid out and sized as `config` says, and `tokenizer`."""
    height, width = config.image_size
    video_processor = LocVTPVideoProcessor(
        num_clips=config.num_clips,
        frames_per_clip=config.frames_per_clip,
        size={"shortest_edge": min(height, width)},
        crop_size={"height": height, "width": width},
    )
    return LocVTPProcessor(video_processor, tokenizer, max_text_length=max_text_length)
