"""The `video-temporal-grounding` pipeline: the moments of a video that sentences describe, in one call."""

from collections import OrderedDict
from typing import Any, NamedTuple

from transformers import Pipeline
from transformers.utils import logging
from transformers.models.auto.auto_factory import _BaseAutoModelClass, _LazyAutoMapping
from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES

from .grounding_postprocessing import clip_saliency
from .modeling_locvtp import LocVTPForTemporalGrounding, LocVTPModel
from .zero_shot_grounding import zero_shot_grounding, zero_shot_saliency


logger = logging.get_logger(__name__)

TASK = "video-temporal-grounding"


class _BatchVideo(NamedTuple):
    """A video of a list given to the pipeline, with its place in the list so that errors can name it."""

    index: int
    video: Any


class _NoDefaultModel(dict):
    """
    The `default` of the registered task. `pipeline(TASK)` without a model looks up `default["model"]` to download
    one; there is no public LocVTP checkpoint to default to, so the lookup says what to pass instead.
    """

    def __contains__(self, key) -> bool:
        return key == "model"

    def __getitem__(self, key):
        raise ValueError(
            f"The {TASK} pipeline has no default model: pass model=... (a LocVTP checkpoint folder or Hub id, or a "
            "LocVTPForTemporalGrounding / LocVTPModel object, e.g. LocVTPModel.from_clip(...) with processor=...)."
        )


# `PIPELINE_REGISTRY.register_pipeline(TASK, ..., default=NO_DEFAULT_MODEL)` turns transformers' `KeyError: 'default'`
# into the error above.
NO_DEFAULT_MODEL = _NoDefaultModel()


class AutoModelForVideoTemporalGrounding(_BaseAutoModelClass):
    """
    Auto class of temporal grounding models: `from_pretrained` of a LocVTP checkpoint (a pre-training or a grounding
    one) gives a [`LocVTPForTemporalGrounding`]. `import locvtp_hf` registers LocVTP with it; the
    `video-temporal-grounding` pipeline loads its model with it.
    """

    _model_mapping = _LazyAutoMapping(CONFIG_MAPPING_NAMES, OrderedDict())


def _is_a(model, cls: type) -> bool:
    """
    `isinstance` by class name. From a repository's remote code, the model (through `AutoModel`) and this pipeline
    (through the config's `custom_pipelines`) each import their own copy of the modeling module: transformers keys
    the copies by the hash of each entry point's files, so the classes differ while being the same.
    """
    return any(base.__name__ == cls.__name__ for base in type(model).__mro__)


