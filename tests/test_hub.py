"""Sharing on the Hub, without a network: huggingface_hub's calls to the Hub are replaced by a fake that records each
commit and writes its files into the local Hugging Face cache, as a later download would leave them. The pushed
repositories load back offline from that cache, from a folder, and as remote code where locvtp_hf is not importable;
their model cards parse with `huggingface_hub.ModelCard` and their usage examples run."""

import hashlib
import json
import re
import runpy
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import setuptools
import torch
from accelerate.state import AcceleratorState
from huggingface_hub import CommitInfo, CommitOperationAdd, EvalResult, HfApi, ModelCard, RepoUrl, constants
from safetensors.torch import load as load_safetensors
from safetensors.torch import load_file
from testing_utils import CROSS_PROCESS_TOLERANCE, make_config, random_batch
from transformers import AutoConfig, AutoModel, AutoProcessor, BertConfig, BertModel, pipeline
from transformers.pipelines import PIPELINE_REGISTRY

from locvtp_hf import (
    LocVTPConfig,
    LocVTPModel,
    create_model_card,
    eval_results_from_metrics,
    push_to_hub,
    save_for_hub,
)
from locvtp_hf import modeling_locvtp
from locvtp_hf.model_card import CLASS_CARDS, MODEL_CARD_TEMPLATE, class_card
from locvtp_hf.pipeline_temporal_grounding import TASK as GROUNDING_TASK
from locvtp_hf.synthetic import SyntheticWorld


ROOT = Path(__file__).resolve().parents[1]
# tiny heads for the task classes, which otherwise default to the paper's sizes
TASK_CONFIG = dict(
    grounding_num_positions=8, grounding_hidden_size=16, grounding_num_conv_layers=1, grounding_conv_kernel_size=3
)
MODEL_CLASSES = [getattr(modeling_locvtp, name) for name in CLASS_CARDS]


class FakeHub:
    """
    The Hub's side of `HfApi.create_repo`, `create_branch` and `create_commit`. Each commit is recorded (repository,
    branch, message, the bytes of every file) and its files land in the local Hugging Face cache (`HF_HUB_CACHE`) as a
    download leaves them: `refs/<branch>` holds the commit id and `snapshots/<commit id>/` the branch's files, those of
    earlier commits included, as on the Hub.
    """

    def __init__(self, cache_dir: Path):
        self.cache_dir = cache_dir
        self.repos = []
        self.commits = []

    def create_repo(self, repo_id, *, exist_ok=False, **kwargs):
        self.repos.append(repo_id)
        return RepoUrl(f"{constants.ENDPOINT}/{repo_id}")

    def create_branch(self, repo_id, *, branch, exist_ok=False, **kwargs):
        pass  # a branch without commits has no files yet

    def create_commit(self, repo_id, operations, *, commit_message, commit_description=None, revision=None, **kwargs):
        files = {}
        for operation in operations:
            assert isinstance(operation, CommitOperationAdd), f"unexpected operation {operation!r}"
            with operation.as_file() as file:
                files[operation.path_in_repo] = file.read()
        branch = revision or "main"
        repo_cache = self.cache_dir / f"models--{repo_id.replace('/', '--')}"
        ref = repo_cache / "refs" / branch
        parent = ref.read_text() if ref.exists() else ""
        oid = hashlib.sha1(f"{parent}{len(self.commits)}".encode() + b"".join(files.values())).hexdigest()
        snapshot = repo_cache / "snapshots" / oid
        if parent:
            shutil.copytree(repo_cache / "snapshots" / parent, snapshot)
        for path, content in files.items():
            (snapshot / path).parent.mkdir(parents=True, exist_ok=True)
            (snapshot / path).write_bytes(content)
        ref.parent.mkdir(parents=True, exist_ok=True)
        ref.write_text(oid)
        self.commits.append(dict(repo_id=repo_id, branch=branch, message=commit_message, files=files))
        return CommitInfo(
            commit_url=f"{constants.ENDPOINT}/{repo_id}/commit/{oid}",
            commit_message=commit_message,
            commit_description=commit_description or "",
            oid=oid,
        )

    def snapshot(self, repo_id: str, branch: str = "main") -> Path:
        repo_cache = self.cache_dir / f"models--{repo_id.replace('/', '--')}"
        return repo_cache / "snapshots" / (repo_cache / "refs" / branch).read_text()


