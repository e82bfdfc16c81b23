"""Pre-train LocVTP with Accelerate, from one CPU process to many GPU machines.

    accelerate launch examples/pretrain.py                      # the built-in synthetic world, ~5 min on 2 CPU cores
    accelerate launch examples/pretrain.py --config run.yaml    # every argument below, from a YAML or JSON file
    accelerate launch examples/pretrain.py --help

Defaults: the setting in which the ablation (docs/ablation.md) shows the LocVTP terms localizing better than coarse
alignment alone. 1,500 steps on the synthetic world with misaligned pre-training spans
(`--world_pretraining_span_coverage 0.5`: a sentence's event covers half of its span, as in narrated video), mutual
correspondence discovery (`--discovery_mutual`) and a 500-step warm-up of the fine-grained and temporal weights
(`--localization_warmup_steps 500`). The last two depart from the paper (docs/method.md);
`--discovery_mutual false --localization_warmup_steps 0` gives the paper's losses.

Data: `--train_data synthetic` (default) renders the package's procedural video-text world on the fly (the `--world_*`
options); a folder in the `videofolder` layout (`metadata.jsonl` or `metadata.csv` with `file_name`, `text`, optional
`start`, `end`), a HowTo100M-style captions `.json` or a WebVid-style `.csv` (with `--video_dir`) read real videos;
webdataset `.tar` or `.parquet` shards (a glob pattern, local or remote) are streamed, for data sets larger than a
disk. Rows without a caption are dropped when read; unreadable videos and shards are skipped; all are counted and
reported at the end. See docs/pretraining.md.

At the end the model and processor are saved with `save_pretrained` in `--output_dir`; with `--eval_data synthetic`
(default) the model is evaluated zero-shot on the synthetic world's held-out videos (text-to-video retrieval; in-video
AUC, zero-shot grounding and the clip probe), and the figures are printed beside their chance levels and written to
`<output_dir>/eval_results.json` (with the run's counts; `--eval_data none` writes the counts only and builds no
world). `--eval_data` may also be validation data in the formats of `--train_data` (a videofolder, a .json or a .csv,
with `--eval_video_dir`): text-to-video and video-to-text R@k among its captions, and, where its rows give spans, the
head-free localization figures. `--eval_steps N` evaluates every N steps too (logged as `eval_*`), and
`--metric_for_best_model` keeps the best of those models in `<output_dir>/best_model`.

Resuming: checkpoints are written every `--checkpointing_steps` optimizer steps with `save_state`;
`--resume_from_checkpoint latest` continues from the newest complete one (the folders of an interrupted write are
ignored), at the same position in the data (streamed shards too: each process's position in its shards is saved
beside the checkpoint). The arguments that shape the run must be the same as when the checkpoint was written
(checked). The random draws of a micro-batch depend only on its place in the run, so a resumed run ends with the same
weights as an uninterrupted one.

A step whose loss is NaN or infinite (on any process) is skipped: no weight update, a warning naming the step; the run
stops after `--max_consecutive_nonfinite_steps` such steps in a row.

Arguments: the `PreTrainingArguments` dataclass below and the shared groups of `locvtp_hf.training`, parsed with
`HfArgumentParser` by its `parse_arguments` (so `--config run.yaml` works too).

Gradient accumulation: by default each micro-batch's contrastive losses see only that micro-batch's negatives
(gathered over all processes), so `--gradient_accumulation_steps N` gives the gradient-update size of an N times
larger batch but not its set of negatives. With `--accumulate_negatives` the three losses are computed over the whole
accumulated batch from cached embeddings (open_clip's `--accum-freq`): the same losses and gradients as one N times
larger batch, for one more forward pass of the towers per micro-batch (DDP or one process).
"""

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import datasets
import torch
from transformers import AutoTokenizer

from locvtp_hf import LocVTPForPreTraining, LocVTPModel, LocVTPProcessor
from locvtp_hf.data import (
    StreamingVideoTextDataset,
    VideoTextCollator,
    VideoTextPairDataset,
    howto100m_rows,
    videofolder_rows,
    webvid_rows,
)
from locvtp_hf.evaluation import localization_evaluation, retrieval_evaluation, text_to_video_retrieval
from locvtp_hf.hub import push_to_hub
from locvtp_hf.loss import sample_context_offsets
from locvtp_hf.model_card import create_model_card, eval_results_from_metrics
from locvtp_hf.stop_words import stop_word_token_ids
from locvtp_hf.training import (
    BestModel,
    EmbeddingLoss,
    ModelArguments,
    SyntheticWorldArguments,
    TrainingArguments,
    check_model_arguments,
    check_training_arguments,
    locvtp_fields,
    new_processor,
    parse_arguments,
    recorded_arguments,
    setup_accelerator,
    small_model_config,
    term_gradient_norms,
    train,
    word_tokenizer,
)
from locvtp_hf.video_io import probe_video


