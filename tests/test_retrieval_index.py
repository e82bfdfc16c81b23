"""The searchable video index: exact search equals brute force, approximate recall, save/load, unreadable videos,
text search with a tiny model, concurrent searches."""

import copy
import json
import shutil
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import datasets
import numpy as np
import pytest
import torch
from testing_utils import WORDS, make_config

from locvtp_hf import LocVTPForRetrieval, LocVTPModel, LocVTPProcessor, VideoIndex, build_video_index, load_index
from locvtp_hf.encoding import encode_texts, encode_videos
from locvtp_hf.retrieval_index import SkippedVideo, nearest_neighbour_recall
from locvtp_hf.synthetic import SyntheticWorld
from locvtp_hf.video_io import VideoDecodingError


pytest.importorskip("faiss")


def unit_vectors(num: int, dim: int, seed: int) -> np.ndarray:
    vectors = np.random.default_rng(seed).standard_normal((num, dim)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def clustered_unit_vectors(num: int, dim: int, num_clusters: int, seed: int) -> np.ndarray:
    """Tight clusters around random centres: the easy case, where an approximate index should find nearly all."""
    rng = np.random.default_rng(seed)
    centres = unit_vectors(num_clusters, dim, seed + 1)
    vectors = centres[rng.integers(num_clusters, size=num)] + 0.05 * rng.standard_normal((num, dim))
    return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)


def ids_of(results) -> list[list[str]]:
    return [[video_id for video_id, _ in hits] for hits in results]


@pytest.fixture
def world():
    return SyntheticWorld(seed=3, num_train=0, num_validation=0, num_test=6, size=32, min_duration=8.0,
                          max_duration=10.0, max_events=2)


@pytest.fixture
def model():
    torch.manual_seed(0)
    return LocVTPModel(make_config()).eval()


def test_exact_search_equals_brute_force_top_k():
    embeddings, queries = unit_vectors(500, 32, seed=0), unit_vectors(20, 32, seed=1)
    video_ids = [f"video{row}" for row in range(500)]
    index = VideoIndex.from_embeddings(embeddings, video_ids)

    results = index.search_batch(queries, k=10)

    scores, rows = torch.topk(torch.from_numpy(queries) @ torch.from_numpy(embeddings).T, k=10)
    assert ids_of(results) == [[video_ids[row] for row in query_rows] for query_rows in rows.tolist()]
    np.testing.assert_allclose([[score for _, score in hits] for hits in results], scores.numpy(), atol=1e-5)
    assert index.search(torch.from_numpy(queries[3]), k=10) == results[3]
    assert len(index.search(queries[0], k=800)) == 500  # k beyond the index: every video, once


@pytest.mark.parametrize("index_type", ["ivf", "hnsw"])
def test_approximate_recall_against_exact_is_high_on_clustered_vectors(index_type):
    embeddings = clustered_unit_vectors(3000, 32, num_clusters=30, seed=0)
    queries = embeddings[:100] + 0.02 * np.random.default_rng(5).standard_normal((100, 32)).astype(np.float32)
    video_ids = [str(row) for row in range(len(embeddings))]
    exact = VideoIndex.from_embeddings(embeddings, video_ids)
    approximate = VideoIndex.from_embeddings(embeddings, video_ids, index_type=index_type)

    found, true = ids_of(approximate.search_batch(queries, 10)), ids_of(exact.search_batch(queries, 10))
    recall = nearest_neighbour_recall(found, true)

    print(f"{index_type} {approximate.search_params}: recall@10 against exact = {recall:.3f}")
    assert recall >= 0.95, f"{index_type} recall@10 {recall:.3f}"
    assert approximate.faiss_index.ntotal == len(embeddings)


@pytest.mark.parametrize("index_type", ["exact", "ivf", "hnsw"])
def test_save_and_load_give_identical_results(index_type, tmp_path):
    embeddings, queries = unit_vectors(800, 16, seed=2), unit_vectors(10, 16, seed=3)
    skipped = [SkippedVideo("broken", "VideoDecodingError: could not open video 'broken.mp4'")]
    index = VideoIndex.from_embeddings(embeddings, [f"v{row}" for row in range(800)], index_type, skipped=skipped)
    before = index.search_batch(queries, k=7)

    index.save_to_disk(tmp_path / "index")
    assert index.search_batch(queries, k=7) == before  # saving leaves the index searchable
    loaded = load_index(tmp_path / "index")

    assert loaded.search_batch(queries, k=7) == before
    assert loaded.index_type == index_type and loaded.search_params == index.search_params
    assert loaded.skipped == skipped
    np.testing.assert_array_equal(np.array(loaded.dataset["embedding"], dtype=np.float32), embeddings)