@pytest.fixture
def fake_hub(monkeypatch) -> FakeHub:
    """The fake Hub behind every `HfApi`. Its repositories live in the session's cache: each test names its own."""
    hub = FakeHub(Path(constants.HF_HUB_CACHE))
    for name in ("create_repo", "create_branch", "create_commit"):
        monkeypatch.setattr(HfApi, name, lambda api, *args, _name=name, **kwargs: getattr(hub, _name)(*args, **kwargs))
    return hub


def tiny_model(model_class=LocVTPModel):
    torch.manual_seed(0)
    return model_class(make_config("vit", "bert", **TASK_CONFIG)).eval()


def pretraining_eval_results() -> list[EvalResult]:
    return eval_results_from_metrics(
        {"R@1": 0.17, "R@5": 0.4},
        task_type="text-to-video-retrieval",
        task_name="Zero-shot text-to-video retrieval",
        dataset_type="locvtp-synthetic-world",
        dataset_name="LocVTP synthetic world",
        dataset_split="test",
        metric_names={"R@1": "Recall@1", "R@5": "Recall@5"},
    )


def code_files_are_complete(files: dict[str, bytes]) -> None:
    """Every `auto_map` entry names an uploaded module, and every uploaded module's relative imports are uploaded."""
    modules = {name[: -len(".py")] for name in files if name.endswith(".py")}
    configs = [json.loads(files[name]) for name in ("config.json", "processor_config.json") if name in files]
    auto_maps = [config.get("auto_map", {}) for config in configs]
    auto_maps += [configs[-1]["video_processor"]["auto_map"]] if "processor_config.json" in files else []
    for auto_map in auto_maps:
        for reference in auto_map.values():
            assert reference.split(".")[0] in modules, (reference, sorted(modules))
    for module in modules:
        imported = re.findall(r"^\s*from\s+\.(\w+)\s+import", files[f"{module}.py"].decode(), flags=re.MULTILINE)
        assert set(imported) <= modules, (module, set(imported) - modules)


def test_push_sends_one_commit_with_weights_config_processor_code_and_card(fake_hub, processor, tmp_path):
    model = tiny_model()
    repo_id = "someone/one-commit"
    eval_file = tmp_path / "eval_results.json"
    eval_file.write_text(json.dumps({"R@1": 0.17, "R@5": 0.4}))
    card = create_model_card(
        model, repo_id, training_data="The built-in synthetic world.", eval_results=pretraining_eval_results()
    )

    info = push_to_hub(repo_id, model, processor, card, extra_files=[eval_file])

    assert fake_hub.repos == [repo_id] and len(fake_hub.commits) == 1
    commit = fake_hub.commits[0]
    assert info.oid == fake_hub.snapshot(repo_id).name and commit["branch"] == "main"
    files = commit["files"]
    assert {name for name in files if not name.endswith(".py")} == {
        "README.md", "config.json", "model.safetensors", "processor_config.json", "tokenizer.json",
        "tokenizer_config.json", "eval_results.json",
    }
    assert {"configuration_locvtp.py", "modeling_locvtp.py", "processing_locvtp.py",
            "video_processing_locvtp.py"} <= set(files)
    code_files_are_complete(files)
    config = json.loads(files["config.json"])
    assert config["auto_map"] == {"AutoConfig": "configuration_locvtp.LocVTPConfig",
                                  "AutoModel": "modeling_locvtp.LocVTPModel"}
    # the same tensors as a plain save_pretrained writes (its names are the checkpoint format's, not the modules')
    model.save_pretrained(tmp_path / "reference")
    weights = load_safetensors(files["model.safetensors"])
    reference = load_file(tmp_path / "reference" / "model.safetensors")
    assert weights.keys() == reference.keys()
    assert all(torch.equal(weights[name], reference[name]) for name in reference)
    assert files["README.md"].decode() == str(card)
    assert files["eval_results.json"] == eval_file.read_bytes()
    # the push leaves the classes as it found them: later save_pretrained calls write no code
    assert LocVTPModel._auto_class is None and LocVTPConfig._auto_class is None