logger = logging.getLogger(__name__)
# this script's defaults of shared arguments: with the loss defaults of `PreTrainingArguments`, the setting in which
# the ablation (docs/ablation.md) shows the LocVTP terms localizing better than coarse alignment alone
SCRIPT_DEFAULTS = {"output_dir": "outputs/pretrain", "max_steps": 1500, "world_pretraining_span_coverage": 0.5}


@dataclass
class PreTrainingArguments:
    # data
    train_data: str = field(
        default="synthetic",
        metadata={
            "help": "'synthetic'; a videofolder (metadata.jsonl / metadata.csv); a HowTo100M-style captions .json; "
            "a WebVid-style .csv (the last two with --video_dir); or webdataset .tar / .parquet shards, streamed (a "
            "glob pattern such as 'shards/*.tar', local or remote; needs the 'streaming' extra)."
        },
    )
    video_dir: str | None = field(
        default=None, metadata={"help": "Where the videos of a .json / .csv --train_data are."}
    )
    eval_data: str = field(
        default="synthetic",
        metadata={
            "help": "'synthetic': evaluate zero-shot on the synthetic world's held-out videos; 'none': do not; or "
            "validation data in the formats of --train_data (a folder, a .json or a .csv, with --eval_video_dir)."
        },
    )
    eval_video_dir: str | None = field(
        default=None, metadata={"help": "Where the videos of a .json / .csv --eval_data are (default: --video_dir)."}
    )
    probe_num_clips: int = field(default=16, metadata={"help": "Clips per whole video in the localization probe."})
    resize_while_decoding: bool = field(
        default=False,
        metadata={
            "help": "Let FFmpeg shrink the frames of video files to the model's frame size while decoding them: "
            "faster on large videos, slightly different pixel values; saved with the processor, and set on a "
            "checkpoint's processor too (see docs/video_processing.md)."
        },
    )
    # a new model's towers and the pre-training losses
    vision_model_name_or_path: str | None = field(
        default=None,
        metadata={"help": "A pretrained video or image backbone for a new model (with --text_model_name_or_path)."},
    )
    text_model_name_or_path: str | None = field(
        default=None, metadata={"help": "A pretrained BERT-like text encoder (and its tokenizer) for a new model."}
    )
    # the loss flags: a new model takes NEW_MODEL_LOSS_FIELDS where one is not given, a checkpoint keeps its own
    coarse_loss_weight: float | None = field(
        default=None, metadata={"help": "Weight of the video-sentence loss (0 skips it; a new model: 1.0)."}
    )
    fine_loss_weight: float | None = field(
        default=None, metadata={"help": "Weight of the clip-word loss (0 skips it; a new model: 1.0)."}
    )
    temporal_loss_weight: float | None = field(
        default=None, metadata={"help": "Weight of the temporal loss (0 skips it; a new model: 1.0)."}
    )
    temporal_cross_modal_weight: float | None = field(
        default=None,
        metadata={
            "help": "Weight of the cross-modal warp term inside the temporal loss (0 skips it; a new model: 1.0)."
        },
    )
    temporal_intra_video_weight: float | None = field(
        default=None,
        metadata={"help": "Weight of the intra-video term inside the temporal loss (0 skips it; a new model: 1.0)."},
    )
    fine_negatives: str | None = field(
        default=None,
        metadata={
            "help": "Negatives of the clip-word terms: 'other_samples' (a new model's), or 'same_and_other_samples' "
            "(also the sample's own words and clips that discovery did not pick)."
        },
    )
    discovery_stop_words: bool | None = field(
        default=None,
        metadata={"help": "Keep stop words and punctuation out of clip-word correspondence discovery (true / false; "
                  "a new model: false)."},
    )
    discovery_mutual: bool | None = field(
        default=None,
        metadata={"help": "Keep only the clip-word pairs discovery picks from both sides (true / false; a new model: "
                  "true; see docs/method.md)."},
    )
    localization_warmup_steps: int = field(
        default=500,
        metadata={
            "help": "Raise the fine-grained and temporal loss weights linearly from 0 to their values over the first "
            "N optimizer steps, so that coarse alignment, which correspondence discovery relies on, forms first "
            "(0: full weights from the first step; see docs/method.md)."
        },
    )
    freeze_vision: bool = field(default=False, metadata={"help": "Keep the clip encoder's weights fixed."})
    freeze_text: bool = field(default=False, metadata={"help": "Keep the text encoder's weights fixed."})
    accumulate_negatives: bool = field(
        default=False,
        metadata={
            "help": "With --gradient_accumulation_steps N: compute the losses over the whole accumulated batch from "
            "cached embeddings, so that every sample meets the negatives of all N micro-batches (the losses and "
            "gradients of one N times larger batch; one more forward pass per micro-batch; DDP or one process)."
        },
    )
    log_term_gradient_norms: bool = field(
        default=False,
        metadata={
            "help": "At each logging step, also log the norm of each weighted loss term's gradient on the clip "
            "encoder (one process only; three more backward passes per logging step)."
        },
    )


