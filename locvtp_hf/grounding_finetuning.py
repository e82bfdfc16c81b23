"""
Fine-tuning and evaluation of [`LocVTPForTemporalGrounding`]: the reusable core of `examples/finetune_grounding.py`.

- [`~encoding.encode_clip_features`] encodes each video once (the fast path: with the encoder frozen the head trains
  on these cached features); [`clip_features_for_queries`] reads them from a features folder or HDF5 file instead.
- [`GroundingFeatureDataset`] (cached clip features) and [`GroundingVideoDataset`] (raw videos, decoded for every
  item: the route where the clip encoder trains too) turn queries of the `GROUNDING_FEATURES` schema
  (`locvtp_hf.grounding_datasets`) into model inputs; [`GroundingCollator`] pads them into batches.
- [`grounding_dataloader`] and [`grounding_loss`] are what the training loop of `locvtp_hf.training` needs;
  [`train_grounding_model`] runs it without checkpoints; [`evaluate_grounding_model`] predicts the best
  moments of every query and computes the metrics of `locvtp_hf.grounding_metrics`.
- Highlight detection: with `saliency_labels=True` the datasets give training items one saliency target per clip
  from the queries' highlight annotations (QVHighlights', the synthetic world's), for a model with a saliency head
  (`grounding_saliency_head`), trained jointly with the moments; [`evaluate_grounding_model`] scores the head,
  zero-shot saliency and random scores with QVHighlights' HL-mAP and HL-Hit1 where the queries have annotations.

Example (the head on the clip features of a small random model, on the synthetic world):

```python
>>> from transformers import BertTokenizer
>>> from locvtp_hf import LocVTPConfig, LocVTPForTemporalGrounding, LocVTPProcessor, LocVTPVideoProcessor
>>> from locvtp_hf.encoding import encode_clip_features
>>> from locvtp_hf.grounding_finetuning import (
...     GroundingFeatureDataset, evaluate_grounding_model, train_grounding_model)
>>> from locvtp_hf.synthetic import SyntheticWorld

>>> world = SyntheticWorld(num_train=4, num_test=2, size=32)
>>> train_queries = world.grounding_dataset("train")
>>> test_queries = world.grounding_dataset("test")
>>> words = sorted({word for query in [*train_queries["query"], *test_queries["query"]] for word in query.split()})
>>> tokenizer = BertTokenizer(vocab={w: i for i, w in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", *words])})
>>> tower = dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64)
>>> config = LocVTPConfig(
...     vision_config=dict(model_type="vit", image_size=32, patch_size=16, **tower),
...     text_config=dict(model_type="bert", vocab_size=len(tokenizer), **tower),
...     projection_dim=16, frames_per_clip=2, grounding_num_positions=8, grounding_hidden_size=16,
...     grounding_num_conv_layers=1, grounding_conv_kernel_size=3, grounding_freeze_encoder=True)
>>> model = LocVTPForTemporalGrounding(config)
>>> video_processor = LocVTPVideoProcessor(frames_per_clip=2, size={"shortest_edge": 32},
...                                        crop_size={"height": 32, "width": 32}, grounding_clip_seconds=2.0)
>>> processor = LocVTPProcessor(video_processor, tokenizer)
>>> videos = {video.video_id: video.video_id for split in ("train", "test") for video in world.videos(split)}
>>> features = {found.video_id: found.features for found in encode_clip_features(
...     model, processor, videos, load_video=world.render, video_fps=world.fps)}
>>> losses = train_grounding_model(model, GroundingFeatureDataset(train_queries, features, processor, training=True),
...                                max_steps=3, batch_size=4, progress=False)
>>> evaluation = evaluate_grounding_model(model, processor, GroundingFeatureDataset(test_queries, features, processor))
>>> sorted(evaluation.metrics)[:3], len(evaluation.predictions) == len(test_queries)
(['R@1,IoU=0.3', 'R@1,IoU=0.5', 'R@1,IoU=0.7'], True)
```
"""

import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import datasets
import torch
from accelerate import Accelerator
from accelerate.utils import DataLoaderConfiguration

from .grounding_datasets import GROUNDING_FEATURES
from .grounding_features import ClipFeatureStore
from .grounding_metrics import (
    MAP_IOU_THRESHOLDS,
    grounding_metrics,
    highlight_metrics,
    saliency_at_annotation_clips,
    saliency_targets,
)
from .grounding_postprocessing import clip_saliency, clip_times
from .training import TrainingArguments, TrainingStep, train
from .zero_shot_grounding import zero_shot_saliency