def test_pushed_repository_loads_offline_from_the_cache_and_from_a_folder(fake_hub, processor, tokenizer):
    model = tiny_model()
    repo_id = "someone/offline"
    push_to_hub(repo_id, model, processor)
    batch = random_batch(tokenizer)
    with torch.no_grad():
        expected = model(**batch)
    # HF_HUB_OFFLINE=1 (tests/conftest.py): the repository id resolves in the local cache, the path as a folder
    for source in (repo_id, fake_hub.snapshot(repo_id)):
        loaded = AutoModel.from_pretrained(source).eval()
        loaded_processor = AutoProcessor.from_pretrained(source)
        assert type(loaded) is LocVTPModel and type(loaded_processor) is type(processor)
        with torch.no_grad():
            out = loaded(**batch)
        for name in ("clip_embeds", "video_embeds", "text_embeds", "word_embeds", "logits_per_video"):
            assert torch.equal(getattr(out, name), getattr(expected, name)), name
        text = ["a man opens the door"]
        assert loaded_processor(text=text)["input_ids"] == processor(text=text)["input_ids"]
        assert loaded_processor.video_processor.to_dict() == processor.video_processor.to_dict()


def test_push_to_a_branch_with_the_default_card(fake_hub, processor):
    model = tiny_model()
    repo_id = "someone/branch"
    push_to_hub(repo_id, model, processor, revision="v1")

    (commit,) = fake_hub.commits
    assert commit["branch"] == "v1"
    card = ModelCard(commit["files"]["README.md"].decode())
    assert card.data.pipeline_tag is None and f'checkpoint = "{repo_id}"' in card.text
    loaded = LocVTPModel.from_pretrained(repo_id, revision="v1")
    state = model.state_dict()
    assert all(torch.equal(value, state[name]) for name, value in loaded.state_dict().items())