def is_sharded(train_data: str) -> bool:
    return train_data.endswith((".tar", ".parquet"))


def read_rows(data: str, video_dir: str | None, option: str):
    """The `(video, text, start, end)` rows of a videofolder, a HowTo100M-style .json or a WebVid-style .csv, and the
    rows dropped for lack of a caption."""
    if Path(data).is_dir():
        return videofolder_rows(data, return_dropped=True)
    if data.endswith(".json"):
        return howto100m_rows(data, video_dir, return_dropped=True)
    if data.endswith(".csv"):
        return webvid_rows(data, video_dir, return_dropped=True)
    raise ValueError(f"{option} {data!r} is neither 'synthetic', a folder, a .json, a .csv nor .tar / .parquet shards")


def validation_sets(rows) -> tuple:
    """
    The validation rows as a retrieval set (`video`, `captions`: each video with all its captions) and, for the rows
    with a span, localization queries (`video_id`, `query`, `start`, `end`, `duration`; None when no row has a span).
    Videos whose duration cannot be read are left out of the queries (retrieval reports them itself).
    """
    captions = {}
    for row in rows:
        captions.setdefault(row["video"], []).append(row["text"])
    retrieval_set = datasets.Dataset.from_dict({"video": list(captions), "captions": list(captions.values())})
    spans = [row for row in rows if row.get("start") is not None and row.get("end") is not None]
    durations = {}
    for video in dict.fromkeys(row["video"] for row in spans):
        try:
            durations[video] = probe_video(video).duration
        except (OSError, ValueError) as error:
            logger.warning(f"Validation video {video} left out of the localization figures: {error}")
    queries = [row for row in spans if row["video"] in durations]
    if not queries:
        return retrieval_set, None
    return retrieval_set, datasets.Dataset.from_dict({
        "video_id": [row["video"] for row in queries],
        "query": [row["text"] for row in queries],
        "start": [float(row["start"]) for row in queries],
        "end": [float(row["end"]) for row in queries],
        "duration": [durations[row["video"]] for row in queries],
    })


def check_arguments(
    model_args: ModelArguments, args: PreTrainingArguments, train_args: TrainingArguments
) -> None:
    """Clear errors for bad combinations of arguments, before any work."""
    check_model_arguments(model_args)
    check_training_arguments(train_args, min_steps=0)
    if bool(args.vision_model_name_or_path) != bool(args.text_model_name_or_path):
        raise ValueError(
            "--vision_model_name_or_path and --text_model_name_or_path go together: give both or neither."
        )
    if args.train_data.endswith((".json", ".csv")) and not args.video_dir:
        raise ValueError(f"--train_data {args.train_data} needs --video_dir, the folder of its videos.")
    if is_sharded(args.train_data) and not (model_args.checkpoint or args.text_model_name_or_path):
        raise ValueError(
            f"Streamed --train_data {args.train_data} cannot be read in full to build a word vocabulary: give a "
            "--model_name_or_path or a --text_model_name_or_path (with --vision_model_name_or_path) for its tokenizer."
        )
    if args.eval_data not in ("synthetic", "none"):
        if not (Path(args.eval_data).is_dir() or args.eval_data.endswith((".json", ".csv"))):
            raise ValueError(
                f"--eval_data must be 'synthetic', 'none', or validation data: a videofolder, a .json or a .csv; got "
                f"{args.eval_data!r}."
            )
        if args.eval_data.endswith((".json", ".csv")) and not (args.eval_video_dir or args.video_dir):
            raise ValueError(f"--eval_data {args.eval_data} needs --eval_video_dir, the folder of its videos.")
    if train_args.push_to_hub and args.eval_data != "synthetic":
        raise ValueError(
            "--push_to_hub writes the synthetic world's zero-shot figures into the model card: it needs --eval_data "
            "synthetic."
        )
    if train_args.metric_for_best_model and args.eval_data == "none":
        raise ValueError("--metric_for_best_model needs an evaluation: set --eval_data.")
    if args.localization_warmup_steps < 0:
        raise ValueError(f"--localization_warmup_steps must be >= 0, got {args.localization_warmup_steps}.")
    if args.log_term_gradient_norms and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise ValueError("--log_term_gradient_norms measures one process's gradients: run it with one process.")
    if args.accumulate_negatives and args.log_term_gradient_norms:
        raise ValueError(
            "--log_term_gradient_norms measures the gradients of one backward pass: it cannot be combined with "
            "--accumulate_negatives, whose gradients are back-propagated in one pass per micro-batch."
        )