logger = logging.getLogger(__name__)


@dataclass
class FeatureMatch:
    """
    The clip features of a query set's videos, found in a [`ClipFeatureStore`].

    Attributes:
        features (`dict[str, torch.Tensor]`): Annotation `video_id -> [num_clips, D]` features.
        missing_video_ids (`list[str]`): Videos of the annotations without a features file.
        duration_mismatches (`list[tuple[str, float, float]]`): `(video_id, annotated, extracted)` durations in
            seconds of the videos whose two durations differ by more than one clip (the features are spread over the
            annotated duration, as 2D-TAN does).
    """

    features: dict[str, torch.Tensor]
    missing_video_ids: list[str]
    duration_mismatches: list[tuple[str, float, float]]


def clip_features_for_queries(queries: datasets.Dataset, store: ClipFeatureStore) -> FeatureMatch:
    """Read the features of every video of `queries` (a `GROUNDING_FEATURES` dataset) from `store`."""
    durations = dict(zip(queries["video_id"], queries["duration"]))
    features, missing, mismatches = {}, [], []
    for video_id, duration in durations.items():
        stored_id = store.find(video_id)
        if stored_id is None:
            missing.append(video_id)
            continue
        video = store[stored_id]
        features[video_id] = video.features
        if abs(video.duration - duration) > video.duration / len(video.features):
            mismatches.append((video_id, duration, video.duration))
    return FeatureMatch(features, missing, mismatches)


class _GroundingQueries(torch.utils.data.Dataset):
    """
    Queries of the `GROUNDING_FEATURES` schema, tokenized once. Training items are `(query, moment)` pairs (a query
    with several moments, QVHighlights windows or DiDeMo annotators, gives one item per moment); evaluation items are
    queries. Given the clip length of their highlight annotations (`saliency_clip_seconds`), the annotations of the
    queries that have them (`relevant_clip_ids`, `saliency_scores`) are kept in `saliency_references` (per query,
    `None` without); with `saliency_labels` training items carry them as per-clip `saliency_labels`.
    """

    def __init__(
        self,
        queries: datasets.Dataset,
        processor,
        training: bool = False,
        saliency_labels: bool = False,
        saliency_clip_seconds: float | None = None,
    ):
        missing = set(GROUNDING_FEATURES) - set(queries.column_names)
        if missing:
            raise ValueError(f"The queries lack the columns {sorted(missing)} of the grounding schema.")
        if len(queries) == 0:
            raise ValueError("No queries: the dataset is empty.")
        self.query_ids = list(queries["query_id"])
        self.video_ids = list(queries["video_id"])
        self.durations = list(queries["duration"])
        self.references = [list(moments) for moments in queries["moments"]]
        self.texts = list(queries["query"])
        self.training = training
        self.saliency_clip_seconds = saliency_clip_seconds
        self.saliency_references = [None] * len(queries)
        if saliency_clip_seconds is not None and {"relevant_clip_ids", "saliency_scores"} <= set(queries.column_names):
            self.saliency_references = [
                None if clip_ids is None or scores is None else
                {"duration": duration, "relevant_clip_ids": clip_ids, "saliency_scores": scores}
                for duration, clip_ids, scores in zip(
                    self.durations, queries["relevant_clip_ids"], queries["saliency_scores"]
                )
            ]
        if saliency_labels and not self.has_saliency:
            raise ValueError(
                "saliency_labels=True needs highlight annotations (relevant_clip_ids and saliency_scores, as "
                "QVHighlights and the synthetic world give them) and their clip length, saliency_clip_seconds; "
                + ("none of the queries has them." if saliency_clip_seconds else "it is not given.")
            )
        self.saliency_labels = saliency_labels
        self.items = [
            (query_index, moment)
            for query_index, moments in enumerate(self.references)
            for moment in (moments if training else moments[:1])
        ]
        self.text_inputs = dict(processor(text=self.texts, return_tensors="pt"))

    @property
    def has_saliency(self) -> bool:
        """Whether any query has highlight annotations."""
        return any(reference is not None for reference in self.saliency_references)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict:
        query_index, moment = self.items[index]
        item = {name: values[query_index] for name, values in self.text_inputs.items()}
        item["video_durations"] = torch.tensor(self.durations[query_index], dtype=torch.float32)
        if self.training:
            item["target_moments"] = torch.tensor(moment, dtype=torch.float32)
        item.update(self._video(self.video_ids[query_index]))
        if self.training and self.saliency_labels:
            item["saliency_labels"] = self._saliency_labels(query_index, item)
        return item

    def _saliency_labels(self, query_index: int, item: dict) -> torch.Tensor:
        """
        The query's saliency target of each clip of the item's video (NaN throughout without annotations), by the
        stretch of video each clip stands for, as post-processing times the model's saliency scores.
        """
        num_clips = len(item["video_features" if "video_features" in item else "pixel_values_videos"])
        reference = self.saliency_references[query_index]
        if reference is None:
            return torch.full((num_clips,), float("nan"))
        clip_spans = item["clip_spans"][None] if "clip_spans" in item else None
        (times,) = clip_times(torch.ones(1, num_clips), item["video_durations"][None], clip_spans)
        where = f"query {self.query_ids[query_index]!r}"
        return saliency_targets(reference, times, self.saliency_clip_seconds, where)

    def _video(self, video_id: str) -> dict:
        raise NotImplementedError