def test_every_class_loads_as_remote_code_where_locvtp_hf_is_not_importable(fake_hub, processor, tokenizer, tmp_path):
    batch = random_batch(tokenizer)
    expected = {}
    for model_class in MODEL_CLASSES:
        model = tiny_model(model_class)
        repo_id = f"someone/remote-code-{model_class.__name__}"
        push_to_hub(repo_id, model, processor)
        expected[repo_id] = {"class": model_class.__name__, "state": model.state_dict()}
        if model_class is LocVTPModel:
            with torch.no_grad():
                expected[repo_id]["clip_embeds"] = model(**batch).clip_embeds
            expected[repo_id]["folder"] = str(fake_hub.snapshot(repo_id))
    torch.save({"expected": expected, "batch": dict(batch)}, tmp_path / "expected.pt")
    script = f"""
import sys
sys.modules["locvtp_hf"] = None  # the package cannot be imported in this process
import torch
from transformers import AutoModel, AutoProcessor
data = torch.load({str(tmp_path / "expected.pt")!r}, weights_only=True)
for repo_id, expected in data["expected"].items():
    for source in (repo_id, expected.get("folder")):
        if source is None:
            continue
        model = AutoModel.from_pretrained(source, trust_remote_code=True).eval()
        processor = AutoProcessor.from_pretrained(source, trust_remote_code=True)
        assert type(model).__name__ == expected["class"], (type(model), expected["class"])
        assert type(model).__module__.startswith("transformers_modules"), type(model).__module__
        assert type(processor.video_processor).__module__.startswith("transformers_modules")
        state = model.state_dict()
        assert state.keys() == expected["state"].keys()
        assert all(torch.equal(state[name], expected["state"][name]) for name in state)
        if "clip_embeds" in expected:
            with torch.no_grad():
                clip_embeds = model(**data["batch"]).clip_embeds
            torch.testing.assert_close(clip_embeds, expected["clip_embeds"], **{CROSS_PROCESS_TOLERANCE!r})
        print("loaded", source)
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("loaded") == len(MODEL_CLASSES) + 1, result.stdout


@pytest.mark.parametrize("model_class", MODEL_CLASSES, ids=lambda cls: cls.__name__)
def test_transformers_push_to_hub_of_model_and_processor(fake_hub, processor, model_class):
    model = tiny_model(model_class)
    repo_id = f"someone/builtin-{model_class.__name__}"
    model.push_to_hub(repo_id)
    processor.push_to_hub(repo_id)

    assert [commit["repo_id"] for commit in fake_hub.commits] == [repo_id, repo_id]
    assert {"config.json", "model.safetensors", "README.md"} <= set(fake_hub.commits[0]["files"])
    assert {"processor_config.json", "tokenizer.json"} <= set(fake_hub.commits[1]["files"])
    loaded = model_class.from_pretrained(repo_id)
    assert type(loaded) is model_class
    state = model.state_dict()
    assert all(torch.equal(value, state[name]) for name, value in loaded.state_dict().items())
    assert type(AutoProcessor.from_pretrained(repo_id)) is type(processor)


@pytest.mark.parametrize("model_class", MODEL_CLASSES, ids=lambda cls: cls.__name__)
def test_card_metadata_parses_and_carries_the_run(tmp_path, model_class):
    model = tiny_model(model_class)
    model.config.vision_config._name_or_path = "google/vit-base-patch16-224-in21k"  # as from_pretrained records it
    results = pretraining_eval_results()
    card = create_model_card(
        model,
        "someone/locvtp-card",
        training_data="400 videos of the built-in synthetic world, 1,400 (span, sentence) pairs.",
        training_hyperparameters={"Global batch size": 32, "Learning rate": 1e-3, "Optimizer": "AdamW"},
        eval_results=results,
        evaluation_notes="Chance: R@1 0.01.",
        language="en",
        tags=["synthetic-data"],
    )
    card.save(tmp_path / "README.md")
    loaded = ModelCard.load(tmp_path / "README.md")

    info = class_card(model_class)
    assert loaded.data.library_name == "transformers" and loaded.data.license == "apache-2.0"
    assert loaded.data.pipeline_tag == info.pipeline_tag and loaded.data.language == "en"
    assert {"locvtp", "synthetic-data", *info.tags} <= set(loaded.data.tags)
    # the text tower was built from its config: only the pretrained vision tower is a base model
    assert loaded.data.base_model == ["google/vit-base-patch16-224-in21k"]
    assert loaded.data.model_name == "locvtp-card"
    assert loaded.data.eval_results == results
    text = loaded.text
    for expected in (
        "400 videos of the built-in synthetic world", "| Global batch size | 32 |", "| Learning rate | 0.001 |",
        "| Zero-shot text-to-video retrieval | LocVTP synthetic world | test | Recall@1 | 0.17 |",
        "Chance: R@1 0.01.", f"class `{model_class.__name__}`",
        "[google/vit-base-patch16-224-in21k](https://huggingface.co/google/vit-base-patch16-224-in21k)",
        'checkpoint = "someone/locvtp-card"', info.usage, "Cao, Meng", "2207.10362",
    ):
        assert expected in text, expected
    assert not re.search(r"\{\{ |\{%|\{#", text)  # no template syntax left (the BibTeX title has "{{LocVTP}")


def test_card_without_run_information_says_so():
    card = create_model_card(tiny_model())
    assert card.data.eval_results is None and card.data.base_model is None
    assert "measured no evaluation figures" in card.text and "did not describe its training data" in card.text
    assert 'checkpoint = "path/to/checkpoint"' in card.text


def test_local_towers_are_named_but_not_listed_as_base_models(tmp_path):
    text_tower = BertModel(BertConfig(vocab_size=64, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                      intermediate_size=64))
    text_tower.save_pretrained(tmp_path / "my-bert")
    config = make_config("vit", "bert")
    config.text_config._name_or_path = str(tmp_path / "my-bert")
    card = create_model_card(LocVTPModel(config))
    assert card.data.base_model is None
    assert "a local checkpoint, `my-bert`" in card.text


def test_shared_files_name_no_path_of_this_machine(processor, tmp_path, caplog):
    model = tiny_model()
    (tmp_path / "my-vit").mkdir()
    model.config.vision_config._name_or_path = str(tmp_path / "my-vit")  # as from_vision_text_pretrained records it
    card = create_model_card(
        model,
        "someone/no-local-paths",
        training_data=f"Charades-STA, features `{tmp_path / 'features'}`.",
        eval_results=pretraining_eval_results(),
        evaluation_notes=f"Annotations: {tmp_path}/charades_sta_test.txt. Speed: 107 samples /s.",
    )

    files = save_for_hub(tmp_path / "shared", model, processor, card)

    for name in files:
        assert str(tmp_path).encode() not in (tmp_path / "shared" / name).read_bytes(), name
    assert "Charades-STA, features `features`." in card.text and "features" in caplog.text
    assert "Annotations: charades_sta_test.txt. Speed: 107 samples /s." in card.text
    assert "a local checkpoint, `my-vit`" in card.text
    assert model.config.vision_config._name_or_path == str(tmp_path / "my-vit")  # saving left the model as it was
    # a card made from the shared checkpoint still names the local tower, and lists no base model
    reloaded_card = create_model_card(LocVTPModel.from_pretrained(tmp_path / "shared"))
    assert "a local checkpoint, `my-vit`" in reloaded_card.text and reloaded_card.data.base_model is None



# How each pipeline task a card may name is called on a video: a random 8 s video at 4 fps.
PIPELINE_CALLS = {
    GROUNDING_TASK: lambda runner, video: runner(video, queries="a man opens the door", video_fps=4.0, top_k=2),
}
# The pipeline tasks a saved checkpoint of each class runs: the only ones its card may name.
RUNNABLE_TASKS = {
    "LocVTPModel": [GROUNDING_TASK],  # zero-shot, from the pre-trained clip embeddings
    "LocVTPForPreTraining": [],  # its encoder is shared as a LocVTPModel to be used
    "LocVTPForRetrieval": [],
    "LocVTPForTemporalGrounding": [GROUNDING_TASK],
}


def random_video() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (32, 32, 32, 3), dtype=np.uint8)


@pytest.mark.parametrize("model_class", MODEL_CLASSES, ids=lambda cls: cls.__name__)
def test_every_pipeline_task_the_card_names_runs_on_the_saved_repository(processor, model_class, tmp_path):
    folder = tmp_path / "shared"
    save_for_hub(folder, tiny_model(model_class), processor)
    card = ModelCard.load(folder / "README.md")

    # the Hub rejects a pipeline_tag outside its own task list: a task registered by a package goes in the tags
    assert card.data.pipeline_tag != GROUNDING_TASK
    tasks = PIPELINE_REGISTRY.get_supported_tasks()
    named = [task for task in [card.data.pipeline_tag, *card.data.tags] if task in tasks]
    assert named == RUNNABLE_TASKS[model_class.__name__]
    for task in named:
        moments = PIPELINE_CALLS[task](pipeline(task, model=str(folder)), random_video())
        assert len(moments) == 2 and all(0 <= moment["start"] < moment["end"] <= 8 for moment in moments), moments



def test_the_grounding_pipeline_runs_from_the_repository_alone(processor, tmp_path):
    video = random_video()
    expected = {}
    for model_class in MODEL_CLASSES:
        folder = tmp_path / model_class.__name__
        save_for_hub(folder, tiny_model(model_class), processor)
        declared = json.loads((folder / "config.json").read_text()).get("custom_pipelines", {})
        assert list(declared) == RUNNABLE_TASKS[model_class.__name__]
        if declared:
            assert (folder / "pipeline_temporal_grounding.py").is_file()
            # with the package installed its registered pipeline runs the checkpoint, without remote code
            assert not hasattr(AutoConfig.from_pretrained(folder), "custom_pipelines")
            expected[str(folder)] = PIPELINE_CALLS[GROUNDING_TASK](pipeline(GROUNDING_TASK, model=str(folder)), video)
    np.save(tmp_path / "video.npy", video)
    script = f"""
