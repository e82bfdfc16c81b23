"""Gradient accumulation with cached embeddings (`examples/pretrain.py --accumulate_negatives`): k micro-batches of b
give the same three losses and the same gradients on every trainable parameter as one batch of k x b, in one process
and in two (DDP over gloo) against one process holding the whole global batch; the second, gradient-carrying forward
pass of a micro-batch draws the same dropout as the first."""

import copy
import importlib.util
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState, GradientState
from testing_utils import FRAMES_PER_CLIP, IMAGE_SIZE, NUM_CLIPS, make_config

from locvtp_hf import LocVTPForPreTraining
from locvtp_hf.loss import sample_context_offsets
from locvtp_hf.training import TrainingStep, cached_embedding_step
from locvtp_hf.training.accumulation import concatenate_rows


EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
SENTENCES = [
    "a man opens the door", "the red square slides to the left and then grows", "a dog runs", "a woman sits",
    "the blue ball jumps up and down", "a cat walks", "the green circle moves right then shrinks", "a car",
    "a person closes the fridge", "the box grows", "a ball is on the left", "the woman runs to the car",
]
# the gradients of the accumulated batch add k partial gradients: other sums than one backward pass; and the CPU
# scaled-dot-product attention kernel rounds differently for other batch sizes (a few 1e-6 on near-zero entries)
TOLERANCE = {"rtol": 1e-4, "atol": 1e-5}