class VideoTemporalGroundingPipeline(Pipeline):
    r"""
    Temporal grounding in one call: for a video and one or more sentences, the moments of the video that each
    sentence describes, best first, in seconds.

    The video is cut into clips by the processor (`task="grounding"`) and encoded once, `clip_chunk_size` clips at a
    time; every query is then scored against the same clip features by [`LocVTPForTemporalGrounding`], and the
    candidate moments go through 1-D NMS.

    Without a trained grounding head (a plain [`LocVTPModel`], or a grounding model loaded from a checkpoint that was
    saved without its head, e.g. a pre-training one) the pipeline grounds zero-shot: each moment is scored from the
    clip-sentence similarities alone ([`~locvtp_hf.zero_shot_grounding.zero_shot_grounding`]); its score is then a
    sum of centred similarities, not a predicted IoU.

    With `return_saliency=True` each query also gets the saliency of every clip of the video (highlight detection):
    the scores of the model's saliency head (`config.grounding_saliency_head`), or, without one, the zero-shot
    saliency (the cosine of each clip feature with the query,
    [`~locvtp_hf.zero_shot_grounding.zero_shot_saliency`]).

    Example:

    ```python
    >>> from transformers import pipeline
    >>> grounder = pipeline("video-temporal-grounding", model="path/to/checkpoint")  # doctest: +SKIP
    >>> grounder("long_video.mp4", queries=["the person opens the fridge", "the person sits down"])  # doctest: +SKIP
    [[{'start': 12.4, 'end': 19.0, 'score': 0.83}, ...], [...]]
    >>> grounder("long_video.mp4", queries="the person opens the fridge", return_saliency=True)  # doctest: +SKIP
    {'moments': [{'start': 12.4, 'end': 19.0, 'score': 0.83}, ...],
     'saliency': {'times': [[0.0, 1.0], [1.0, 2.0], ...], 'scores': [0.02, 0.05, ...]}}
    ```
    """

    _load_processor = True
    _load_image_processor = False
    _load_video_processor = False
    _load_feature_extractor = False
    _load_tokenizer = False

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if not (_is_a(self.model, LocVTPForTemporalGrounding) or _is_a(self.model, LocVTPModel)):
            raise TypeError(
                f"The {TASK} pipeline needs a LocVTPForTemporalGrounding or a LocVTPModel, got "
                f"{type(self.model).__name__}."
            )
        if self.processor is None:
            raise ValueError(f"The {TASK} pipeline needs a LocVTPProcessor: pass processor=... .")
        saved_as = self.model.config.architectures
        untrained_head = saved_as is not None and LocVTPForTemporalGrounding.__name__ not in saved_as
        self.zero_shot = _is_a(self.model, LocVTPModel) or untrained_head
        if _is_a(self.model, LocVTPForTemporalGrounding) and untrained_head:
            logger.warning(
                f"The checkpoint was saved as {saved_as}, without a trained grounding head: grounding zero-shot from "
                "the clip-sentence similarities instead. Fine-tune a head (examples/finetune_grounding.py) for "
                "better moments."
            )

    def _sanitize_parameters(
        self, queries=None, video_fps=None, clip_chunk_size=None, top_k=None, nms_threshold=None, return_saliency=None
    ) -> tuple[dict, dict, dict]:
        preprocess_params = {"queries": queries} if queries is not None else {}
        if video_fps is not None:
            preprocess_params["video_fps"] = video_fps
        forward_params = {}
        if clip_chunk_size is not None:
            if isinstance(clip_chunk_size, bool) or not isinstance(clip_chunk_size, int) or clip_chunk_size < 1:
                raise ValueError(
                    f"clip_chunk_size is the number of clips encoded at once: a positive int, got {clip_chunk_size!r}."
                )
            forward_params["clip_chunk_size"] = clip_chunk_size
        postprocess_params = {}
        if top_k is not None:
            postprocess_params["top_k"] = top_k
        if nms_threshold is not None:
            postprocess_params["nms_threshold"] = nms_threshold
        if return_saliency is not None:
            postprocess_params["return_saliency"] = return_saliency
        return preprocess_params, forward_params, postprocess_params

    def __call__(self, videos, queries=None, **kwargs):
        r"""
        Ground the queries in the video(s).

        Args:
            videos (`str`, `os.PathLike`, [`EncodedVideo`], `[num_frames, H, W, 3]` uint8 array, or a list of those):
                The video; a list is a batch of videos, each asked all the queries.
            queries (`str` or `list[str]`):
                The sentences to ground, by keyword or as the second positional argument.
            top_k (`int`, *optional*, defaults to 5):
                Moments per query.
            nms_threshold (`float`, *optional*):
                1-D NMS threshold; defaults to the model's `config.grounding_nms_threshold`. 1.0 turns NMS off.
            video_fps (`float`, *optional*):
                Frame rate of array inputs (files carry their own).
            clip_chunk_size (`int`, *optional*):
                Clips encoded at once, a positive int; defaults to the model's `config.grounding_clip_chunk_size`.
                This, not `batch_size`, sets how much work one forward pass does: each video is one forward pass
                (its clips are encoded in chunks and all its queries scored together), so `batch_size` is ignored.
            return_saliency (`bool`, *optional*, defaults to `False`):
                Also return the saliency of every clip for each query (see the class doc).

        Returns:
            For one query (a `str`): a list of up to `top_k` `{"start", "end", "score"}` dicts (seconds), best first.
            For a list of queries: one such list per query. For a list of videos: one result per video. With
            `return_saliency=True`, each query's list becomes `{"moments": list, "saliency": {"times": [[start,
            end], ...], "scores": [...]}}`: one time span (seconds) and one score per clip of the video.
        """
        if queries is None:
            raise ValueError(f"The {TASK} pipeline needs the sentences to ground: queries=[...].")
        batch_size = kwargs.pop("batch_size", None) or self._batch_size
        if batch_size is not None and batch_size > 1:
            logger.warning_once(
                f"The {TASK} pipeline runs one video per forward pass, so batch_size={batch_size} is ignored: "
                "raise clip_chunk_size to encode more clips at once."
            )
        if isinstance(videos, list):
            videos = [_BatchVideo(index, video) for index, video in enumerate(videos)]
        return super().__call__(videos, queries=queries, batch_size=1, **kwargs)

    def preprocess(self, video, queries, video_fps=None) -> dict:
        single_query = isinstance(queries, str)
        if not single_query and not isinstance(queries, (list, tuple)):
            raise TypeError(f"queries must be a sentence or a list of sentences, got {type(queries).__name__}.")
        query_list = [queries] if single_query else list(queries)
        if not query_list:
            raise ValueError("queries is empty: give at least one sentence to ground.")
        for index, query in enumerate(query_list):
            if not isinstance(query, str) or not query.strip():
                raise ValueError(f"queries[{index}] is {query!r}: every query must be a non-empty sentence.")
        index, video = video if isinstance(video, _BatchVideo) else (0, video)
        try:
            video_inputs = self.processor(videos=[video], task="grounding", video_fps=video_fps, return_tensors="pt")
        except (FileNotFoundError, ValueError, TypeError) as error:
            if index and error.args and isinstance(error.args[0], str):
                # The processor sees one video at a time and calls it videos[0]: name it by its place in the batch.
                error.args = (error.args[0].replace("videos[0]", f"videos[{index}]", 1), *error.args[1:])
            raise
        text_inputs = self.processor(text=query_list, return_tensors="pt")
        return {"video": dict(video_inputs), "text": dict(text_inputs), "single_query": single_query}

    def _forward(self, model_inputs: dict, clip_chunk_size=None) -> dict:
        video, text = model_inputs["video"], model_inputs["text"]
        clip_features = self.model.get_clip_features(
            video["pixel_values_videos"].to(self.dtype), video["clip_mask"], chunk_size=clip_chunk_size
        )
        num_queries = text["input_ids"].shape[0]
        if self.zero_shot:
            encoder = self.model if _is_a(self.model, LocVTPModel) else self.model.locvtp
            text_embeds = encoder.get_text_features(**text).pooler_output
            return {
                "text_embeds": text_embeds,
                "clip_embeds": clip_features.expand(num_queries, -1, -1),
                "clip_spans": video["clip_spans"].expand(num_queries, -1, -1),
                "clip_mask": video["clip_mask"].expand(num_queries, -1),
                "video_durations": video["video_durations"].expand(num_queries),
                "single_query": model_inputs["single_query"],
            }
        outputs = self.model(
            video_features=clip_features.expand(num_queries, -1, -1),
            video_mask=video["clip_mask"].expand(num_queries, -1),
            video_durations=video["video_durations"].expand(num_queries),
            clip_spans=video["clip_spans"].expand(num_queries, -1, -1),
            **text,
        )
        return {"outputs": outputs, "single_query": model_inputs["single_query"]}

    def postprocess(self, model_outputs: dict, top_k=5, nms_threshold=None, return_saliency=False):
        if nms_threshold is None:
            nms_threshold = self.model.config.grounding_nms_threshold
        if self.zero_shot:
            results = zero_shot_grounding(
                model_outputs["text_embeds"],
                model_outputs["clip_embeds"],
                model_outputs["clip_spans"],
                clip_mask=model_outputs["clip_mask"],
                video_durations=model_outputs["video_durations"],
                top_k=top_k,
                nms_threshold=nms_threshold,
                return_saliency=return_saliency,
            )
        else:
            outputs = model_outputs["outputs"]
            # the pipeline hands back the fields that were not None only
            with_head = getattr(outputs, "saliency_scores", None) is not None
            results = self.processor.post_process_grounding(
                outputs, top_k=top_k, nms_threshold=nms_threshold, return_saliency=return_saliency and with_head
            )
            if return_saliency and not with_head:
                logger.warning_once(
                    "The model has no saliency head (config.grounding_saliency_head): the saliency returned is the "
                    "zero-shot one, the cosine of each clip feature with the query."
                )
                scores = zero_shot_saliency(outputs.video_features, outputs.text_embeds, outputs.video_mask)
                saliency = clip_saliency(scores, outputs.video_mask, outputs.video_durations, outputs.clip_spans)
                results = [{"moments": moments, "saliency": clip} for moments, clip in zip(results, saliency)]
        return results[0] if model_outputs["single_query"] else results


__all__ = ["AutoModelForVideoTemporalGrounding", "VideoTemporalGroundingPipeline"]