class GroundingFeatureDataset(_GroundingQueries):
    """
    Grounding queries over precomputed clip features: items hold `video_features` (`[num_clips, D]`), the query's
    tokens, `video_durations` and, in training, `target_moments` (and `saliency_labels`, by clips cut evenly over the
    annotated duration).

    Args:
        queries (`datasets.Dataset`): Queries of the `GROUNDING_FEATURES` schema.
        clip_features (`Mapping[str, torch.Tensor]`): `video_id -> [num_clips, D]` features of every video of the
            queries (e.g. from [`~encoding.encode_clip_features`] or [`clip_features_for_queries`]).
        processor ([`LocVTPProcessor`]): Tokenizes the queries.
        training (`bool`, *optional*, defaults to `False`): One item per `(query, moment)` with its target moment;
            else one item per query, in order.
        saliency_labels (`bool`, *optional*, defaults to `False`): Training items also carry `saliency_labels`
            (`[num_clips]`, see `locvtp_hf.grounding_metrics.saliency_targets`; the clips cut evenly over the
            annotated duration) from the queries' highlight annotations, for a model with a saliency head (NaN
            throughout for a query without them). A query with several moments gives its labels with each.
        saliency_clip_seconds (`float`, *optional*): The clip length in seconds of the queries' highlight
            annotations (QVHighlights': `grounding_metrics.QVHIGHLIGHTS_CLIP_SECONDS`, 2; the synthetic world's:
            `world.saliency_clip_seconds`, 1), which uses them: `saliency_labels`, and highlight figures in
            [`evaluate_grounding_model`]. `None` (the default) leaves the annotations out.
    """

    def __init__(
        self,
        queries: datasets.Dataset,
        clip_features: Mapping[str, torch.Tensor],
        processor,
        training: bool = False,
        saliency_labels: bool = False,
        saliency_clip_seconds: float | None = None,
    ):
        missing = sorted(set(queries["video_id"]) - set(clip_features))
        if missing:
            raise ValueError(
                f"{len(missing)} videos of the queries have no clip features (e.g. {missing[:3]}): drop their queries "
                "first."
            )
        super().__init__(queries, processor, training, saliency_labels, saliency_clip_seconds)
        self.clip_features = clip_features

    def _video(self, video_id: str) -> dict:
        return {"video_features": self.clip_features[video_id]}