import json, sys
sys.modules["locvtp_hf"] = None  # the package cannot be imported in this process
import numpy as np
from transformers import pipeline
video = np.load({str(tmp_path / "video.npy")!r})
results = {{}}
for folder in {sorted(expected)!r}:
    grounder = pipeline({GROUNDING_TASK!r}, model=folder, trust_remote_code=True)
    assert type(grounder).__module__.startswith("transformers_modules"), type(grounder).__module__
    results[folder] = grounder(video, queries="a man opens the door", video_fps=4.0, top_k=2)
print(json.dumps(results))
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    remote = json.loads(result.stdout.strip().splitlines()[-1])
    assert remote.keys() == expected.keys()
    for folder, moments in expected.items():
        assert [(m["start"], m["end"]) for m in remote[folder]] == [(m["start"], m["end"]) for m in moments]
        assert [m["score"] for m in remote[folder]] == pytest.approx([m["score"] for m in moments], rel=1e-5)

@pytest.mark.parametrize("model_class", MODEL_CLASSES, ids=lambda cls: cls.__name__)
def test_hub_tasks_whose_pipelines_fail_are_not_in_the_card(processor, model_class, tmp_path):
    folder = tmp_path / "shared"
    save_for_hub(folder, tiny_model(model_class), processor)
    card = ModelCard.load(folder / "README.md")

    # the nearest Hub tasks, which earlier cards named: feature extraction builds a LocVTPModel pipeline whose forward
    # needs videos and texts together; video classification finds no LocVTP model to load
    with pytest.raises(ValueError, match="needs both pixel_values_videos and input_ids"):
        pipeline("feature-extraction", model=str(folder))("a man opens the door")
    with pytest.raises(ValueError, match="AutoModelForVideoClassification"):
        pipeline("video-classification", model=str(folder))
    assert {card.data.pipeline_tag, *card.data.tags}.isdisjoint({"feature-extraction", "video-classification"})

