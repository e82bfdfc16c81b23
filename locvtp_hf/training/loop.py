"""
The training loop of pre-training, retrieval fine-tuning and grounding fine-tuning: each gives its model, its data,
its loss function and its evaluation; the loop owns the optimizer (AdamW, warm-up then cosine decay), gradient
accumulation (plain, or with cached embeddings so that the contrastive losses see the whole accumulated batch: an
[`EmbeddingLoss`], see `locvtp_hf.training.accumulation`), the non-finite loss guard, logging to the trackers,
periodic evaluation and checkpoints, and exact resume.

Exact resume: the data order of an epoch depends only on the seed and the epoch, a resumed run skips the micro-batches
the checkpoint's run had consumed (streamed shards restore their own position), and the random draws of a
micro-batch (dropout, a loss's sampling) depend only on its place in the run. A resumed run therefore ends with the
same weights as an uninterrupted one.
"""

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from tqdm.auto import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from .accumulation import EmbeddingLoss, cached_embedding_step, check_cached_embedding_support
from .arguments import TrainingArguments
from .checkpointing import (
    BestModel,
    check_resume_arguments,
    checkpoint_step,
    checkpoint_to_resume,
    load_data_position,
    save_checkpoint,
)
from .nonfinite import NonFiniteLossGuard
from .optimization import adamw_optimizer, cosine_schedule


logger = logging.getLogger(__name__)


@dataclass
class TrainingStep:
    """
    Where a micro-batch is in the run, for its loss function.

    Attributes:
        step (`int`): The optimizer step the micro-batch counts towards (from 1).
        micro_step (`int`): The micro-batch's place in its epoch (or in the stream).
        is_logging_step (`bool`): The micro-batch completes an optimizer step whose losses are logged.
    """

    step: int
    micro_step: int
    is_logging_step: bool


# (prepared model, batch, step) -> {"loss": the scalar to minimise, other terms to log (tensors or floats)}
LossFunction = Callable[[torch.nn.Module, dict, TrainingStep], dict]
# (unwrapped model) -> {metric name: value}, run on the main process
EvaluationFunction = Callable[[torch.nn.Module], dict]


@dataclass
class TrainingResult:
    """
    Attributes:
        model (`torch.nn.Module`): The prepared (possibly wrapped) model; `accelerator.unwrap_model` gives the module.
        completed_steps (`int`): Optimizer steps done, those of a resumed checkpoint included.
        losses (`list[float]`): The loss of every step this process ran (its last micro-batch), skipped ones included.
        skipped_samples (`list`), skipped_shards (`list`): What the collator could not read (this process).
        skipped_nonfinite_steps (`list[int]`): The steps skipped for a NaN or infinite loss.
    """

    model: torch.nn.Module
    completed_steps: int
    losses: list[float] = field(default_factory=list)
    skipped_samples: list = field(default_factory=list)
    skipped_shards: list = field(default_factory=list)
    skipped_nonfinite_steps: list[int] = field(default_factory=list)


