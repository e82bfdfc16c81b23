"""`transformers.Trainer` trains LocVTP with the package's dataset and collator (docs/pretraining.md)."""

import math

import torch
from testing_utils import make_config
from transformers import Trainer, TrainingArguments

from locvtp_hf import LocVTPForPreTraining
from locvtp_hf.data import VideoTextCollator, VideoTextPairDataset
from locvtp_hf.synthetic import SyntheticWorld


def test_trainer_runs_pretraining_steps_with_the_package_collator(processor, tmp_path):
    world = SyntheticWorld(seed=4, num_train=6, num_test=1, size=32)
    dataset = VideoTextPairDataset(
        world.pretraining_pairs("train"), processor, load_video=world.render, video_fps=world.fps, training=True
    )
    torch.manual_seed(0)
    model = LocVTPForPreTraining(make_config())
    before = {name: value.clone() for name, value in model.named_parameters() if value.requires_grad}
    arguments = TrainingArguments(
        output_dir=str(tmp_path), max_steps=3, per_device_train_batch_size=4, learning_rate=1e-3, logging_steps=1,
        remove_unused_columns=False, save_strategy="no", report_to=[], use_cpu=True, dataloader_num_workers=0,
    )
    trainer = Trainer(
        model=model, args=arguments, train_dataset=dataset,
        data_collator=VideoTextCollator(processor, report_skipped=False),
    )
    result = trainer.train()

    assert result.global_step == 3
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    assert len(losses) == 3 and all(math.isfinite(loss) for loss in losses)
    changed = [name for name, value in model.named_parameters()
               if name in before and not torch.equal(value, before[name])]
    # every tower and head that the three losses reach was updated
    for prefix in ("locvtp.vision_model.", "locvtp.text_model.", "locvtp.visual_projection", "locvtp.text_projection",
                   "context_head."):
        assert any(name.startswith(prefix) for name in changed), prefix