# what a new model's config takes for a loss flag that is not given (the ablation's chosen setting: docs/ablation.md)
NEW_MODEL_LOSS_FIELDS = dict(
    coarse_loss_weight=1.0,
    fine_loss_weight=1.0,
    temporal_loss_weight=1.0,
    temporal_cross_modal_weight=1.0,
    temporal_intra_video_weight=1.0,
    fine_negatives="other_samples",
    discovery_stop_words=False,
    discovery_mutual=True,
)


def pretraining_fields(args: PreTrainingArguments, tokenizer, new_model: bool) -> dict:
    """The config fields the loss flags set: for a new model all of them (`NEW_MODEL_LOSS_FIELDS` where a flag is not
    given); for a checkpoint only the flags given, the rest keep the checkpoint's values."""
    given = {name: getattr(args, name) for name in NEW_MODEL_LOSS_FIELDS if getattr(args, name) is not None}
    fields = {**NEW_MODEL_LOSS_FIELDS, **given} if new_model else given
    if "discovery_stop_words" in fields:
        stop_words = fields.pop("discovery_stop_words")
        fields["discovery_excluded_token_ids"] = stop_word_token_ids(tokenizer) if stop_words else None
    return fields


def context_offsets(batch: dict, config, device) -> torch.Tensor:
    """The context offsets of the temporal loss for `batch`: its own `context_offsets` if it carries them, else drawn
    from the global generator (reseeded per micro-batch by the training loop)."""
    if batch.get("context_offsets") is not None:
        return batch["context_offsets"]
    batch_size, num_clips = batch["pixel_values_videos"].shape[:2]
    return sample_context_offsets(batch_size, num_clips, config.context_window, device=device)


def model_inputs(batch: dict) -> dict:
    """The batch without its `context_offsets`, which go to the model as an argument of their own."""
    return {name: value for name, value in batch.items() if name != "context_offsets"}


def localization_ramp(step: int, warmup_steps: int) -> float:
    """The factor of the fine-grained and temporal loss weights at optimizer `step` (from 1) of a run with
    `--localization_warmup_steps warmup_steps`: `step / warmup_steps`, at most 1."""
    return 1.0 if warmup_steps <= 0 else min(1.0, step / warmup_steps)


def weighted_terms(config, terms: dict, ramp: float) -> dict:
    """Each computed term of `terms` (from `logged_losses`) times its weight in `config`, the fine-grained and
    temporal ones also times `ramp`."""
    factors = {"coarse": 1.0, "fine": ramp, "temporal": ramp}
    return {
        name: factor * getattr(config, f"{name}_loss_weight") * terms[f"loss_{name}"]
        for name, factor in factors.items()
        if terms.get(f"loss_{name}") is not None
    }


def logged_losses(terms: dict, config, ramp: float) -> dict:
    """`terms`: the loss to minimise and its terms (the temporal one's two parts too) under the names the training
    loop logs, `loss`, `loss_coarse`, ... as `LocVTPForPreTrainingOutput` names them. `loss` is the model's weighted
    sum; below a `ramp` of 1 (`localization_ramp`) it is re-weighted, and the ramp is logged."""
    terms = dict(terms)
    if ramp < 1:
        terms["loss"] = sum(weighted_terms(config, terms, ramp).values())
        terms["localization_ramp"] = ramp
    return terms