class GroundingVideoDataset(_GroundingQueries):
    """
    Grounding queries over raw videos, each cut into clips by the processor's grounding route for every item (so the
    clip encoder can train): items hold `pixel_values_videos` (`[num_clips, F, C, H, W]`), `clip_spans`
    (`[num_clips, 2]`, seconds), the query's tokens, `video_durations` (annotated) and, in training, `target_moments`
    (and `saliency_labels`, by the clips' spans).

    Args:
        queries (`datasets.Dataset`): Queries of the `GROUNDING_FEATURES` schema.
        videos (`Mapping[str, Any]`): `video_id -> video` (a file path, or what `load_video` takes).
        processor ([`LocVTPProcessor`]): Cuts the videos and tokenizes the queries.
        load_video (`Callable`, *optional*), video_fps (`float`, *optional*): See [`~encoding.WholeVideoClipsDataset`].
        training (`bool`, *optional*, defaults to `False`): As in [`GroundingFeatureDataset`]; training also samples
            frames at random offsets inside each clip's segment.
        saliency_labels (`bool`, *optional*, defaults to `False`), saliency_clip_seconds (`float`, *optional*):
            As in [`GroundingFeatureDataset`].
    """

    def __init__(
        self,
        queries: datasets.Dataset,
        videos: Mapping[str, Any],
        processor,
        load_video: Callable | None = None,
        video_fps: float | None = None,
        training: bool = False,
        saliency_labels: bool = False,
        saliency_clip_seconds: float | None = None,
    ):
        missing = sorted(set(queries["video_id"]) - set(videos))
        if missing:
            raise ValueError(f"{len(missing)} videos of the queries are not given (e.g. {missing[:3]}).")
        super().__init__(queries, processor, training, saliency_labels, saliency_clip_seconds)
        self.videos, self.processor = videos, processor
        self.load_video, self.video_fps = load_video, video_fps

    def _video(self, video_id: str) -> dict:
        video = self.videos[video_id]
        if self.load_video is not None:
            video = self.load_video(video)
        inputs = self.processor(
            videos=[video], task="grounding", video_fps=self.video_fps, training=self.training, return_tensors="pt"
        )
        return {"pixel_values_videos": inputs["pixel_values_videos"][0], "clip_spans": inputs["clip_spans"][0]}


class GroundingCollator:
    """
    Stacks items of [`GroundingFeatureDataset`] / [`GroundingVideoDataset`] into a batch of model inputs, padding
    `video_features` (with a `video_mask`) or `pixel_values_videos` (with a `clip_mask`), and the per-clip
    `clip_spans` (with zeros, as the processor pads them) and `saliency_labels` (with NaN), to the batch's most clips.
    """

    # the value each per-clip input is padded with
    PER_CLIP_PADDING = {"video_features": 0, "pixel_values_videos": 0, "clip_spans": 0, "saliency_labels": math.nan}

    def __call__(self, items: list[dict]) -> dict[str, torch.Tensor]:
        video_key = "video_features" if "video_features" in items[0] else "pixel_values_videos"
        mask_key = "video_mask" if video_key == "video_features" else "clip_mask"
        lengths = [len(item[video_key]) for item in items]
        longest = max(lengths)
        batch = {mask_key: torch.stack([torch.arange(longest) < length for length in lengths])}
        for name in items[0]:
            values = [item[name] for item in items]
            if name in self.PER_CLIP_PADDING:
                fill = self.PER_CLIP_PADDING[name]
                values = [torch.cat([v, v.new_full((longest - len(v), *v.shape[1:]), fill)]) for v in values]
            batch[name] = torch.stack(values)
        return batch


def grounding_dataloader(
    dataset: torch.utils.data.Dataset, batch_size: int, seed: int = 0, num_workers: int = 0
) -> torch.utils.data.DataLoader:
    """Training batches of `dataset` (a [`GroundingFeatureDataset`] or [`GroundingVideoDataset`]), reshuffled every
    epoch from `seed` and padded by [`GroundingCollator`]."""
    return torch.utils.data.DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=True,
        generator=torch.Generator().manual_seed(seed),
        collate_fn=GroundingCollator(),
        num_workers=num_workers,
    )


def grounding_loss(model, batch: dict, step: TrainingStep) -> dict:
    """
    The loss function of [`~training.train`] for grounding: the head's scaled-IoU loss of the batch, plus the
    weighted saliency loss when the batch carries `saliency_labels` (both logged then).
    """
    outputs = model(**batch)
    if "saliency_labels" not in batch:
        return {"loss": outputs.loss}
    return {"loss": outputs.loss, "loss_moment": outputs.loss_moment, "loss_saliency": outputs.loss_saliency}


