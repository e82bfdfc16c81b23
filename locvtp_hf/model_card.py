"""Model cards of LocVTP checkpoints: the Hub `README.md`, generated from what a run knows.

The card is the package's template (`locvtp_hf/MODEL_CARD.md`, a copy of the repository's top-level MODEL_CARD.md)
filled in with the checkpoint's config, the class that is shared, the run's training data, hyperparameters and
evaluation figures. The figures also go to the card's `model-index` metadata, which the Hub displays. The card is
public: it names local folders by their last part only, never by a path of this machine.
"""

import dataclasses
import math
import numbers
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from huggingface_hub import EvalResult, ModelCard, ModelCardData
from huggingface_hub.errors import HFValidationError
from huggingface_hub.utils import validate_repo_id
from transformers import PreTrainedModel
from transformers.utils import logging

from .pipeline_temporal_grounding import TASK as GROUNDING_TASK


logger = logging.get_logger(__name__)

MODEL_CARD_TEMPLATE = Path(__file__).with_name("MODEL_CARD.md")
"""The card template shipped with the package; the repository's top-level MODEL_CARD.md is a copy of it."""

LOCVTP_TAGS = ("locvtp", "video-text", "video", "temporal-localization")

# An absolute path in the card's text (`/data/runs/x`, `C:\data\x`): at the start, or after a space, a quote, a
# backtick or an opening parenthesis, up to the next of them.
_ABSOLUTE_PATH = re.compile(r"(?<![^\s`'\"(])(?:/|[A-Za-z]:[\\/])[^\s`'\"()]+")


@dataclass(frozen=True)
class ClassCard:
    """
    What a model card says about one model class.

    Args:
        pipeline_tag (`str` or `None`):
            The Hub task of the class: one of the Hub's pipeline types (huggingface.js `PIPELINE_DATA`; the Hub
            rejects other values) whose `transformers.pipeline` runs on a checkpoint of the class. None when no such
            task exists: the Hub shows the task as its widget and inference snippet, so a task that fails misleads.
        tags (`tuple[str, ...]`):
            Hub tags of the class, added to the LocVTP tags. A tag that names a pipeline task (such as the custom
            `video-temporal-grounding` task registered by `import locvtp_hf`) must run on a checkpoint of the class.
        architecture (`str`):
            What kind of model the class is, for the card's "Model type".
        summary (`str`):
            The card's first paragraph: what the class computes and returns.
        usage (`str`):
            A Python example that loads the checkpoint named by the variable `checkpoint` (set just above it in the
            card) and runs it on the files `video1.mp4` and `video2.mp4`.
        objective (`str`, *optional*):
            How a task class is fine-tuned (Markdown); the card follows it with the encoder's LocVTP pre-training
            objective. None for the pre-trained encoder itself.
        config_prefix (`str`, *optional*):
            The prefix of the config fields of the class's task head (e.g. `"grounding_"`). The card lists these
            fields only for this class, and the fields without a task prefix for every class.
    """

    pipeline_tag: str | None
    tags: tuple[str, ...]
    architecture: str
    summary: str
    usage: str
    objective: str | None = None
    config_prefix: str | None = None