def pretraining_loss(accelerator, log_term_gradient_norms: bool, localization_warmup_steps: int):
    """The loss function of the training loop: the three LocVTP losses of a micro-batch, with context offsets drawn
    for it, their weights ramped (`localization_ramp`), and (at logging steps, if asked) the norm of each weighted
    term's gradient on the clip encoder."""

    def loss_function(model, batch: dict, step) -> dict:
        unwrapped = accelerator.unwrap_model(model)
        ramp = localization_ramp(step.step, localization_warmup_steps)
        offsets = context_offsets(batch, unwrapped.config, accelerator.device)
        outputs = model(**model_inputs(batch), context_offsets=offsets)
        losses = {name: value for name, value in outputs.items() if name.startswith("loss")}
        terms = logged_losses(losses, unwrapped.config, ramp)
        if log_term_gradient_norms and step.is_logging_step:
            weighted = weighted_terms(unwrapped.config, terms, ramp)
            weighted = {f"grad_norm_{name}": term for name, term in weighted.items()}
            terms.update(term_gradient_norms(weighted, unwrapped.locvtp.vision_model.parameters()))
        return terms

    return loss_function


class AccumulatedNegativesLoss(EmbeddingLoss):
    """
    The loss of `--accumulate_negatives`: the pre-training losses in two halves for the training loop's cached-
    embedding accumulation. `embed` runs the towers (`return_loss=False`) and keeps what the losses need: the
    embeddings, the word and discovery masks and the micro-batch's context offsets (drawn once, in the gradient-free
    pass, and reused); `loss` is [`LocVTPForPreTraining.compute_losses`] over the accumulated batch.
    """

    def __init__(self, accelerator, localization_warmup_steps: int = 0):
        self.accelerator = accelerator
        self.localization_warmup_steps = localization_warmup_steps

    def embed(self, model, batch: dict, step) -> dict:
        unwrapped = self.accelerator.unwrap_model(model)
        offsets = context_offsets(batch, unwrapped.config, self.accelerator.device)
        outputs = model(**model_inputs(batch), return_loss=False)
        embeddings = {
            "clip_embeds": outputs.clip_embeds,
            "video_embeds": outputs.video_embeds,
            "text_embeds": outputs.text_embeds,
            "word_embeds": outputs.word_embeds,
            "word_mask": outputs.word_mask.bool(),
            "context_offsets": offsets,
        }
        discovery_mask = unwrapped.discovery_mask(batch["input_ids"], outputs.word_mask)
        if discovery_mask is not None:
            embeddings["discovery_mask"] = discovery_mask
        return embeddings

    def loss(self, model, embeddings: dict, step, loss_parameter_gradients: bool = True) -> dict:
        unwrapped = self.accelerator.unwrap_model(model)
        losses = unwrapped.compute_losses(**embeddings, loss_parameter_gradients=loss_parameter_gradients)
        ramp = localization_ramp(step.step, self.localization_warmup_steps)
        terms = {f"loss_{name}" if name != "loss" else name: value for name, value in vars(losses).items()}
        return logged_losses(terms, unwrapped.config, ramp)