def brute_force(queries: np.ndarray, embeddings: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Float64 inner products of the float32 vectors: `(scores, rows)` `[Q, k]`, best first."""
    scores = queries.astype(np.float64) @ embeddings.astype(np.float64).T
    rows = np.argsort(-scores, axis=1)[:, :k]
    return np.take_along_axis(scores, rows, axis=1), rows


@pytest.mark.parametrize("storage", ["float16", "int8"])
def test_compressed_exact_index_reranks_to_the_brute_force_top_k(storage):
    embeddings, queries = unit_vectors(5000, 32, seed=0), unit_vectors(40, 32, seed=1)
    video_ids = [str(row) for row in range(len(embeddings))]
    index = VideoIndex.from_embeddings(embeddings, video_ids, storage=storage)
    true_scores, true_rows = brute_force(queries, embeddings, 10)

    batch = index.search_batch(queries, k=10)  # 40 queries: matrix products over blocks of rows
    singles = [index.search(query, k=10) for query in queries[:5]]  # one at a time: FAISS's scan

    assert nearest_neighbour_recall(ids_of(batch), true_rows.astype(str).tolist()) == 1.0
    # the scores are the float32 inner products of the returned videos, not the compressed ones
    np.testing.assert_allclose([[score for _, score in hits] for hits in batch], true_scores, atol=1e-6)
    assert ids_of(singles) == ids_of(batch[:5])
    np.testing.assert_allclose([[s for _, s in hits] for hits in singles], true_scores[:5], atol=1e-6)
    compressed_scores, _ = index.dataset.search_batch("embedding", queries, 10)  # FAISS alone: no rerank
    assert np.abs(compressed_scores - true_scores).max() > 1e-5
    assert index.faiss_index.sa_code_size() == {"float16": 64, "int8": 32}[storage]  # bytes per vector


def test_the_int8_scan_ranks_like_the_decoded_vectors():
    """The matrix-product scan scores codes with `queries * step`; its shortlist is the decoded vectors' top."""
    embeddings, queries = unit_vectors(3000, 16, seed=4), unit_vectors(20, 16, seed=5)
    index = VideoIndex.from_embeddings(embeddings, [str(row) for row in range(3000)], storage="int8")
    decoded = index.faiss_index.sa_decode(index.faiss_index.sa_encode(embeddings))

    _, rows = index._scan(queries, 50)

    _, decoded_rows = brute_force(queries, decoded, 50)
    assert nearest_neighbour_recall(rows.tolist(), decoded_rows.tolist()) > 0.99  # float32 rounding at ties only


@pytest.mark.parametrize("index_type", ["ivf", "hnsw"])
def test_approximate_int8_index_recall_with_float32_rerank(index_type):
    embeddings = clustered_unit_vectors(3000, 32, num_clusters=30, seed=0)
    queries = embeddings[:100] + 0.02 * np.random.default_rng(5).standard_normal((100, 32)).astype(np.float32)
    index = VideoIndex.from_embeddings(embeddings, [str(row) for row in range(3000)], index_type, storage="int8",
                                       rerank=50)
    true_scores, true_rows = brute_force(queries, embeddings, 10)

    results = index.search_batch(queries, 10)

    recall = nearest_neighbour_recall(ids_of(results), true_rows.astype(str).tolist())
    assert recall >= 0.95, f"{index_type} int8 recall@10 {recall:.3f}"
    found = np.array(ids_of(results), dtype=int)
    np.testing.assert_allclose([[score for _, score in hits] for hits in results],
                               np.einsum("qd,qkd->qk", queries, embeddings[found]), atol=1e-6)


@pytest.mark.parametrize("storage", ["float16", "int8"])
def test_compressed_index_save_and_load_round_trip(storage, tmp_path):
    embeddings, queries = unit_vectors(5000, 16, seed=2), unit_vectors(20, 16, seed=3)
    index = VideoIndex.from_embeddings(embeddings, [f"v{row}" for row in range(5000)], storage=storage, rerank=30)
    before = index.search_batch(queries, k=7), index.search(queries[0], k=7)

    index.save_to_disk(tmp_path / "index")
    loaded = load_index(tmp_path / "index")

    assert len(loaded._embedding_chunks) > 1  # memory-mapped in record batches: the rerank gathers across them
    assert (loaded.search_batch(queries, k=7), loaded.search(queries[0], k=7)) == before
    assert (loaded.storage, loaded.rerank) == (storage, 30)
    assert loaded.faiss_index.sa_code_size() == index.faiss_index.sa_code_size()


def test_an_index_saved_before_storage_options_loads_as_float32(tmp_path):
    embeddings, queries = unit_vectors(300, 8, seed=0), unit_vectors(20, 8, seed=1)
    index = VideoIndex.from_embeddings(embeddings, [f"v{row}" for row in range(300)])
    index.save_to_disk(tmp_path / "index")
    config_file = tmp_path / "index" / "index_config.json"
    config = json.loads(config_file.read_text())
    del config["storage"], config["rerank"]
    config_file.write_text(json.dumps({**config, "format_version": 1}))

    loaded = load_index(tmp_path / "index")

    assert loaded.storage == "float32" and loaded.search_batch(queries, 5) == index.search_batch(queries, 5)


@pytest.mark.parametrize("storage", ["float32", "float16", "int8"])
def test_k_beyond_the_index_returns_every_video_once(storage):
    embeddings = unit_vectors(30, 8, seed=0)
    index = VideoIndex.from_embeddings(embeddings, [f"v{row}" for row in range(30)], storage=storage, rerank=5)
    for results in (index.search_batch(unit_vectors(20, 8, seed=1), k=50), [index.search(embeddings[0], k=50)]):
        assert all(sorted(ids) == sorted(f"v{row}" for row in range(30)) for ids in ids_of(results))


def test_storage_options_bad_input_errors():
    embeddings = unit_vectors(40, 8, seed=0)
    video_ids = [str(row) for row in range(40)]
    with pytest.raises(ValueError, match=r"`storage` must be one of \('float32', 'float16', 'int8'\), got 'int4'"):
        VideoIndex.from_embeddings(embeddings, video_ids, storage="int4")
    with pytest.raises(ValueError, match="a FAISS factory string sets its own storage"):
        VideoIndex.from_embeddings(embeddings, video_ids, index_type="IVF4,Flat", storage="int8")
    with pytest.raises(ValueError, match="`rerank` must be a positive integer"):
        VideoIndex.from_embeddings(embeddings, video_ids, storage="int8", rerank=0)
    with pytest.raises(ValueError, match=r"must be \[num_videos > 0, dim\]"):
        VideoIndex.from_embeddings(np.zeros((0, 8), dtype=np.float32), [], storage="int8")
    index = VideoIndex.from_embeddings(embeddings, video_ids, storage="int8")
    for queries in (np.zeros((20, 5), dtype=np.float32), np.zeros((1, 5), dtype=np.float32)):
        with pytest.raises(ValueError, match=r"\[num_queries, 8\] \(the index's dimension\)"):
            index.search_batch(queries)


def test_unreadable_videos_are_skipped_and_reported(world, model, processor, tmp_path):
    folder = world.export(tmp_path, "test", num_videos=3)
    good = sorted(str(path) for path in folder.glob("*.mp4"))
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(b"this is not a video" * 50)
    missing = str(tmp_path / "missing.mp4")
    truncated = tmp_path / "truncated.mp4"  # an interrupted copy: the first half of a good video
    whole = Path(good[0]).read_bytes()
    truncated.write_bytes(whole[: len(whole) // 2])
    videos = [good[0], str(garbage), good[1], missing, str(truncated), good[2]]

    index = build_video_index(model, processor, videos, batch_size=2)

    assert [video.video_id for video in index.skipped] == [str(garbage), missing, str(truncated)]
    assert "VideoDecodingError" in index.skipped[0].reason and "garbage.mp4" in index.skipped[0].reason
    assert "FileNotFoundError" in index.skipped[1].reason
    assert "VideoDecodingError" in index.skipped[2].reason and "truncated.mp4" in index.skipped[2].reason
    assert index.dataset["video_id"] == good
    expected, _, _ = encode_videos(model, processor, good)
    torch.testing.assert_close(torch.tensor(index.dataset["embedding"]), expected, atol=1e-5, rtol=0)


def test_no_readable_video_is_an_error(model, processor, tmp_path):
    with pytest.raises(ValueError, match="None of the 1 videos could be read"):
        build_video_index(model, processor, [str(tmp_path / "missing.mp4")])


def test_a_frame_size_the_model_does_not_take_is_reported_as_such(world, processor):
    """A processor that makes 32x32 frames for a model of 64x64 is a configuration error, not 6 unreadable videos."""
    config = make_config()
    config.vision_config.image_size = 64
    model = LocVTPModel(config).eval()
    video_ids = [video.video_id for video in world.videos("test")]

    with pytest.raises(ValueError) as error:
        build_video_index(model, processor, video_ids, load_video=world.render, video_fps=world.fps)

    assert not isinstance(error.value, VideoDecodingError)
    assert str(error.value).startswith("The video frames are 32x32 but the clip encoder (timesformer) expects 64x64")
    assert "set the video processor's size and crop_size" in str(error.value)


def test_real_corrupted_video_is_skipped(real_data, model, processor):
    good, corrupted = str(real_data / "videos" / "carphone_pristine.mp4"), str(real_data / "videos" / "corrupted.mp4")

    index = build_video_index(model, processor, [corrupted, good], video_ids=["corrupted", "carphone"])

    assert [video.video_id for video in index.skipped] == ["corrupted"]
    assert "corrupted.mp4" in index.skipped[0].reason
    assert index.dataset["video_id"] == ["carphone"]


def test_text_search_matches_the_model_similarity(world, model, processor):
    video_ids = [video.video_id for video in world.videos("test")]
    captions = [video.caption for video in world.videos("test")]

    index = build_video_index(model, processor, video_ids, batch_size=4, load_video=world.render, video_fps=world.fps)
    results = index.search_batch(captions, k=3)

    video_embeds, _, _ = encode_videos(model, processor, video_ids, world.render, world.fps)
    scores, rows = torch.topk(encode_texts(model, processor, captions) @ video_embeds.T, k=3)
    assert ids_of(results) == [[video_ids[row] for row in query_rows] for query_rows in rows.tolist()]
    np.testing.assert_allclose([[score for _, score in hits] for hits in results], scores.numpy(), atol=1e-5)
    single = index.search(captions[0], k=3)  # padded alone, not with the batch: equal up to rounding
    assert ids_of([single]) == ids_of(results[:1])
    np.testing.assert_allclose([score for _, score in single], [score for _, score in results[0]], atol=1e-5)


@pytest.mark.parametrize("model_class", [LocVTPModel, LocVTPForRetrieval])
def test_loaded_index_embeds_text_with_the_recorded_model(model_class, world, processor, tmp_path):
    torch.manual_seed(0)
    model_class(make_config()).save_pretrained(tmp_path / "ckpt")
    processor.save_pretrained(tmp_path / "ckpt")
    model = model_class.from_pretrained(tmp_path / "ckpt")
    processor = LocVTPProcessor.from_pretrained(tmp_path / "ckpt")
    video_ids = [video.video_id for video in world.videos("test")]
    index = build_video_index(model, processor, video_ids, load_video=world.render, video_fps=world.fps)
    index.save_to_disk(tmp_path / "index")
    query = world.videos("test")[2].caption

    # the model's folder is recorded relative to the index: no path of this machine in a file that may be shared
    saved_config = (tmp_path / "index" / "index_config.json").read_text()
    assert json.loads(saved_config)["model_name_or_path"] == "../ckpt" and str(tmp_path) not in saved_config
    (tmp_path / "moved").mkdir()
    for folder in ("index", "ckpt"):  # moved together, they still find each other
        shutil.move(tmp_path / folder, tmp_path / "moved" / folder)
    loaded = load_index(tmp_path / "moved" / "index")

    assert loaded.model is None  # loaded at the first text query, not before
    assert loaded.search(query, k=4) == index.search(query, k=4)
    assert type(loaded.model) is model_class
    assert loaded.model_name_or_path == str((tmp_path / "moved" / "ckpt").resolve())


def test_text_search_without_a_model_says_how_to_attach_one():
    index = VideoIndex.from_embeddings(unit_vectors(5, 8, seed=0), list("abcde"))
    with pytest.raises(ValueError, match="attach_model"):
        index.search("a red square slides to the left")


def test_dataset_of_video_features_by_path_and_by_bytes(world, model, processor, tmp_path):
    folder = world.export(tmp_path, "test", num_videos=2)
    first, second = sorted(folder.glob("*.mp4"))
    rows = datasets.Dataset.from_dict(
        {"clip": [{"path": str(first), "bytes": None}, {"path": None, "bytes": second.read_bytes()}],
         "name": ["first", "second"]},
        features=datasets.Features(clip=datasets.Video(decode=False), name=datasets.Value("string")),
    ).cast_column("clip", datasets.Video())

    index = build_video_index(model, processor, rows, video_column="clip", id_column="name")

    assert index.dataset["video_id"] == ["first", "second"] and not index.skipped
    expected, _, _ = encode_videos(model, processor, [str(first), str(second)])
    torch.testing.assert_close(torch.tensor(index.dataset["embedding"]), expected, atol=1e-5, rtol=0)


def test_model_holding_a_locvtp_model_works(world, model, processor):
    wrapper = torch.nn.Module()
    wrapper.locvtp = model
    video_ids = [video.video_id for video in world.videos("test")][:3]

    index = build_video_index(wrapper, processor, video_ids, load_video=world.render, video_fps=world.fps)

    expected, _, _ = encode_videos(model, processor, video_ids, world.render, world.fps)
    torch.testing.assert_close(torch.tensor(index.dataset["embedding"]), expected, atol=1e-5, rtol=0)


def test_bad_input_errors(model, processor):
    embeddings = unit_vectors(4, 8, seed=0)
    with pytest.raises(ValueError, match=r"repeated: \['a'\]"):
        VideoIndex.from_embeddings(embeddings, ["a", "b", "a", "c"])
    with pytest.raises(ValueError, match="FAISS factory string"):
        VideoIndex.from_embeddings(embeddings, list("abcd"), index_type="NoSuchIndex")
    index = VideoIndex.from_embeddings(embeddings, list("abcd"))
    with pytest.raises(ValueError, match=r"\[num_queries, 8\]"):
        index.search_batch(np.zeros((2, 5), dtype=np.float32))
    with pytest.raises(ValueError, match=r"\[num_queries, 8\]"):
        index.search_batch([])
    nested_lists = index.search_batch(embeddings[:2].tolist(), k=1)
    assert nested_lists == [[("a", pytest.approx(1.0))], [("b", pytest.approx(1.0))]]
    with pytest.raises(ValueError, match="positive integer"):
        index.search(embeddings[0], k=0)
    with pytest.raises(TypeError, match="single path"):
        build_video_index(model, processor, "videos/")


def test_missing_faiss_gives_an_install_hint(monkeypatch):
    monkeypatch.setitem(sys.modules, "faiss", None)
    with pytest.raises(ImportError, match=r"locvtp-hf\[index\]"):
        VideoIndex.from_embeddings(unit_vectors(4, 8, seed=0), list("abcd"))


def dropout_model(seed: int = 0) -> LocVTPModel:
    """A tiny model whose text tower drops half its activations in training mode."""
    config = make_config()
    config.text_config.hidden_dropout_prob = config.text_config.attention_probs_dropout_prob = 0.5
    torch.manual_seed(seed)
    return LocVTPModel(config)


QUERIES = [" ".join(WORDS[start : start + 4]) for start in range(40)]


def test_concurrent_text_searches_equal_sequential_ones_and_leave_the_model_in_its_mode(processor):
    model = dropout_model().train()  # e.g. an index built in the middle of training
    embeddings = unit_vectors(50, 16, seed=0)
    index = VideoIndex.from_embeddings(embeddings, [f"v{row}" for row in range(50)], model=model, processor=processor)
    sequential = [index.search(query, k=5) for query in QUERIES]

    with ThreadPoolExecutor(max_workers=8) as pool:
        concurrent = list(pool.map(lambda query: index.search(query, k=5), QUERIES * 3))

    assert concurrent == sequential * 3
    assert all(module.training for module in model.modules())  # the caller's model is still training
    # and the searches ran in eval mode, without dropout
    scores = encode_texts(copy.deepcopy(model).eval(), processor, QUERIES) @ torch.from_numpy(embeddings).T
    assert ids_of(sequential) == [[f"v{row}" for row in rows] for rows in scores.topk(5).indices.tolist()]


def test_concurrent_first_searches_load_the_recorded_model_once(processor, tmp_path, monkeypatch):
    dropout_model().save_pretrained(tmp_path / "ckpt")
    processor.save_pretrained(tmp_path / "ckpt")
    model = LocVTPModel.from_pretrained(tmp_path / "ckpt")
    index = VideoIndex.from_embeddings(unit_vectors(50, 16, seed=0), [f"v{row}" for row in range(50)], model=model,
                                       processor=processor)
    index.save_to_disk(tmp_path / "index")
    expected = [index.search(query, k=5) for query in QUERIES[:8]]
    loaded = load_index(tmp_path / "index")
    loads = []
    from_pretrained = LocVTPModel.from_pretrained.__func__

    def counting_from_pretrained(cls, *args, **kwargs):
        loads.append(args[0])
        return from_pretrained(cls, *args, **kwargs)

    monkeypatch.setattr(LocVTPModel, "from_pretrained", classmethod(counting_from_pretrained))
    start = threading.Barrier(8)

    def first_search(query):
        start.wait()
        return loaded.search(query, k=5)

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(first_search, QUERIES[:8]))

    assert len(loads) == 1 and results == expected
    assert not any(module.training for module in loaded.model.modules())