CLASS_CARDS: dict[str, ClassCard] = {
    "LocVTPModel": ClassCard(
        # No Hub task runs: `feature-extraction` builds a pipeline whose forward needs both videos and texts. The
        # `video-temporal-grounding` pipeline grounds zero-shot with the pre-trained clip embeddings.
        pipeline_tag=None,
        tags=(GROUNDING_TASK, "video-retrieval", "temporal-grounding"),
        architecture="video-text dual encoder",
        summary=(
            "This is a pre-trained LocVTP video-text encoder (`LocVTPModel`). It returns one embedding per video "
            "clip (`clip_embeds`, the localization features), a video embedding, a sentence embedding and one "
            "embedding per word, all in one joint space. It has no task head: use its embeddings for retrieval, or "
            "as features for temporal grounding and other localization heads."
        ),
        usage='''\
import torch
from transformers import AutoModel, AutoProcessor

import locvtp_hf  # noqa: F401  (registers LocVTP with the Auto classes)

model = AutoModel.from_pretrained(checkpoint).eval()
processor = AutoProcessor.from_pretrained(checkpoint)

# Retrieval: one embedding per video and per sentence; their dot product is the cosine similarity.
videos = ["video1.mp4", "video2.mp4"]
queries = ["a person opens a door", "a person drinks from a cup"]
with torch.no_grad():
    video = model.get_video_features(processor(videos=videos, return_tensors="pt")["pixel_values_videos"])
    text = model.get_text_features(**processor(text=queries, return_tensors="pt"))
similarity = text.pooler_output @ video.pooler_output.T  # [num_queries, num_videos]

# Localization features: one embedding per clip, with each clip's (start, end) in seconds.
inputs = processor(videos=videos[:1], return_tensors="pt")
with torch.no_grad():
    clips = model.get_video_features(inputs["pixel_values_videos"]).clip_embeds[0]  # [num_clips, projection_dim]
clip_scores = clips @ text.pooler_output[0]  # how well each clip matches the first query
print(inputs["clip_spans"][0], clip_scores)''',
    ),
    "LocVTPForPreTraining": ClassCard(
        # As LocVTPModel, whose weights it holds; the tags name no pipeline: share the LocVTPModel to be used, this
        # class to continue pre-training.
        pipeline_tag=None,
        tags=("video-retrieval", "temporal-grounding"),
        architecture="video-text dual encoder with the LocVTP pre-training head",
        summary=(
            "This is a LocVTP pre-training checkpoint (`LocVTPForPreTraining`): the video-text encoder "
            "(`LocVTPModel`, its `locvtp` attribute) with the context projection head and the coarse, fine-grained "
            "and temporal-aware losses, to continue LocVTP pre-training. `LocVTPModel.from_pretrained`, "
            "`LocVTPForRetrieval.from_pretrained` and `LocVTPForTemporalGrounding.from_pretrained` load its encoder "
            "for use and fine-tuning."
        ),
        usage='''\
from transformers import AutoProcessor

from locvtp_hf import LocVTPForPreTraining

model = LocVTPForPreTraining.from_pretrained(checkpoint)
processor = AutoProcessor.from_pretrained(checkpoint)

# one more pre-training step: each video with the sentence that describes (a span of) it
inputs = processor(videos=["video1.mp4", "video2.mp4"], text=["a person opens a door", "a person drinks from a cup"],
                   training=True, return_tensors="pt")
outputs = model(**inputs)
outputs.loss.backward()
print(outputs.loss_coarse, outputs.loss_fine, outputs.loss_temporal)''',
    ),
    "LocVTPForRetrieval": ClassCard(
        # No Hub task runs: the Hub has no text-to-video retrieval task, and `video-classification` cannot load the
        # model (it needs a fixed label set, transformers has no zero-shot video classification pipeline).
        pipeline_tag=None,
        tags=("text-to-video-retrieval", "video-text-retrieval"),
        architecture="video-text dual encoder scored for retrieval",
        summary=(
            "This is a LocVTP text-video retrieval model (`LocVTPForRetrieval`). It scores every text against every "
            "video by the similarity of their embeddings (optionally fused with a clip-word score), so it ranks "
            "videos for a text query and texts for a video (zero-shot video classification); "
            "`locvtp_hf.build_video_index(model, processor, videos)` makes a searchable index of a video "
            "collection."
        ),
        usage='''\
import torch
from transformers import AutoProcessor

from locvtp_hf import LocVTPForRetrieval

model = LocVTPForRetrieval.from_pretrained(checkpoint).eval()
processor = AutoProcessor.from_pretrained(checkpoint)

videos = ["video1.mp4", "video2.mp4"]
queries = ["a person opens a door", "a person drinks from a cup"]
with torch.no_grad():
    outputs = model(**processor(videos=videos, text=queries, return_tensors="pt"))
ranking = outputs.logits_per_text.argsort(dim=-1, descending=True)  # per query, the videos from best to worst
print(ranking)''',
        objective=(
            "Fine-tuning: symmetric InfoNCE between the paired texts and videos over the global batch of all "
            "processes, on the retrieval score `(1 - w) * <s, z> + w * fine` (`w` = `retrieval_fusion_weight`, `fine` "
            "the clip-word score) scaled by the learnable logit scale."
        ),
        config_prefix="retrieval_",
    ),
    "LocVTPForTemporalGrounding": ClassCard(
        # The Hub has no temporal grounding task (video-text-to-text would promise generated text): the custom task
        # registered by `import locvtp_hf` goes in the tags.
        pipeline_tag=None,
        tags=(GROUNDING_TASK, "temporal-grounding", "moment-retrieval", "video-grounding"),
        architecture="video-text dual encoder with a 2D-TAN temporal grounding head",
        summary=(
            "This is a LocVTP temporal grounding model (`LocVTPForTemporalGrounding`): given an untrimmed video and a "
            "sentence, it scores every candidate moment of a 2D temporal map (a 2D-TAN head over the LocVTP clip "
            "features) and returns the best moments, in seconds."
        ),
        usage='''\
import torch
from transformers import AutoProcessor

from locvtp_hf import LocVTPForTemporalGrounding

model = LocVTPForTemporalGrounding.from_pretrained(checkpoint).eval()
processor = AutoProcessor.from_pretrained(checkpoint)

# the whole video is cut into clips; one query per video
inputs = processor(videos=["video1.mp4"], text=["a person opens a door"], task="grounding", return_tensors="pt")
with torch.no_grad():
    outputs = model(**inputs)
moments = processor.post_process_grounding(outputs, top_k=5)
print(moments[0])  # [{"start": ..., "end": ..., "score": ...}, ...] in seconds, best first''',
        objective=(
            "Fine-tuning: binary cross-entropy between the score of every candidate moment of the 2D map and its "
            "temporal IoU with the annotated moment, rescaled from [`grounding_iou_min`, `grounding_iou_max`] to "
            "[0, 1]; the LocVTP encoder stays fixed when `grounding_freeze_encoder` is set."
        ),
        config_prefix="grounding_",
    ),
}