def pretraining_model_card(
    model, args, world_args, train_args, accelerator, num_train_pairs: int | None, results: dict
):
    """The Hub model card of the run: its data, the hyperparameters that shape it and its zero-shot figures."""
    if args.train_data == "synthetic":
        training_data = (
            f"The built-in synthetic video-text world of `locvtp_hf.synthetic` (seed {world_args.world_seed}): "
            f"{world_args.world_train_videos} training videos of coloured shapes doing actions, with generated "
            "English sentences that describe each action and its time span"
        )
        if world_args.world_persistent_object:
            training_data += "; one object per video performs every event"
        if world_args.world_pretraining_span_coverage < 1:
            training_data += (
                f"; each pre-training span widened so that its sentence's event covers "
                f"{world_args.world_pretraining_span_coverage:.0%} of it"
            )
    else:
        training_data = f"`{Path(args.train_data).name}`"
    if num_train_pairs is not None:
        training_data += f"; {num_train_pairs} (span, text) pairs"
    processes, micro_batch = accelerator.num_processes, train_args.per_device_batch_size
    evaluation_set = dict(
        dataset_type="locvtp-synthetic-world",
        dataset_name=f"LocVTP synthetic world (seed {world_args.world_seed}), held-out videos",
        dataset_split="test",
    )
    return create_model_card(
        model,
        train_args.hub_model_id,
        training_data=training_data + ".",
        training_hyperparameters={
            "Optimizer steps": results["steps"],
            "Batch per optimizer step (processes x micro-batch x accumulation)": (
                f"{processes} x {micro_batch} x {train_args.gradient_accumulation_steps}"
            ),
            "Contrastive batch (the negatives of a loss)": (
                f"{processes * micro_batch * train_args.gradient_accumulation_steps}: the whole accumulated batch "
                "(cached embeddings)"
                if args.accumulate_negatives
                else f"{processes * micro_batch}: one micro-batch of all processes"
            ),
            "Optimizer": f"AdamW, weight decay {train_args.weight_decay} on linear and convolution weights",
            "Learning rate": f"{train_args.learning_rate}, {train_args.warmup_steps} warm-up steps, cosine decay",
            "Gradient clipping (max norm)": train_args.max_grad_norm,
            "Warm-up of the fine-grained and temporal weights": (
                f"linear from 0 over the first {args.localization_warmup_steps} steps"
                if args.localization_warmup_steps
                else "none"
            ),
            "Mixed precision": accelerator.mixed_precision,
            "Seed": train_args.seed,
            "Hardware": f"{processes} x {accelerator.device.type}",
        },
        eval_results=[
            *eval_results_from_metrics(
                {name: results[name] for name in ("text_to_video_R@1", "text_to_video_R@5")},
                task_type="text-to-video-retrieval",
                task_name="Zero-shot text-to-video retrieval",
                metric_names={"text_to_video_R@1": "R@1", "text_to_video_R@5": "R@5"},
                **evaluation_set,
            ),
            *eval_results_from_metrics(
                {"probe_hit_rate": results["probe_hit_rate"]},
                task_type="temporal-grounding",
                task_name="Zero-shot clip localization probe",
                metric_names={"probe_hit_rate": "best clip inside the moment"},
                **evaluation_set,
            ),
        ],
        evaluation_notes=(
            f"Zero-shot on {world_args.world_test_videos} held-out videos of the synthetic world, whatever the "
            "training data. Retrieval: each video's caption ranks all the videos; chance is "
            f"R@1 {results['text_to_video_R@1_chance']:.3f}, R@5 {results['text_to_video_R@5_chance']:.3f}. Probe: "
            f"for each query, the video's clip (of {args.probe_num_clips}) that best matches the sentence lies "
            f"inside the queried moment; a random clip does {results['probe_random_rate']:.3f} of the time. One run, "
            "one seed."
        ),
        language="en" if args.train_data == "synthetic" else None,
    )


# (figure, the chance level or floor it is read against) of the final table
EVALUATION_TABLE = [
    ("text_to_video_R@1", "text_to_video_R@1_chance"),
    ("text_to_video_R@5", "text_to_video_R@5_chance"),
    ("video_to_text_R@1", "video_to_text_R@1_chance"),
    ("video_to_text_R@5", "video_to_text_R@5_chance"),
    ("in_video_auc", None),
    ("zero_shot_R@1,IoU=0.3", "zero_shot_random_R@1,IoU=0.3"),
    ("zero_shot_R@1,IoU=0.5", "zero_shot_random_R@1,IoU=0.5"),
    ("zero_shot_R@1,IoU=0.7", "zero_shot_random_R@1,IoU=0.7"),
    ("zero_shot_mIoU", "zero_shot_random_mIoU"),
    ("probe_hit_rate", "probe_random_rate"),
]


def print_evaluation_table(results: dict, data: str) -> None:
    """The zero-shot figures on `data` beside their chance levels (for zero-shot grounding: the same search over random
    clip features), then the run's other figures and counts."""
    print(f"\n| zero-shot on {data} | value | chance |\n|---|---|---|")
    for name, reference in EVALUATION_TABLE:
        if name in results:
            print(f"| {name} | {results[name]:.3f} | {0.5 if reference is None else results[reference]:.3f} |")
    shown = {name for row in EVALUATION_TABLE for name in row}
    for name, value in results.items():
        if name not in shown:
            print(f"| {name} | {value:.3f} | |" if isinstance(value, float) else f"| {name} | {value} | |")


def validation_evaluation(model, processor, retrieval_set, queries, args: PreTrainingArguments) -> dict:
    """
    Zero-shot on validation data: text-to-video and video-to-text R@k among its captions (with their chance levels;
    unreadable videos are left out and counted), and the head-free localization figures on its rows with a span.
    """
    metrics, unreadable = retrieval_evaluation(model, processor, retrieval_set, ks=(1, 5), skip_unreadable=True)
    results = {name: value for name, value in metrics.items() if "_R@" in name}
    for direction, candidates in (("text_to_video", metrics["num_videos"]), ("video_to_text", metrics["num_texts"])):
        results.update({f"{direction}_R@{k}_chance": min(k / candidates, 1.0) for k in (1, 5)})
    results["validation_unreadable_videos"] = len(unreadable)
    if queries is not None:
        results.update(localization_evaluation(model, processor, queries, num_clips=args.probe_num_clips))
    return results