@pytest.mark.parametrize("model_class", MODEL_CLASSES, ids=lambda cls: cls.__name__)
def test_the_cards_usage_example_runs(fake_hub, processor, model_class, tmp_path, monkeypatch):
    repo_id = f"someone/usage-{model_class.__name__}"
    push_to_hub(repo_id, tiny_model(model_class), processor)
    readme = fake_hub.commits[-1]["files"]["README.md"].decode()
    (code,) = re.findall(r"```python\n(.*?)```", readme, flags=re.DOTALL)
    world = SyntheticWorld(num_train=0, num_validation=0, num_test=2, size=32, min_duration=16, max_duration=16)
    for index, video in enumerate(sorted(world.export(tmp_path, "test").glob("*.mp4")), start=1):
        video.rename(tmp_path / f"video{index}.mp4")
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "README.md", "exec"), {})


def test_the_top_level_template_is_the_packaged_one(monkeypatch):
    assert (ROOT / "MODEL_CARD.md").read_text() == MODEL_CARD_TEMPLATE.read_text(), (
        "MODEL_CARD.md and locvtp_hf/MODEL_CARD.md differ: edit locvtp_hf/MODEL_CARD.md and copy it to MODEL_CARD.md"
    )
    # an installed package (a wheel) ships the template as package data
    arguments = {}
    monkeypatch.setattr(setuptools, "setup", lambda **kwargs: arguments.update(kwargs))
    runpy.run_path(str(ROOT / "setup.py"))
    assert "MODEL_CARD.md" in arguments["package_data"]["locvtp_hf"]