def class_card(model_class: type) -> ClassCard:
    """The [`ClassCard`] of `model_class` or of its nearest base class that has one (matched by class name, so
    that classes loaded as remote code match too)."""
    for base in model_class.__mro__:
        if base.__name__ in CLASS_CARDS:
            return CLASS_CARDS[base.__name__]
    raise ValueError(
        f"No model card information for {model_class.__name__}: add a ClassCard for it to "
        f"locvtp_hf.model_card.CLASS_CARDS (known classes: {', '.join(sorted(CLASS_CARDS))})."
    )


def eval_results_from_metrics(
    metrics: Mapping[str, float],
    *,
    task_type: str,
    task_name: str,
    dataset_type: str,
    dataset_name: str,
    dataset_split: str | None = None,
    metric_names: Mapping[str, str] | None = None,
) -> list[EvalResult]:
    r"""
    One `huggingface_hub.EvalResult` per measured figure, for the card's `model-index` metadata.

    Args:
        metrics (`Mapping[str, float]`):
            Metric id (e.g. `"R@1"`) to measured value. Every entry is reported; pass only what the card should show.
        task_type (`str`), task_name (`str`):
            Task id (e.g. `"text-to-video-retrieval"`) and its display name.
        dataset_type (`str`), dataset_name (`str`), dataset_split (`str`, *optional*):
            Dataset id (a Hub dataset id when there is one), display name and split.
        metric_names (`Mapping[str, str]`, *optional*):
            Display names of the metrics; a metric without one is shown by its id.

    Returns:
        `list[EvalResult]`, in the order of `metrics`.
    """
    metric_names = metric_names or {}
    results = []
    for metric, value in metrics.items():
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
            raise ValueError(
                f"Metric {metric!r} of {task_name!r} on {dataset_name!r} must be a finite number, got {value!r}."
            )
        results.append(
            EvalResult(
                task_type=task_type,
                task_name=task_name,
                dataset_type=dataset_type,
                dataset_name=dataset_name,
                dataset_split=dataset_split,
                metric_type=metric,
                metric_name=metric_names.get(metric, metric),
                metric_value=float(value),
            )
        )
    return results