def main():
    model_args, args, world_args, train_args = parse_arguments(
        (ModelArguments, PreTrainingArguments, SyntheticWorldArguments, TrainingArguments),
        description=__doc__,
        defaults=SCRIPT_DEFAULTS,
    )
    check_arguments(model_args, args, train_args)
    output_dir = Path(train_args.output_dir)
    accelerator = setup_accelerator(train_args)

    # ---- data ------------------------------------------------------------------------------------------------------
    # the synthetic world is built only when it is read: as training data, or as the held-out evaluation videos
    world = world_args.build() if "synthetic" in (args.train_data, args.eval_data) else None
    load_video, video_fps, train_rows, rows_without_caption = None, None, None, []
    streaming = is_sharded(args.train_data)  # shards are streamed below, once the processor exists
    if args.train_data == "synthetic":
        train_rows = world.pretraining_pairs("train")
        load_video, video_fps = world.render, world.fps
    elif not streaming:
        train_rows, rows_without_caption = read_rows(args.train_data, args.video_dir, "--train_data")
    if args.eval_data == "synthetic":
        test_captions, test_queries = world.captions("test"), world.grounding_queries("test")
    elif args.eval_data != "none":
        validation_rows, _ = read_rows(args.eval_data, args.eval_video_dir or args.video_dir, "--eval_data")
        validation_retrieval, validation_queries = validation_sets(validation_rows)
        logger.info(
            f"Validation: {len(validation_retrieval)} videos, {len(validation_rows)} captions, "
            f"{0 if validation_queries is None else len(validation_queries)} with a span ({args.eval_data})"
        )

    # ---- model and processor ---------------------------------------------------------------------------------------
    if model_args.checkpoint:
        processor = LocVTPProcessor.from_pretrained(model_args.checkpoint)
        model = LocVTPForPreTraining.from_pretrained(
            model_args.checkpoint, **pretraining_fields(args, processor.tokenizer, new_model=False)
        )
    else:
        if args.text_model_name_or_path:
            tokenizer = AutoTokenizer.from_pretrained(args.text_model_name_or_path)
        else:
            sentences = list(train_rows["text"])
            if args.eval_data == "synthetic":
                sentences += [
                    *test_captions["caption"],
                    *(sentence for negatives in test_captions["hard_negatives"] for sentence in negatives),
                ]
            elif args.eval_data != "none":
                sentences += list(validation_rows["text"])
            tokenizer = word_tokenizer(sentences)
        if args.vision_model_name_or_path:
            model = LocVTPForPreTraining.from_vision_text_pretrained(
                args.vision_model_name_or_path,
                args.text_model_name_or_path,
                **locvtp_fields(model_args),
                **pretraining_fields(args, tokenizer, new_model=True),
            )
        else:
            model = LocVTPForPreTraining(
                small_model_config(model_args, tokenizer, **pretraining_fields(args, tokenizer, new_model=True))
            )
        processor = new_processor(model.config, tokenizer, model_args.max_text_length)
    if args.resize_while_decoding:
        processor.video_processor.resize_while_decoding = True
    model.freeze_towers(vision=args.freeze_vision, text=args.freeze_text)

    if streaming:
        try:
            from torchdata.stateful_dataloader import StatefulDataLoader
        except ImportError as error:
            raise ImportError("Streaming shards needs torchdata: pip install 'locvtp-hf[streaming]'") from error
        train_dataset = StreamingVideoTextDataset(
            args.train_data,
            processor,
            rank=accelerator.process_index,
            world_size=accelerator.num_processes,
            seed=train_args.seed,
        )
        logger.info(f"Streaming {len(train_dataset.files)} shard(s) of {args.train_data}")
        train_dataloader = StatefulDataLoader(
            train_dataset,
            batch_size=train_args.per_device_batch_size,
            collate_fn=VideoTextCollator(processor),
            num_workers=train_args.num_workers,
        )
    else:
        train_dataset = VideoTextPairDataset(
            train_rows, processor, load_video=load_video, video_fps=video_fps, training=True, seed=train_args.seed
        )
        train_dataloader = torch.utils.data.DataLoader(
            train_dataset,
            batch_size=train_args.per_device_batch_size,
            shuffle=True,
            drop_last=True,
            collate_fn=VideoTextCollator(processor),
            num_workers=train_args.num_workers,
        )

    def evaluate(trained: LocVTPModel) -> dict:
        """Zero-shot on the synthetic world's held-out videos or the validation data: retrieval and head-free
        localization."""
        if args.eval_data != "synthetic":
            return validation_evaluation(trained, processor, validation_retrieval, validation_queries, args)
        return {
            **text_to_video_retrieval(
                trained,
                processor,
                test_captions["video_id"],
                test_captions["caption"],
                load_video=world.render,
                video_fps=world.fps,
            ),
            **localization_evaluation(
                trained,
                processor,
                test_queries,
                num_clips=args.probe_num_clips,
                load_video=world.render,
                video_fps=world.fps,
            ),
        }

    # ---- train -----------------------------------------------------------------------------------------------------
    run_arguments = recorded_arguments((model_args, args, world_args, train_args), accelerator.num_processes)
    result = train(
        accelerator,
        model,
        train_dataloader,
        (
            AccumulatedNegativesLoss(accelerator, args.localization_warmup_steps)
            if args.accumulate_negatives
            else pretraining_loss(accelerator, args.log_term_gradient_norms, args.localization_warmup_steps)
        ),
        train_args,
        evaluate=(lambda trained: evaluate(trained.locvtp)) if args.eval_data != "none" else None,
        run_arguments=run_arguments,
        epoch_aware=() if streaming else (train_dataset,),
        streaming=streaming,
        tracker_project="locvtp-pretrain",
        description="pre-training",
    )

    # ---- save, evaluate, report ------------------------------------------------------------------------------------
    unwrapped = accelerator.unwrap_model(result.model)
    # every process takes part in gathering the full state dict (needed when parameters are sharded)
    state_dict = accelerator.get_state_dict(result.model)
    skipped_count, skipped_shard_count = (
        int(accelerator.reduce(torch.tensor(len(skipped), device=accelerator.device), "sum"))
        for skipped in (result.skipped_samples, result.skipped_shards)
    )
    if result.skipped_samples:
        logger.warning(
            f"Process {accelerator.process_index} skipped training samples, e.g. {result.skipped_samples[:3]}"
        )
    if result.skipped_shards:
        logger.warning(f"Process {accelerator.process_index} skipped unreadable shards: {result.skipped_shards}")
    if accelerator.is_main_process:
        unwrapped.save_pretrained(output_dir, state_dict=state_dict)
        processor.save_pretrained(output_dir)
        logger.info(
            f"{skipped_count} training sample(s) skipped (unreadable videos; streamed samples without a caption or "
            f"with a malformed .json), {skipped_shard_count} unreadable shard(s) skipped, {len(rows_without_caption)} "
            f"row(s) without a caption dropped when read, {len(result.skipped_nonfinite_steps)} step(s) skipped for a "
            "non-finite loss"
        )
        results = {
            "skipped_training_samples": skipped_count,
            "skipped_shards": skipped_shard_count,
            "rows_without_caption": len(rows_without_caption),
            "skipped_nonfinite_steps": len(result.skipped_nonfinite_steps),
            "steps": result.completed_steps,
        }
        if (output_dir / BestModel.FOLDER).is_dir():
            processor.save_pretrained(output_dir / BestModel.FOLDER)
        if args.eval_data != "none":
            # evaluate (and push) the model as saved: with FSDP the trained module only holds this process's shards
            trained = LocVTPModel.from_pretrained(output_dir).to(accelerator.device).eval()
            evaluated_on = "held-out synthetic videos" if args.eval_data == "synthetic" else args.eval_data
            results = {**evaluate(trained), "evaluated_on": evaluated_on, **results}
            print_evaluation_table(results, evaluated_on)
        (output_dir / "eval_results.json").write_text(json.dumps(results, indent=2) + "\n")
        logger.info(f"Model, processor and eval_results.json saved in {output_dir}")
        if train_args.push_to_hub:
            num_train_pairs = None if train_rows is None else len(train_rows)
            card = pretraining_model_card(
                trained, args, world_args, train_args, accelerator, num_train_pairs, results
            )
            commit = push_to_hub(
                train_args.hub_model_id,
                trained,
                processor,
                card,
                extra_files=[output_dir / "eval_results.json"],
            )
            logger.info(f"Pushed to {commit.commit_url}")
    accelerator.end_training()


if __name__ == "__main__":
    main()
