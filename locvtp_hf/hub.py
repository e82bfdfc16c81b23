"""Sharing LocVTP checkpoints on the Hugging Face Hub: weights, config, processor, model code and model card in one
commit, so that the repository loads with `from_pretrained` after `import locvtp_hf` and with `trust_remote_code=True`
without it."""

import contextlib
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

from huggingface_hub import CommitInfo, CommitOperationAdd, HfApi, ModelCard
from transformers import PreTrainedModel, ProcessorMixin
from transformers.dynamic_module_utils import custom_object_save

from .model_card import _shareable_name_or_path, check_locvtp_model, create_model_card
from .modeling_locvtp import LocVTPForTemporalGrounding, LocVTPModel
from .pipeline_temporal_grounding import TASK as GROUNDING_TASK
from .pipeline_temporal_grounding import VideoTemporalGroundingPipeline


@contextlib.contextmanager
def _auto_classes_registered(model: PreTrainedModel, processor: ProcessorMixin | None) -> Iterator[None]:
    """
    Registers the classes of `model` and `processor` for remote code while saving, so that `save_pretrained` writes
    the `auto_map` entries and copies the code files; the classes' earlier registration is restored afterwards.
    """
    # every model class loads through AutoModel: `AutoModel.from_pretrained(repo, trust_remote_code=True)` returns
    # the class that was pushed (LocVTPModel or a task class)
    registrations = {type(model.config): "AutoConfig", type(model): "AutoModel"}
    if processor is not None:
        registrations[type(processor)] = "AutoProcessor"
        video_processor = getattr(processor, "video_processor", None)
        if video_processor is not None:
            registrations[type(video_processor)] = "AutoVideoProcessor"
    missing = object()
    previous = {cls: vars(cls).get("_auto_class", missing) for cls in registrations}
    try:
        for cls, auto_class in registrations.items():
            cls.register_for_auto_class(auto_class)
        yield
    finally:
        for cls, value in previous.items():
            if value is missing:
                del cls._auto_class
            else:
                cls._auto_class = value


@contextlib.contextmanager
def _grounding_pipeline_declared(model: PreTrainedModel) -> Iterator[bool]:
    """
    For a model the grounding pipeline runs (a `LocVTPForTemporalGrounding`, or a `LocVTPModel` for zero-shot
    grounding), declares the pipeline in the config while saving (`custom_pipelines`, as transformers'
    `Pipeline.save_pretrained` does), so that `pipeline("video-temporal-grounding", model=repo,
    trust_remote_code=True)` runs it from the repository's own code. Yields whether it did; the config is restored
    afterwards.
    """
    if type(model) not in (LocVTPForTemporalGrounding, LocVTPModel):
        yield False
        return
    module = VideoTemporalGroundingPipeline.__module__.rsplit(".", 1)[-1]
    # `pt`: the Auto class that loads the model; with remote code `AutoModel` gives the class that was saved
    model.config.custom_pipelines = {
        GROUNDING_TASK: {
            "impl": f"{module}.{VideoTemporalGroundingPipeline.__name__}",
            "pt": ["AutoModel"],
            "tf": [],
            "type": "multimodal",
        }
    }
    try:
        yield True
    finally:
        del model.config.custom_pipelines


@contextlib.contextmanager
def _tower_paths_shared(config) -> Iterator[None]:
    """
    While saving, the towers' `_name_or_path` (which `config.json` keeps, and the model card reads to say where each
    tower was initialised from) name a local folder by its last part only, as `./<name>`; restored afterwards.
    """
    sub_configs = [getattr(config, name) for name in config.sub_configs]
    previous = [sub_config._name_or_path for sub_config in sub_configs]
    try:
        for sub_config in sub_configs:
            sub_config._name_or_path = _shareable_name_or_path(sub_config._name_or_path)
        yield
    finally:
        for sub_config, name_or_path in zip(sub_configs, previous, strict=True):
            sub_config._name_or_path = name_or_path