def create_model_card(
    model: PreTrainedModel,
    repo_id: str | None = None,
    *,
    training_data: str | None = None,
    datasets: Sequence[str] = (),
    training_hyperparameters: Mapping[str, Any] | None = None,
    eval_results: Sequence[EvalResult] = (),
    evaluation_notes: str | None = None,
    base_model: str | Sequence[str] | None = None,
    language: str | Sequence[str] | None = None,
    license: str = "apache-2.0",
    tags: Sequence[str] = (),
    developers: str | None = None,
    model_name: str | None = None,
) -> ModelCard:
    r"""
    The model card (Hub `README.md`) of a LocVTP checkpoint, from the package's template.

    What the model itself knows fills the card's model details: the class (which sets the pipeline tag, tags and
    usage example, see [`CLASS_CARDS`]), the towers and where they were initialised from (their
    `config._name_or_path`, as set by `from_vision_text_pretrained`), the LocVTP config fields and the parameter
    count. The run adds the rest.

    Args:
        model (`PreTrainedModel`):
            A LocVTP model (`config.model_type == "locvtp"`): `LocVTPModel` or a task class built on it.
        repo_id (`str`, *optional*):
            The Hub repository the card is for: the title and the usage example's checkpoint.
        training_data (`str`, *optional*):
            Markdown describing the training data: data set(s), number of videos and (span, text) pairs, kind of
            text. Here and in every other text of the card, an absolute path of this machine (one whose first folder
            exists here) is replaced by its last part, e.g. `/home/me/features` by `features`, with a warning.
        datasets (`Sequence[str]`, *optional*):
            Hub dataset ids of the training data, for the `datasets` metadata.
        training_hyperparameters (`Mapping[str, Any]`, *optional*):
            Display name to value, shown as a table in this order (batch size, optimizer, steps, precision, ...).
        eval_results (`Sequence[EvalResult]`, *optional*):
            The figures the run measured (see [`eval_results_from_metrics`]): the `model-index` metadata and the
            evaluation table.
        evaluation_notes (`str`, *optional*):
            Markdown under the evaluation table: protocol, chance levels, number of seeds.
        base_model (`str` or `Sequence[str]`, *optional*):
            Hub ids of the models this one was trained from. Default: the LocVTP checkpoint the model was loaded
            from when that is a Hub repository other than `repo_id`, else the towers that are Hub repositories.
        language (`str` or `Sequence[str]`, *optional*):
            Language code(s) of the training text, e.g. `"en"`.
        license (`str`, *optional*, defaults to `"apache-2.0"`):
            Hub licence id of the checkpoint.
        tags (`Sequence[str]`, *optional*):
            Extra Hub tags.
        developers (`str`, *optional*):
            Who trained the checkpoint.
        model_name (`str`, *optional*):
            The card's title and `model-index` name. Default: the repository name, or `"LocVTP"`.

    Returns:
        `huggingface_hub.ModelCard`: `card.data` holds the metadata, `str(card)` the whole `README.md`.
    """
    import jinja2

    check_locvtp_model(model)
    config = model.config
    card_info = class_card(type(model))
    model_name = model_name or (repo_id.split("/")[-1] if repo_id else "LocVTP")
    if base_model is None:
        base_model = _base_models(config, repo_id)
    card_data = ModelCardData(
        model_name=model_name,
        base_model=base_model or None,
        datasets=list(datasets) or None,
        eval_results=list(eval_results) or None,
        language=language,
        library_name="transformers",
        license=license,
        pipeline_tag=card_info.pipeline_tag,
        tags=list(dict.fromkeys([*LOCVTP_TAGS, *card_info.tags, *tags])),
    )
    vision_source, text_source = (
        _tower_source(getattr(config, sub_config)._name_or_path) for sub_config in ("vision_config", "text_config")
    )
    environment = jinja2.Environment(
        undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True
    )
    content = environment.from_string(MODEL_CARD_TEMPLATE.read_text(encoding="utf-8")).render(
        card_data=card_data.to_yaml(),
        model_name=model_name,
        class_name=type(model).__name__,
        class_summary=card_info.summary,
        architecture=card_info.architecture,
        objective=card_info.objective,
        checkpoint=repo_id or "path/to/checkpoint",
        usage=card_info.usage,
        config=config,
        model_settings=_model_settings(config, card_info.config_prefix),
        num_parameters=_count(model.num_parameters()),
        vision_source=vision_source,
        text_source=text_source,
        developers=developers or "not stated",
        language=", ".join([language] if isinstance(language, str) else language) if language else "not stated",
        license=license,
        training_data=training_data or "The run that made this card did not describe its training data.",
        training_hyperparameters=[(name, _format(value)) for name, value in (training_hyperparameters or {}).items()],
        eval_rows=[
            {
                "task": result.task_name or result.task_type,
                "dataset": result.dataset_name,
                "split": result.dataset_split or "",
                "metric": result.metric_name or result.metric_type,
                "value": _format(result.metric_value),
            }
            for result in eval_results
        ],
        evaluation_notes=evaluation_notes,
    )
    return ModelCard(_without_local_paths(content))