def test_pretraining_script_pushes_its_model_card_and_figures(fake_hub, tmp_path, monkeypatch):
    repo_id = "someone/pretrain"
    arguments = [
        "--output_dir", str(tmp_path), "--max_steps", "2", "--world_train_videos", "4", "--world_test_videos", "3",
        "--hidden_size", "32", "--projection_dim", "16", "--num_clips", "4", "--per_device_batch_size", "4",
        "--num_workers", "0", "--warmup_steps", "1", "--probe_num_clips", "4", "--checkpointing_steps", "0",
        "--push_to_hub", "--hub_model_id", repo_id,
    ]
    monkeypatch.setattr(sys, "argv", ["pretrain.py", *arguments])
    try:
        runpy.run_path(str(ROOT / "examples" / "pretrain.py"), run_name="__main__")
    finally:
        AcceleratorState._reset_state(reset_partial_state=True)  # the run's process state stays with the run

    (commit,) = fake_hub.commits
    assert {"model.safetensors", "config.json", "processor_config.json", "README.md", "eval_results.json",
            "modeling_locvtp.py"} <= set(commit["files"])
    measured = json.loads((tmp_path / "eval_results.json").read_text())
    card = ModelCard(commit["files"]["README.md"].decode())
    reported = {result.metric_type: result.metric_value for result in card.data.eval_results}
    assert reported == {name: measured[name] for name in ("text_to_video_R@1", "text_to_video_R@5", "probe_hit_rate")}
    assert card.data.pipeline_tag is None and GROUNDING_TASK in card.data.tags
    assert "| Optimizer steps | 2 |" in card.text and "synthetic" in card.text
    # the default run's departures from the paper are stated
    assert "covers 50% of it" in card.text and "Discovery is mutual" in card.text
    assert "| Warm-up of the fine-grained and temporal weights | linear from 0 over the first 500 steps |" in card.text


def test_saving_again_into_the_same_folder_with_extra_files(processor, tmp_path):
    model = tiny_model()
    (tmp_path / "eval_results.json").write_text('{"R@1": 0.5}')
    first = save_for_hub(tmp_path / "share", model, processor, extra_files=[tmp_path / "eval_results.json"])
    (tmp_path / "eval_results.json").write_text('{"R@1": 0.6}')
    assert save_for_hub(tmp_path / "share", model, processor, extra_files=[tmp_path / "eval_results.json"]) == first
    assert (tmp_path / "share" / "eval_results.json").read_text() == '{"R@1": 0.6}'
    # a run's output folder shared in place, its evaluation file among the extra files
    again = save_for_hub(tmp_path / "share", model, processor, extra_files=[tmp_path / "share" / "eval_results.json"])
    assert again == first and (tmp_path / "share" / "eval_results.json").read_text() == '{"R@1": 0.6}'
    assert sorted(path.name for path in tmp_path.iterdir()) == ["eval_results.json", "share"]  # no staging left
    assert LocVTPModel.from_pretrained(tmp_path / "share") is not None


def test_bad_input_is_rejected_with_the_reason(fake_hub, processor, tmp_path):
    model = tiny_model()
    bert = BertModel(BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64))
    with pytest.raises(TypeError, match="must be a LocVTP model .* got BertModel"):
        push_to_hub("someone/bert", bert)
    with pytest.raises(TypeError, match="must be a LocVTP model .* got BertModel"):
        create_model_card(bert)
    with pytest.raises(FileNotFoundError, match="missing.json"):
        save_for_hub(tmp_path / "a", model, processor, extra_files=[tmp_path / "missing.json"])
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ValueError, match="name of a file the checkpoint itself writes"):
        save_for_hub(tmp_path / "b", model, processor, extra_files=[tmp_path / "config.json"])
    assert not (tmp_path / "b").exists()  # found before anything was written
    with pytest.raises(ValueError, match="must have different names"):
        save_for_hub(tmp_path / "b", model, processor, extra_files=[tmp_path / "config.json", tmp_path / "config.json"])
    with pytest.raises(TypeError, match="processor must be"):
        save_for_hub(tmp_path / "c", model, processor.tokenizer)
    with pytest.raises(ValueError, match="'R@1' of 'retrieval' on 'msrvtt' must be a finite number"):
        eval_results_from_metrics({"R@1": float("nan")}, task_type="retrieval", task_name="retrieval",
                                  dataset_type="msrvtt", dataset_name="msrvtt")
    with pytest.raises(ValueError, match="No model card information for BertModel"):
        class_card(BertModel)
    assert fake_hub.commits == []