def load_pretrain_script():
    spec = importlib.util.spec_from_file_location("pretrain_under_test", EXAMPLES / "pretrain.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def micro_batches(tokenizer, sizes: list[int], seed: int = 0) -> list[dict]:
    """Micro-batches of random pixels and real sentences, each padded to its own text length, with context offsets."""
    generator = torch.Generator().manual_seed(seed)
    batches, start = [], 0
    for size in sizes:
        text = tokenizer(SENTENCES[start : start + size], padding=True, return_special_tokens_mask=True,
                         return_tensors="pt")
        pixels = torch.randn(size, NUM_CLIPS, FRAMES_PER_CLIP, 3, IMAGE_SIZE, IMAGE_SIZE, generator=generator)
        offsets = sample_context_offsets(size, NUM_CLIPS, 2, generator=generator)
        batches.append({"pixel_values_videos": pixels, **text, "context_offsets": offsets})
        start += size
    return batches


def one_batch(batches: list[dict]) -> dict:
    """The micro-batches as one batch (text padded to the longest)."""
    return {name: concatenate_rows([batch[name] for batch in batches]) for name in batches[0]}


def reference_losses_and_gradients(model, batch: dict) -> tuple[list, dict]:
    """One forward and backward pass of `batch`: its losses and the gradient of every trainable parameter."""
    model = copy.deepcopy(model)
    inputs = {name: value for name, value in batch.items() if name != "context_offsets"}
    outputs = model(**inputs, context_offsets=batch["context_offsets"])
    outputs.loss.backward()
    terms = [outputs.loss, outputs.loss_coarse, outputs.loss_fine, outputs.loss_temporal]
    gradients = {name: parameter.grad for name, parameter in model.named_parameters() if parameter.requires_grad}
    return [term.detach() for term in terms], gradients


@pytest.fixture
def accelerator_factory():
    """Builds a one-process CPU `Accelerator` and resets Accelerate's process-wide state afterwards."""
    yield lambda accumulation: Accelerator(cpu=True, gradient_accumulation_steps=accumulation)
    AcceleratorState._reset_state(True)
    GradientState._reset_state()


def accumulate(accelerator, model, batches, reseed=None, step=1, localization_warmup_steps=0) -> tuple[list, dict]:
    """The cached-embedding step of `examples/pretrain.py` over `batches` (optimizer step `step`): its losses and
    gradients."""
    pretrain = load_pretrain_script()
    model = accelerator.prepare(model)
    terms = cached_embedding_step(
        accelerator, model, batches, pretrain.AccumulatedNegativesLoss(accelerator, localization_warmup_steps),
        [TrainingStep(step, index, False) for index in range(len(batches))],
        reseed=reseed or (lambda index: torch.manual_seed(index)),
    )
    gradients = {name: parameter.grad for name, parameter in model.named_parameters() if parameter.requires_grad}
    return [terms[name].detach() for name in ("loss", "loss_coarse", "loss_fine", "loss_temporal")], gradients


def assert_same(terms, gradients, expected_terms, expected_gradients, tolerance):
    for name, term, expected in zip(("loss", "coarse", "fine", "temporal"), terms, expected_terms):
        torch.testing.assert_close(term, expected, **tolerance, msg=name)
    assert gradients.keys() == expected_gradients.keys()
    for name, expected in expected_gradients.items():
        assert gradients[name] is not None, name
        torch.testing.assert_close(gradients[name], expected, **tolerance, msg=name)


@pytest.mark.parametrize("sizes", [[2, 2], [2, 3, 1]], ids=["k2", "k3-uneven"])
def test_accumulated_micro_batches_equal_one_big_batch(tokenizer, accelerator_factory, sizes):
    torch.manual_seed(0)
    # stop words out of discovery: the discovery mask is cached with the embeddings too
    model = LocVTPForPreTraining(make_config(fine_topk_words=2, discovery_excluded_token_ids=[5, 6]))
    batches = micro_batches(tokenizer, sizes)
    assert len({batch["input_ids"].shape[1] for batch in batches}) > 1  # the texts are padded differently
    expected_terms, expected_gradients = reference_losses_and_gradients(model, one_batch(batches))
    model.train()
    terms, gradients = accumulate(accelerator_factory(len(sizes)), model, batches)
    assert_same(terms, gradients, expected_terms, expected_gradients, TOLERANCE)


def test_the_second_pass_draws_the_first_pass_dropout(tokenizer, accelerator_factory):
    # with dropout, the reference is every micro-batch embedded with gradients under the same seed as in the cached
    # step, and the losses computed once over all of them: a second pass with other dropout masks would differ
    config = make_config(fine_topk_words=2)
    config.text_config.hidden_dropout_prob = config.text_config.attention_probs_dropout_prob = 0.3
    config.vision_config.hidden_dropout_prob = 0.3
    torch.manual_seed(0)
    model = LocVTPForPreTraining(config).train()
    batches = micro_batches(tokenizer, [2, 2])
    reference = copy.deepcopy(model)
    embeddings = []
    for index, batch in enumerate(batches):
        torch.manual_seed(100 + index)
        inputs = {name: value for name, value in batch.items() if name != "context_offsets"}
        outputs = reference(**inputs, return_loss=False)
        embeddings.append({name: outputs[name] for name in ("clip_embeds", "video_embeds", "text_embeds",
                                                            "word_embeds", "word_mask")})
    losses = reference.compute_losses(
        **{name: concatenate_rows([embeds[name] for embeds in embeddings]) for name in embeddings[0]},
        context_offsets=torch.cat([batch["context_offsets"] for batch in batches]),
    )
    losses.loss.backward()
    expected_terms = [losses.loss.detach(), losses.coarse.detach(), losses.fine.detach(), losses.temporal.detach()]
    expected_gradients = {name: p.grad for name, p in reference.named_parameters() if p.requires_grad}
    terms, gradients = accumulate(accelerator_factory(2), model, batches, reseed=lambda i: torch.manual_seed(100 + i))
    assert_same(terms, gradients, expected_terms, expected_gradients, TOLERANCE)
    # and the dropout is on: other seeds give other losses
    _, other_gradients = reference_losses_and_gradients(model, one_batch(batches))
    assert not torch.allclose(other_gradients["locvtp.logit_scale"], expected_gradients["locvtp.logit_scale"])


def test_two_processes_accumulating_equal_one_process_with_the_global_batch(tokenizer, tmp_path):
    # process r holds micro-batches sizes[r]; the global batch is process 0's then process 1's, in order
    sizes = [[2, 1], [1, 2]]
    torch.manual_seed(0)
    model = LocVTPForPreTraining(make_config(fine_topk_words=2))
    model.save_pretrained(tmp_path / "model")
    batches = micro_batches(tokenizer, sizes[0] + sizes[1])
    torch.save({"batches": [batches[:2], batches[2:]]}, tmp_path / "data.pt")
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    worker = Path(__file__).with_name("distributed_accumulation_worker.py")
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
         "--master_port", str(port), str(worker), str(tmp_path)],
        capture_output=True, text=True, timeout=300,
        env={**os.environ, "GLOO_SOCKET_IFNAME": "lo", "OMP_NUM_THREADS": "1"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    expected_terms, expected_gradients = reference_losses_and_gradients(model, one_batch(batches))
    for rank in range(2):
        saved = torch.load(tmp_path / f"rank{rank}.pt")
        # the logged terms (the mean over processes) are the global batch's; DDP leaves the averaged gradients,
        # the single-process ones, on every process
        assert_same(saved["terms"], saved["grads"], expected_terms, expected_gradients, TOLERANCE)


def test_the_localization_warmup_ramps_the_fine_and_temporal_weights(tokenizer, accelerator_factory):
    # step 2 of a 4-step warm-up: loss = coarse + 0.5 * (1.5 * fine + 2 * temporal), in the cached-embedding step and
    # in the plain loss function, terms and gradients both
    pretrain = load_pretrain_script()
    assert [pretrain.localization_ramp(step, 4) for step in (1, 2, 4, 9)] == [0.25, 0.5, 1.0, 1.0]
    assert pretrain.localization_ramp(1, 0) == 1.0
    torch.manual_seed(0)
    model = LocVTPForPreTraining(make_config(fine_topk_words=2, fine_loss_weight=1.5, temporal_loss_weight=2.0))
    batches = micro_batches(tokenizer, [2, 2])
    batch = one_batch(batches)
    reference = copy.deepcopy(model)
    inputs = {name: value for name, value in batch.items() if name != "context_offsets"}
    outputs = reference(**inputs, context_offsets=batch["context_offsets"])
    loss = outputs.loss_coarse + 0.5 * (1.5 * outputs.loss_fine + 2.0 * outputs.loss_temporal)
    loss.backward()
    expected_terms = [term.detach() for term in (loss, outputs.loss_coarse, outputs.loss_fine, outputs.loss_temporal)]
    expected_gradients = {name: p.grad for name, p in reference.named_parameters() if p.requires_grad}

    accelerator = accelerator_factory(1)
    plain = copy.deepcopy(model)
    terms = pretrain.pretraining_loss(accelerator, False, 4)(plain, batch, TrainingStep(2, 0, False))
    assert terms["localization_ramp"] == 0.5
    terms["loss"].backward()
    gradients = {name: p.grad for name, p in plain.named_parameters() if p.requires_grad}
    names = ("loss", "loss_coarse", "loss_fine", "loss_temporal")
    assert_same([terms[name] for name in names], gradients, expected_terms, expected_gradients, TOLERANCE)

    AcceleratorState._reset_state(True)
    GradientState._reset_state()
    terms, gradients = accumulate(accelerator_factory(2), model, batches, step=2, localization_warmup_steps=4)
    assert_same(terms, gradients, expected_terms, expected_gradients, TOLERANCE)