def check_locvtp_model(model) -> None:
    """Raises a `TypeError` naming what `model` is unless it is a LocVTP model (any class, remote code included)."""
    if not isinstance(model, PreTrainedModel) or getattr(model.config, "model_type", None) != "locvtp":
        raise TypeError(
            "model must be a LocVTP model (LocVTPModel or a task class, config.model_type 'locvtp'), got "
            f"{type(model).__name__}."
        )


def _hub_id(name: str) -> str | None:
    """`name` when it can be a Hub repository id rather than a folder on this machine, else None."""
    if not name or Path(name).exists():
        return None
    try:
        validate_repo_id(name)
    except HFValidationError:
        return None
    return name


def _without_local_paths(text: str) -> str:
    """`text` with every absolute path of this machine replaced by its last part."""

    def shorten(match: re.Match) -> str:
        path = match.group().rstrip(".,;:")  # the end of a sentence is not part of the path
        if not Path(*Path(path).parts[:2]).exists():  # e.g. "/s" in "samples /s": not a folder of this machine
            return match.group()
        logger.warning(f"The model card named {path}, a path of this machine; it shows only {Path(path).name!r}.")
        return Path(path).name + match.group()[len(path) :]

    return _ABSOLUTE_PATH.sub(shorten, text)


def _shareable_name_or_path(name: str) -> str:
    """
    `name` (a `_name_or_path`) as a shared file may record it: a Hub id as it is, a local folder as `./<its name>`,
    which names it without this machine's folders and is not mistaken for a Hub id (see `_tower_source`).
    """
    if not name or _hub_id(name):
        return name
    return f"./{Path(name).name}"


def _base_models(config, repo_id: str | None) -> list[str]:
    checkpoint = _hub_id(config._name_or_path)
    if checkpoint and checkpoint != repo_id:
        return [checkpoint]
    towers = (_hub_id(config.vision_config._name_or_path), _hub_id(config.text_config._name_or_path))
    return [tower for tower in towers if tower]


def _tower_source(name: str) -> str:
    if not name:
        return "random initialisation (trained from scratch)"
    if _hub_id(name):
        return f"[{name}](https://huggingface.co/{name})"
    return f"a local checkpoint, `{Path(name).name}`"


def _model_settings(config, config_prefix: str | None) -> list[tuple[str, str]]:
    """The LocVTP fields of the config (its own dataclass fields, not the towers' sub-configs) that concern the class:
    the fields of no task head, and those with the class's own `config_prefix`."""
    other_heads = tuple(
        card.config_prefix for card in CLASS_CARDS.values() if card.config_prefix not in (None, config_prefix)
    )
    return [
        (field.name, _format(getattr(config, field.name)))
        for field in dataclasses.fields(config)
        if field.name not in config.sub_configs
        and field.name in type(config).__annotations__
        and not field.name.startswith(other_heads)
    ]


def _count(number: int) -> str:
    return f"{number / 1e9:.2f}B" if number >= 1e9 else f"{number / 1e6:.2f}M"


def _format(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (list, tuple)):
        return ", ".join(_format(item) for item in value)
    return str(value)


__all__ = [
    "CLASS_CARDS",
    "ClassCard",
    "MODEL_CARD_TEMPLATE",
    "check_locvtp_model",
    "class_card",
    "create_model_card",
    "eval_results_from_metrics",
]