def save_for_hub(
    save_directory: str | Path,
    model: PreTrainedModel,
    processor: ProcessorMixin | None = None,
    model_card: ModelCard | None = None,
    extra_files: Sequence[str | Path] = (),
    state_dict: dict | None = None,
) -> list[str]:
    r"""
    Writes into `save_directory` exactly what [`push_to_hub`] uploads: the model (`model.safetensors`,
    `config.json`), the processor's files, the model code (`*.py`, with `auto_map` entries in the configs) and the
    model card as `README.md`. The folder loads with `from_pretrained(save_directory)`, also with
    `trust_remote_code=True` where `locvtp_hf` is not installed; for a `LocVTPForTemporalGrounding` or a `LocVTPModel`
    so does `pipeline("video-temporal-grounding", model=save_directory, trust_remote_code=True)` (the pipeline's code
    is shared too, declared in `config.json`'s `custom_pipelines`). No file it writes holds a path of this machine:
    towers initialised from local folders are recorded as `./<folder name>` in `config.json` (Hub ids as they are),
    and the card names local folders by their last part. The `extra_files` are copied as they are.

    Args:
        save_directory (`str` or `Path`):
            The folder; created if needed. Files already in it stay.
        model (`PreTrainedModel`):
            A LocVTP model: `LocVTPModel` or a task class.
        processor (`LocVTPProcessor`, *optional*):
            The checkpoint's processor. Without it, users cannot prepare inputs from the repository alone.
        model_card (`ModelCard`, *optional*):
            The card, e.g. from [`create_model_card`]. Default: a card made from the model alone.
        extra_files (`Sequence[str | Path]`, *optional*):
            More files to share, e.g. the run's `eval_results.json`, written under their own names (which must not be
            those of the checkpoint's files; that is checked before the folder changes). They may already be in the
            folder.
        state_dict (`dict`, *optional*):
            The weights to save instead of `model.state_dict()`, e.g. `accelerator.get_state_dict(model)` after
            sharded (FSDP) training.

    Returns:
        `list[str]`: the paths of all files in the folder, relative to it, sorted.
    """
    check_locvtp_model(model)
    if processor is not None and not isinstance(processor, ProcessorMixin):
        raise TypeError(
            f"processor must be the checkpoint's processor (a ProcessorMixin such as LocVTPProcessor), got "
            f"{type(processor).__name__}."
        )
    extra_files = [Path(path) for path in extra_files]
    for path in extra_files:
        if not path.is_file():
            raise FileNotFoundError(f"Extra file to share {str(path)!r} does not exist or is not a file.")
    names = [path.name for path in extra_files]
    if len(set(names)) < len(names):
        raise ValueError(f"Extra files to share must have different names, got {names}.")
    card = model_card if model_card is not None else create_model_card(model)  # fails before anything is written
    folder = Path(save_directory)
    folder.parent.mkdir(parents=True, exist_ok=True)
    # the checkpoint is written beside the folder first, so that a name clash is found before the folder changes
    with tempfile.TemporaryDirectory(dir=folder.parent, prefix=f".{folder.name}-") as staging_name:
        staging = Path(staging_name)
        with (
            _auto_classes_registered(model, processor),
            _tower_paths_shared(model.config),
            _grounding_pipeline_declared(model) as pipeline_declared,
        ):
            model.save_pretrained(staging, state_dict=state_dict)
            if processor is not None:
                processor.save_pretrained(staging)
            if pipeline_declared:
                custom_object_save(VideoTemporalGroundingPipeline, staging)  # the pipeline's file and what it imports
        card.save(staging / "README.md")
        for path in extra_files:
            if (staging / path.name).exists():
                raise ValueError(
                    f"Extra file {str(path)!r} has the name of a file the checkpoint itself writes ({path.name}): "
                    "rename it."
                )
        shutil.copytree(staging, folder, dirs_exist_ok=True, copy_function=shutil.move)
    for path in extra_files:
        target = folder / path.name
        if not (target.exists() and target.samefile(path)):  # an extra file may already be in the folder
            shutil.copyfile(path, target)
    return sorted(path.relative_to(folder).as_posix() for path in folder.rglob("*") if path.is_file())


def push_to_hub(
    repo_id: str,
    model: PreTrainedModel,
    processor: ProcessorMixin | None = None,
    model_card: ModelCard | None = None,
    *,
    extra_files: Sequence[str | Path] = (),
    state_dict: dict | None = None,
    commit_message: str = "Upload LocVTP model, processor, code and model card",
    commit_description: str | None = None,
    private: bool | None = None,
    token: str | bool | None = None,
    revision: str | None = None,
    create_pr: bool = False,
) -> CommitInfo:
    r"""
    Pushes a LocVTP checkpoint to the Hub in one commit: the files of [`save_for_hub`] (weights as safetensors,
    config, processor files, model code, `README.md` card and `extra_files`).

    Args:
        repo_id (`str`):
            The repository, `"user/name"` or `"organisation/name"`; created if it does not exist.
        model (`PreTrainedModel`):
            A LocVTP model: `LocVTPModel` or a task class.
        processor (`LocVTPProcessor`, *optional*):
            The checkpoint's processor.
        model_card (`ModelCard`, *optional*):
            The card, e.g. from [`create_model_card`] with the run's training data and evaluation figures. Default:
            a card made from the model alone, which replaces the repository's card.
        extra_files (`Sequence[str | Path]`, *optional*):
            More files to upload under their own names, e.g. `eval_results.json`.
        state_dict (`dict`, *optional*):
            The weights to upload instead of `model.state_dict()`, e.g. `accelerator.get_state_dict(model)`.
        commit_message (`str`, *optional*), commit_description (`str`, *optional*):
            The commit's message and description.
        private (`bool`, *optional*):
            Visibility of a repository this call creates.
        token (`str` or `bool`, *optional*):
            Hub token; default: the one saved by `hf auth login` or `HF_TOKEN`.
        revision (`str`, *optional*):
            Branch to push to, created from the default branch if needed.
        create_pr (`bool`, *optional*, defaults to `False`):
            Open a pull request instead of committing to the branch.

    Returns:
        `huggingface_hub.CommitInfo`: the commit's URL, id and, with `create_pr=True`, the pull request's URL.
    """
    check_locvtp_model(model)
    api = HfApi(library_name="locvtp_hf")
    repo_id = api.create_repo(repo_id, private=private, token=token, exist_ok=True).repo_id
    if model_card is None:
        model_card = create_model_card(model, repo_id)
    if revision is not None and not create_pr:
        api.create_branch(repo_id, branch=revision, token=token, exist_ok=True)
    with tempfile.TemporaryDirectory() as folder:
        files = save_for_hub(folder, model, processor, model_card, extra_files, state_dict)
        operations = [CommitOperationAdd(path_in_repo=name, path_or_fileobj=str(Path(folder, name))) for name in files]
        return api.create_commit(
            repo_id,
            operations,
            commit_message=commit_message,
            commit_description=commit_description,
            token=token,
            revision=revision,
            create_pr=create_pr,
        )


__all__ = ["push_to_hub", "save_for_hub"]
