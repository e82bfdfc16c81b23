"""LocVTP in under a minute on a CPU, offline: write a few small mp4 videos of moving shapes, pre-train a small LocVTP
model on (video span, sentence) pairs with the three LocVTP losses, check that text-to-video retrieval and clip-level
localization improve, then save the model and processor and load them back through the Auto classes.

    python examples/quickstart.py [--output_dir outputs/quickstart] [--steps 200]
"""

import argparse
import logging
from pathlib import Path

import av
import numpy as np
import torch
from transformers import AutoModel, AutoProcessor, BertTokenizer

import locvtp_hf  # noqa: F401  (registers LocVTP with the Auto classes)
from locvtp_hf import LocVTPConfig, LocVTPModel, LocVTPProcessor, LocVTPVideoProcessor


FPS = 8
SIZE = 64
COLOURS = {"red": (220, 40, 40), "green": (40, 200, 60), "blue": (50, 80, 230), "yellow": (230, 210, 40)}
MOTIONS = {"left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1)}


def write_video(path: Path, events: list[tuple[str, str, float, float]], duration: float) -> None:
    """An mp4 of a grey background where, during each event `(colour, direction, start, end)`, a square of that
    colour crosses the frame in that direction."""
    container = av.open(str(path), mode="w")
    stream = container.add_stream("libx264", rate=FPS)
    stream.width = stream.height = SIZE
    stream.pix_fmt = "yuv420p"
    for index in range(int(duration * FPS)):
        time = index / FPS
        frame = np.full((SIZE, SIZE, 3), 90, dtype=np.uint8)
        for colour, direction, start, end in events:
            if start <= time < end:
                progress = (time - start) / (end - start)
                dx, dy = MOTIONS[direction]
                x = int(SIZE / 2 + dx * (progress - 0.5) * (SIZE - 16)) - 8
                y = int(SIZE / 2 + dy * (progress - 0.5) * (SIZE - 16)) - 8
                frame[max(y, 0) : y + 16, max(x, 0) : x + 16] = COLOURS[colour]
        for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)
    container.close()


def make_data(folder: Path, num_videos: int, rng: np.random.Generator) -> list[dict]:
    """Videos of two consecutive events each, and one (span, sentence) pair per event."""
    folder.mkdir(parents=True, exist_ok=True)
    samples = []
    for index in range(num_videos):
        first, second = rng.choice(list(COLOURS), size=2, replace=False)
        events = [(first, rng.choice(list(MOTIONS)), 0.0, 4.0), (second, rng.choice(list(MOTIONS)), 4.0, 8.0)]
        path = folder / f"video_{index}.mp4"
        write_video(path, events, duration=8.0)
        for colour, direction, start, end in events:
            samples.append({"video": str(path), "span": (start, end), "text": f"the {colour} square moves {direction}",
                            "events": events})
    return samples


def build_processor(num_clips: int, frames_per_clip: int) -> LocVTPProcessor:
    words = ["the", "square", "moves", *COLOURS, *MOTIONS]
    vocab = {token: index for index, token in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words])}
    video_processor = LocVTPVideoProcessor(
        num_clips=num_clips, frames_per_clip=frames_per_clip, size={"shortest_edge": 32},
        crop_size={"height": 32, "width": 32},
    )
    return LocVTPProcessor(video_processor=video_processor, tokenizer=BertTokenizer(vocab=vocab), max_text_length=16)


def evaluate(model, processor, samples) -> dict:
    """Text-to-video R@1 over whole videos, and how often the clip that best matches a sentence lies in its event."""
    videos = sorted({sample["video"] for sample in samples})
    model.eval()
    with torch.no_grad():
        video_inputs = processor(videos=videos, return_tensors="pt")
        video_out = model.get_video_features(video_inputs["pixel_values_videos"])
        text_out = model.get_text_features(**processor(text=[s["text"] for s in samples], return_tensors="pt"))
    similarity = text_out.pooler_output @ video_out.pooler_output.T
    targets = torch.tensor([videos.index(sample["video"]) for sample in samples])
    recall_at_1 = (similarity.argmax(-1) == targets).float().mean().item()

    clip_scores = torch.einsum("sd,std->st", text_out.pooler_output, video_out.clip_embeds[targets])
    best = clip_scores.argmax(-1)
    centres = video_inputs["clip_spans"][targets].mean(-1)  # [S, T]
    starts = torch.tensor([sample["span"][0] for sample in samples])[:, None]
    ends = torch.tensor([sample["span"][1] for sample in samples])[:, None]
    inside = (centres >= starts) & (centres < ends)
    return {
        "text-to-video R@1": round(recall_at_1, 3),
        "R@1 by chance": round(1 / len(videos), 3),
        "best clip inside the event": round(inside.gather(1, best[:, None]).float().mean().item(), 3),
        "random clip inside the event": round(inside.float().mean().item(), 3),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output_dir", default="outputs/quickstart")
    parser.add_argument("--num_videos", type=int, default=12)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    output_dir = Path(args.output_dir)

    samples = make_data(output_dir / "videos", args.num_videos, rng)
    processor = build_processor(num_clips=4, frames_per_clip=4)
    config = LocVTPConfig(
        vision_config=dict(model_type="vit", hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                           intermediate_size=128, image_size=32, patch_size=8),
        text_config=dict(model_type="bert", vocab_size=len(processor.tokenizer), hidden_size=64,
                         num_hidden_layers=2, num_attention_heads=4, intermediate_size=128,
                         max_position_embeddings=32),
        projection_dim=64, num_clips=4, frames_per_clip=4,
    )
    model = LocVTPModel(config)
    logging.info(f"LocVTP with {sum(p.numel() for p in model.parameters()) / 1e6:.2f}M parameters, "
                 f"{len(samples)} (span, sentence) pairs from {args.num_videos} videos")
    logging.info(f"before training: {evaluate(model, processor, samples)}")

    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)
    model.train()
    for step in range(1, args.steps + 1):
        batch = [samples[i] for i in rng.choice(len(samples), size=args.batch_size, replace=False)]
        inputs = processor(videos=[s["video"] for s in batch], text=[s["text"] for s in batch],
                           spans=[s["span"] for s in batch], training=True, generator=int(rng.integers(2**31)),
                           return_tensors="pt")
        out = model(**inputs, return_loss=True)
        optimizer.zero_grad()
        out.loss.backward()
        optimizer.step()
        if step % 10 == 0 or step == 1:
            logging.info(f"step {step:3d}  loss {out.loss.item():.3f}  (coarse {out.loss_coarse.item():.3f}, "
                         f"fine {out.loss_fine.item():.3f}, temporal {out.loss_temporal.item():.3f})")
    logging.info(f"after training:  {evaluate(model, processor, samples)}")

    checkpoint = output_dir / "checkpoint"
    model.save_pretrained(checkpoint)
    processor.save_pretrained(checkpoint)
    reloaded, reloaded_processor = AutoModel.from_pretrained(checkpoint), AutoProcessor.from_pretrained(checkpoint)
    inputs = processor(videos=[samples[0]["video"]], text=[samples[0]["text"]], return_tensors="pt")
    same_inputs = reloaded_processor(videos=[samples[0]["video"]], text=[samples[0]["text"]], return_tensors="pt")
    with torch.no_grad():
        identical = torch.equal(model.eval()(**inputs).clip_embeds, reloaded(**same_inputs).clip_embeds)
    logging.info(f"saved to {checkpoint}; AutoModel/AutoProcessor reload gives identical clip embeddings: {identical}")


if __name__ == "__main__":
    main()