def train_grounding_model(
    model,
    dataset: torch.utils.data.Dataset,
    max_steps: int,
    batch_size: int = 32,
    learning_rate: float = 1e-3,
    weight_decay: float = 0.0,
    warmup_steps: int = 0,
    max_grad_norm: float = 1.0,
    seed: int = 0,
    num_workers: int = 0,
    logging_steps: int = 50,
    accelerator: Accelerator | None = None,
    progress: bool = True,
    max_consecutive_nonfinite_steps: int = 10,
) -> list[float]:
    """
    Train `model` on `dataset` for `max_steps` optimizer steps with the training loop of [`~training.train`] (AdamW
    with weight decay on linear and convolution weights, linear warm-up then cosine decay), reshuffling every epoch;
    without checkpoints (`examples/finetune_grounding.py` calls the loop itself for those). Only the parameters that
    require gradients train: `model.freeze_towers(vision=True, text=True)` before trains the head alone. The model is
    trained in place. A step whose loss is NaN or infinite (on any process) is skipped: no weight update, a warning
    naming the step (see [`~training.NonFiniteLossGuard`]).

    Args:
        model ([`LocVTPForTemporalGrounding`]): The model.
        dataset: A training [`GroundingFeatureDataset`] or [`GroundingVideoDataset`].
        max_steps (`int`): Optimizer steps.
        batch_size (`int`): Items per process and step.
        learning_rate (`float`): Peak learning rate.
        weight_decay (`float`): AdamW weight decay of linear and convolution weights.
        warmup_steps (`int`): Linear warm-up steps before the cosine decay.
        max_grad_norm (`float`): Gradient clipping norm; 0 disables clipping.
        seed (`int`): Seed of the data order and of each step's random draws.
        num_workers (`int`): DataLoader workers (useful for raw videos).
        logging_steps (`int`): Log the loss every this many steps.
        accelerator (`Accelerator`, *optional*): Device placement and several processes; by default a new one on the
            available accelerator (or the CPU).
        progress (`bool`): Show a progress bar.
        max_consecutive_nonfinite_steps (`int`): Raise a `RuntimeError` after this many skipped steps in a row.

    Returns:
        `list[float]`: the loss of every step (of this process), skipped steps included.
    """
    if max_steps < 1 or batch_size < 1:
        raise ValueError(f"max_steps and batch_size must be at least 1, got {max_steps} and {batch_size}.")
    if accelerator is None:
        accelerator = Accelerator(
            cpu=not torch.accelerator.is_available(),
            dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True, data_seed=seed),
        )
    if not any(parameter.requires_grad for parameter in model.parameters()):
        raise ValueError("The model has no trainable parameter.")
    args = TrainingArguments(
        max_steps=max_steps,
        per_device_batch_size=batch_size,
        learning_rate=learning_rate,
        weight_decay=weight_decay,
        warmup_steps=warmup_steps,
        max_grad_norm=max_grad_norm,
        seed=seed,
        num_workers=num_workers,
        logging_steps=logging_steps,
        max_consecutive_nonfinite_steps=max_consecutive_nonfinite_steps,
        checkpointing_steps=0,
    )
    dataloader = grounding_dataloader(dataset, batch_size, seed, num_workers)
    return train(accelerator, model, dataloader, grounding_loss, args, progress=progress).losses


@dataclass
class GroundingEvaluation:
    """
    Attributes:
        metrics (`dict[str, float]`): `"R@{k},IoU={t}"`, `"mIoU"` and, when asked for, `"mAP"` / `"mAP@{t}"` (see
            `locvtp_hf.grounding_metrics.grounding_metrics`); when queries have highlight annotations,
            `"HL-mAP@{level}"` and `"HL-Hit1@{level}"` (see `locvtp_hf.grounding_metrics.highlight_metrics`) of the
            model's saliency head (with one), of zero-shot saliency (`"zero-shot HL-..."`) and of random scores
            (`"random HL-..."`).
        predictions (`list[list[dict]]`): Per query, in the dataset's order, its best moments
            `{"start", "end", "score"}` in seconds, best first.
        saliency_predictions (`list[list[float]]`, *optional*): With a saliency head and a dataset given
            `saliency_clip_seconds`: per query, the head's score of each annotation clip of its video
            (`int(duration / saliency_clip_seconds)` clips), what `highlight_metrics` and
            `write_qvhighlights_submission` take.
    """

    metrics: dict[str, float]
    predictions: list[list[dict[str, float]]]
    saliency_predictions: list[list[float]] | None = None