def train(
    accelerator: Accelerator,
    model: torch.nn.Module,
    dataloader,
    loss_function: LossFunction,
    args: TrainingArguments,
    evaluate: EvaluationFunction | None = None,
    run_arguments: dict | None = None,
    epoch_aware: Sequence = (),
    streaming: bool = False,
    tracker_project: str | None = None,
    description: str = "training",
    progress: bool = True,
) -> TrainingResult:
    """
    Train `model` for `args.max_steps` optimizer steps; only its parameters that require gradients train.

    Args:
        accelerator (`Accelerator`): The run's accelerator (its gradient accumulation steps are the run's).
        model (`torch.nn.Module`): The model, not yet prepared.
        dataloader: A `DataLoader` of batches (of dicts), not yet prepared; a `StatefulDataLoader` over streamed
            shards with `streaming=True` (each process streams its own shards: it is not prepared, and its position
            is saved beside each checkpoint). `"skipped"` / `"skipped_shards"` entries of a batch (lists) are popped
            and collected.
        loss_function (`LossFunction` or [`EmbeddingLoss`]): The loss of a micro-batch: `{"loss": ..., other terms}`.
            An [`EmbeddingLoss`] with gradient accumulation (`gradient_accumulation_steps > 1`) computes the losses over
            the whole accumulated batch from cached embeddings (one more forward pass per micro-batch; DDP or one
            process), so that accumulation adds negatives; the logged losses are then those of the accumulated batch.
        args ([`TrainingArguments`]): Steps, optimisation, logging, evaluation, checkpointing and
            `resume_from_checkpoint`.
        evaluate (`EvaluationFunction`, *optional*): The script's evaluation, run on the main process with the
            unwrapped model every `args.eval_steps` optimizer steps; its numbers are logged as `eval_<name>`, and
            with `args.metric_for_best_model` the model of the best one is kept ([`BestModel`]). The
            random draws of training do not depend on it (each micro-batch reseeds), so exact resume holds with it.
            The other processes wait: with parameters sharded over processes (FSDP) evaluate the saved model instead.
        run_arguments (`dict`, *optional*): The run's arguments, written beside every checkpoint and compared on
            resume; needed with `args.checkpointing_steps` or `args.resume_from_checkpoint`.
        epoch_aware (`Sequence`): Objects (datasets, samplers) whose `set_epoch` is called at every epoch.
        streaming (`bool`): `dataloader` is an endless stream (see above).
        tracker_project (`str`, *optional*): Starts the accelerator's trackers under this name with `run_arguments`.
        description (`str`), progress (`bool`): The progress bar's label; whether to show it.

    Returns:
        [`TrainingResult`]: the prepared model, the steps done, the losses and what was skipped.
    """
    if (args.checkpointing_steps or args.resume_from_checkpoint) and run_arguments is None:
        raise ValueError("Checkpoints need the run's arguments: pass run_arguments.")
    if args.gradient_checkpointing:
        model.activation_checkpointing_enable()
    # prepare() moves the model to the accelerator's device: the fused update where that is CUDA
    optimizer = adamw_optimizer(model, args.learning_rate, args.weight_decay, fused=accelerator.device.type == "cuda")
    scheduler = cosine_schedule(optimizer, args.warmup_steps, args.max_steps, accelerator.num_processes)
    if streaming:
        model, optimizer, scheduler = accelerator.prepare(model, optimizer, scheduler)
    else:
        model, optimizer, dataloader, scheduler = accelerator.prepare(model, optimizer, dataloader, scheduler)
    if tracker_project and accelerator.log_with:
        accelerator.init_trackers(tracker_project, config=run_arguments)

    checkpoints_dir = Path(args.output_dir) / "checkpoints"
    completed_steps = 0
    checkpoint = checkpoint_to_resume(args.resume_from_checkpoint, checkpoints_dir)
    if checkpoint is not None:
        completed_steps = checkpoint_step(checkpoint)  # refuses the folder of an interrupted write
        check_resume_arguments(checkpoint, run_arguments)
        accelerator.load_state(str(checkpoint))
        if streaming:
            dataloader.load_state_dict(load_data_position(checkpoint, accelerator.process_index))
        logger.info(f"Resumed from {checkpoint} at step {completed_steps}")

    accumulation = accelerator.gradient_accumulation_steps
    cached_embeddings = isinstance(loss_function, EmbeddingLoss) and accumulation > 1
    if cached_embeddings:
        check_cached_embedding_support(accelerator)
    if not streaming:
        updates_per_epoch = len(dataloader) // accumulation
        if updates_per_epoch == 0:
            raise ValueError(
                f"{len(dataloader.dataset)} training items make less than one optimizer step of "
                f"{args.per_device_batch_size} x {accelerator.num_processes} process(es) x {accumulation} "
                "accumulation: lower the batch size or add data."
            )
        logger.info(f"{len(dataloader.dataset)} training items")
    global_batch = args.per_device_batch_size * accelerator.num_processes
    logger.info(
        f"{accelerator.num_processes} process(es), global batch {global_batch} x {accumulation} accumulation"
        + (" (the losses over the accumulated batch, from cached embeddings)" if cached_embeddings else "")
        + f", {args.max_steps} steps"
    )

    def micro_batches():
        """`(micro-step, batch)` from the position the run has reached; the micro-step counts within the epoch."""
        if streaming:  # an endless stream, resumed by its own state
            for micro_step, batch in enumerate(dataloader, start=completed_steps * accumulation):
                yield micro_step, batch.to(accelerator.device)
            return
        while True:
            epoch = completed_steps // updates_per_epoch
            for epoch_aware_object in (dataloader, *epoch_aware):
                epoch_aware_object.set_epoch(epoch)
            skip = (completed_steps % updates_per_epoch) * accumulation
            batches = accelerator.skip_first_batches(dataloader, skip) if skip else dataloader
            for micro_step, batch in enumerate(batches, start=skip):
                if micro_step // accumulation >= updates_per_epoch:
                    break
                yield micro_step, batch

    def optimizer_steps():
        """The micro-batches of each optimizer step together (`[(micro-step, batch), ...]`) with cached embeddings,
        else one micro-batch at a time; the accumulated groups start where the run's steps start."""
        group_size = accumulation if cached_embeddings else 1
        group = []
        for micro_step, batch in micro_batches():
            group.append((micro_step, batch))
            if len(group) == group_size:
                yield group
                group = []

    def seed_micro_batch(micro_step: int) -> None:
        # the randomness of a micro-batch (dropout, a loss's sampling) depends only on its place in the run, so that
        # a resumed run draws what the uninterrupted one drew
        place = [args.seed, completed_steps, micro_step, accelerator.process_index]
        set_seed(int(np.random.SeedSequence(place).generate_state(1)[0]))

    def is_logging_step(step: int) -> bool:
        return step % args.logging_steps == 0 or step == args.max_steps

    best_model = None
    if args.metric_for_best_model and evaluate is not None and accelerator.is_main_process:
        best_model = BestModel(
            args.output_dir, args.metric_for_best_model, args.greater_is_better, resumed=checkpoint is not None
        )
    result = TrainingResult(model, completed_steps)
    nonfinite_guard = NonFiniteLossGuard(accelerator, args.max_consecutive_nonfinite_steps)
    bar = tqdm(
        total=args.max_steps,
        initial=completed_steps,
        disable=not (progress and accelerator.is_local_main_process),
        desc=description,
    )
    model.train()
    with logging_redirect_tqdm():  # log lines above the progress bar, not on it
        for group in optimizer_steps():
            if completed_steps >= args.max_steps:
                break
            for _, batch in group:
                result.skipped_samples += batch.pop("skipped", [])
                result.skipped_shards += batch.pop("skipped_shards", [])
            if cached_embeddings:
                micro_steps = [micro_step for micro_step, _ in group]
                logging_step = is_logging_step(completed_steps + 1)
                steps = [
                    TrainingStep(completed_steps + 1, micro_step, logging_step and index == len(group) - 1)
                    for index, micro_step in enumerate(micro_steps)
                ]
                step = steps[-1]
                terms = cached_embedding_step(
                    accelerator,
                    model,
                    [batch for _, batch in group],
                    loss_function,
                    steps,
                    reseed=lambda index: seed_micro_batch(micro_steps[index]),
                    observe=nonfinite_guard.observe,
                )
                loss = terms["loss"]
                # a skipped step still counts (the data position and the schedule go on), without a weight update
                if nonfinite_guard.should_step(completed_steps + 1):
                    if args.max_grad_norm > 0:
                        accelerator.clip_grad_norm_(model.parameters(), args.max_grad_norm)
                    optimizer.step()
                scheduler.step()
                optimizer.zero_grad()
            else:
                [(micro_step, batch)] = group
                seed_micro_batch(micro_step)
                with accelerator.accumulate(model):
                    step = TrainingStep(
                        completed_steps + 1,
                        micro_step,
                        accelerator.sync_gradients and is_logging_step(completed_steps + 1),
                    )
                    terms = loss_function(model, batch, step)
                    loss = terms["loss"]
                    accelerator.backward(loss)
                    nonfinite_guard.observe(loss)
                    # a skipped step still counts (the data position and the schedule go on), without a weight update
                    if accelerator.sync_gradients and nonfinite_guard.should_step(completed_steps + 1):
                        if args.max_grad_norm > 0:
                            accelerator.clip_grad_norm_(model.parameters(), args.max_grad_norm)
                        optimizer.step()
                    scheduler.step()
                    optimizer.zero_grad()
                if not accelerator.sync_gradients:
                    continue
            completed_steps += 1
            result.losses.append(loss.item())
            bar.update(1)
            if step.is_logging_step:
                logs = {
                    name: accelerator.reduce(value.detach(), "mean").item()
                    for name, value in terms.items()
                    if isinstance(value, torch.Tensor)
                }
                logs["lr"] = scheduler.get_last_lr()[0]
                logs.update({name: value for name, value in terms.items() if isinstance(value, float)})
                bar.set_postfix(loss=f"{logs['loss']:.3f}")
                logger.info(f"step {completed_steps}: " + ", ".join(f"{k} {v:.4g}" for k, v in logs.items()))
                if accelerator.trackers:
                    accelerator.log(logs, step=completed_steps)
            if evaluate is not None and args.eval_steps and completed_steps % args.eval_steps == 0:
                if accelerator.is_main_process:
                    metrics = evaluate(accelerator.unwrap_model(model))
                    logs = {f"eval_{name}": value for name, value in metrics.items() if isinstance(value, int | float)}
                    logger.info(f"step {completed_steps}: " + ", ".join(f"{k} {v:.4g}" for k, v in logs.items()))
                    if accelerator.trackers:
                        accelerator.log(logs, step=completed_steps)
                    if best_model is not None:
                        best_model.update(accelerator.unwrap_model(model), metrics, completed_steps)
                model.train()
                accelerator.wait_for_everyone()
            if args.checkpointing_steps and completed_steps % args.checkpointing_steps == 0:
                save_checkpoint(
                    accelerator,
                    checkpoints_dir / f"step_{completed_steps}",
                    run_arguments,
                    dataloader.state_dict() if streaming else None,
                )
    bar.close()
    if completed_steps < args.max_steps:
        raise RuntimeError(f"The training data ran out after {completed_steps} of {args.max_steps} steps.")
    accelerator.wait_for_everyone()
    result.completed_steps = completed_steps
    result.skipped_nonfinite_steps = nonfinite_guard.skipped_steps
    return result