def evaluate_grounding_model(
    model,
    processor,
    dataset: torch.utils.data.Dataset,
    batch_size: int = 64,
    top_k: int = 5,
    nms_threshold: float | None = 0.5,
    iou_comparison: str = ">=",
    mean_average_precision: bool = False,
    num_workers: int = 0,
    random_seed: int = 0,
) -> GroundingEvaluation:
    """
    Predict the best moments of every query of an evaluation dataset (on the model's device, one process) and score
    them against all of the query's moments.

    When queries have highlight annotations (`dataset.saliency_references`, for a dataset given their
    `saliency_clip_seconds`), their highlight detection is scored too (on those queries), three ways: the model's
    saliency head (with `config.grounding_saliency_head`), zero-shot saliency (the cosine of each clip feature the head
    consumed with the query embedding: `locvtp_hf.zero_shot_grounding.zero_shot_saliency`) and a random score per
    annotation clip (drawn from `random_seed`), the chance level. A model clip's score goes to the annotation clips
    whose centres it covers (`locvtp_hf.grounding_metrics.saliency_at_annotation_clips`), a model clip standing for
    the stretch of video that post-processing gives it (`locvtp_hf.grounding_postprocessing.clip_saliency`: by the
    output's `clip_spans`, or for stored features the clips cut evenly over the annotated duration).

    Args:
        model ([`LocVTPForTemporalGrounding`]): The model (unwrapped).
        processor ([`LocVTPProcessor`]): Its `post_process_grounding` ranks the moments (1-D NMS).
        dataset: An evaluation ([`GroundingFeatureDataset`] / [`GroundingVideoDataset`], `training=False`).
        batch_size (`int`): Queries per forward pass.
        top_k (`int`): Moments kept per query (R@k needs `k <= top_k`; Moment-DETR's mAP keeps 10).
        nms_threshold (`float`, *optional*): 1-D NMS threshold; `None` turns it off.
        iou_comparison (`str`): `">="` (Moment-DETR and most work) or `">"` (2D-TAN's code).
        mean_average_precision (`bool`): Also the QVHighlights-style mAP over IoU 0.5:0.05:0.95.
        num_workers (`int`): DataLoader workers.
        random_seed (`int`): Seed of the random saliency scores.
    """
    if dataset.training:
        raise ValueError("Evaluate on a dataset made with training=False (one item per query).")
    device = next(model.parameters()).device
    dataloader = torch.utils.data.DataLoader(
        dataset, batch_size=batch_size, collate_fn=GroundingCollator(), num_workers=num_workers
    )
    clip_seconds = dataset.saliency_clip_seconds
    has_head = bool(getattr(model.config, "grounding_saliency_head", False)) and clip_seconds is not None
    was_training = model.training
    model.eval()
    predictions, head_saliency, zero_shot = [], [], []
    with torch.no_grad():
        for batch in dataloader:
            outputs = model(**{name: value.to(device) for name, value in batch.items()})
            predictions += processor.post_process_grounding(outputs, top_k=top_k, nms_threshold=nms_threshold)
            if clip_seconds is None:
                continue
            durations = outputs.video_durations.tolist()
            similarity = zero_shot_saliency(outputs.video_features, outputs.text_embeds, outputs.video_mask)
            scorers = [(zero_shot, similarity)]
            if has_head:
                scorers.append((head_saliency, outputs.saliency_scores))
            for scored, scores in scorers:
                timed = clip_saliency(scores, outputs.video_mask, outputs.video_durations, outputs.clip_spans)
                scored += [
                    saliency_at_annotation_clips(query["scores"], query["times"], duration, clip_seconds).tolist()
                    for query, duration in zip(timed, durations)
                ]
    model.train(was_training)
    metrics = grounding_metrics(
        predictions,
        dataset.references,
        iou_comparison=iou_comparison,
        map_iou_thresholds=MAP_IOU_THRESHOLDS if mean_average_precision else None,
    )
    annotated = [index for index, reference in enumerate(dataset.saliency_references) if reference is not None]
    if annotated:
        references = [dataset.saliency_references[index] for index in annotated]
        generator = torch.Generator().manual_seed(random_seed)
        by_prefix = {"": [head_saliency[index] for index in annotated]} if has_head else {}
        by_prefix["zero-shot "] = [zero_shot[index] for index in annotated]
        by_prefix["random "] = [torch.rand(len(zero_shot[index]), generator=generator) for index in annotated]
        for prefix, saliency in by_prefix.items():
            results = highlight_metrics(saliency, references, clip_seconds=clip_seconds)
            metrics.update({f"{prefix}{name}": value for name, value in results.items()})
    return GroundingEvaluation(
        metrics=metrics, predictions=predictions, saliency_predictions=head_saliency if has_head else None
    )
