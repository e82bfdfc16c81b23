"""A searchable index of video embeddings: the embeddings live in a `datasets.Dataset` beside the video ids and are
searched with FAISS (`Dataset.add_faiss_index`), by text (embedded with the model) or by embedding. The index may
store them compressed (float16, or 8 bits per dimension) and re-score a shortlist with the float32 embeddings.

FAISS is an optional dependency: `pip install "locvtp-hf[index]"` (or `pip install faiss-cpu`).
"""

import copy
import json
import math
import os
import tempfile
import threading
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import pyarrow as pa
import torch
from datasets.fingerprint import generate_random_fingerprint
from transformers import AutoModel, AutoProcessor, PreTrainedModel
from transformers.utils import logging

from . import modeling_locvtp
from .encoding import encode_texts, encode_videos


logger = logging.get_logger(__name__)

INDEX_TYPES = ("exact", "ivf", "hnsw")
EMBEDDING_COLUMN = "embedding"
ID_COLUMN = "video_id"
CONFIG_NAME = "index_config.json"
FAISS_INDEX_NAME = "index.faiss"
DATASET_FOLDER = "dataset"
FORMAT_VERSION = 2
READABLE_FORMAT_VERSIONS = (1, 2)  # version 1 had no `storage` / `rerank`: float32 storage
# At most this many vectors (a random sample) train an index that needs training; k-means subsamples further.
MAX_TRAINING_VECTORS = 200_000
HNSW_NEIGHBOURS = 32
HNSW_EF_SEARCH = 128
STORAGES = ("float32", "float16", "int8")
# FAISS scalar quantisers of the compressed storages; "SQ8" keeps a minimum and a range per dimension.
SCALAR_QUANTIZERS = {"float16": "SQfp16", "int8": "SQ8"}
DEFAULT_RERANK = 100
# An exact index scans a batch of at least this many queries as matrix products over blocks of rows, which reads the
# stored vectors once for the whole batch; fewer queries go to FAISS, whose fused scan is faster for one query.
MATMUL_MIN_QUERIES = 16
SCAN_BLOCK_ROWS = 16_384
SCAN_QUERY_CHUNK = 1024


def _import_faiss():
    try:
        import faiss
    except ImportError as error:
        raise ImportError(
            "The video index searches with FAISS, which is not installed: `pip install \"locvtp-hf[index]\"` (or "
            "`pip install faiss-cpu`)."
        ) from error
    return faiss


@dataclass
class SkippedVideo:
    """A video left out of an index because it could not be read: its id and the error, in words."""

    video_id: str
    reason: str


def ivf_num_lists(num_vectors: int) -> int:
    """
    Inverted lists of the `"ivf"` preset: `4 * sqrt(N)` (the low end of FAISS's advice), capped so that every list
    gets at least 39 training vectors, the least k-means is content with.
    """
    return max(1, min(int(4 * math.sqrt(num_vectors)), num_vectors // 39))


def ivf_default_nprobe(num_lists: int) -> int:
    """Lists visited per query by the `"ivf"` preset: one in eight (at least one)."""
    return max(1, math.ceil(num_lists / 8))


def faiss_factory(index_type: str, num_vectors: int, storage: str = "float32") -> tuple[str, dict[str, Any]]:
    """
    The `faiss.index_factory` string of an index type (`"exact"`, `"ivf"`, `"hnsw"` or a factory string) storing
    `num_vectors` vectors as `storage`, and the preset's default search parameters.
    """
    codec = SCALAR_QUANTIZERS.get(storage)
    if index_type == "ivf":
        num_lists = ivf_num_lists(num_vectors)
        return f"IVF{num_lists},{codec or 'Flat'}", {"nprobe": ivf_default_nprobe(num_lists)}
    if index_type == "hnsw":
        return f"HNSW{HNSW_NEIGHBOURS}" + (f",{codec}" if codec else ""), {"efSearch": HNSW_EF_SEARCH}
    if index_type == "exact":
        return codec or "Flat", {}
    if codec:
        raise ValueError(
            f"`storage={storage!r}` applies to the index types {INDEX_TYPES}; a FAISS factory string sets its own "
            f"storage (e.g. \"IVF1024,SQ8\"), so leave `storage` at \"float32\" with {index_type!r}."
        )
    return index_type, {}


def nearest_neighbour_recall(found: Sequence[Sequence], exact: Sequence[Sequence]) -> float:
    """
    Mean over queries of the fraction of the exact top-k (`exact[q]`, ids or row numbers) that an approximate search
    also returned (`found[q]`): the usual recall@k of an approximate index against exact search.
    """
    if len(found) != len(exact) or not exact:
        raise ValueError(f"Need the same non-zero number of queries, got {len(found)} and {len(exact)} result lists.")
    return float(np.mean([len(set(f) & set(e)) / len(e) for f, e in zip(found, exact, strict=True)]))


def _feature_model(model):
    """The object with `get_video_features` / `get_text_features`: the model itself or its `.locvtp` submodule."""
    for candidate in (model, getattr(model, "locvtp", None)):
        if hasattr(candidate, "get_video_features") and hasattr(candidate, "get_text_features"):
            return candidate
    raise TypeError(
        f"{type(model).__name__} has no get_video_features / get_text_features (nor a `.locvtp` model that has "
        "them): pass a LocVTPModel or a model built on one."
    )


def _inference_model(model):
    """
    `model` to run in eval mode without touching the caller's model: `model` itself when none of its modules is in
    training mode, else an eval-mode copy that shares its parameters and buffers (no weights are copied). Switching
    the caller's model to eval mode and back instead would race with other threads searching with it: one would run
    with dropout on, and the model could be left in either mode.
    """
    if not any(module.training for module in model.modules()):
        return model
    shared = {id(tensor): tensor for tensor in (*model.parameters(), *model.buffers())}
    return copy.deepcopy(model, memo=shared).eval()


def _model_name_or_path(model) -> str | None:
    name = getattr(model, "name_or_path", "") or ""
    if not name:
        return None
    return os.path.abspath(name) if os.path.isdir(name) else name


class VideoIndex:
    r"""
    Video embeddings searchable by text or by embedding.

    `dataset` is a `datasets.Dataset` with columns `video_id` (string) and `embedding` (`D` float32), carrying a
    FAISS index named `"embedding"` that scores by inner product (the cosine similarity of LocVTP's L2-normalised
    embeddings), so `index.dataset.get_nearest_examples("embedding", query)` works too.

    Index types:

    - `"exact"` (default): brute-force inner product (`IndexFlatIP`); results equal a matmul top-k.
    - `"ivf"`: `IVF{nlist},Flat`, an inverted file of `nlist` = [`ivf_num_lists`] k-means cells trained on (a sample
      of) the embeddings; a query visits `nprobe` cells (default [`ivf_default_nprobe`]).
    - `"hnsw"`: `HNSW32`, a graph index (no training); `efSearch` (default 128) sets the breadth of a query.
    - any other string is passed to `faiss.index_factory` as is (e.g. `"IVF1024,PQ32"`), with inner product.

    Storage of the presets' vectors (`storage`):

    - `"float32"` (default): the embeddings as they are; scores are exact inner products.
    - `"float16"` (`SQfp16`) or `"int8"` (`SQ8`: 8 bits per dimension between that dimension's minimum and maximum
      over the training sample): half or a quarter of the memory and of the bytes a scan reads. The compressed scan
      keeps a shortlist of `rerank` candidates per query (default 100, at least `k`), which are re-scored with the
      float32 embeddings of `dataset`: the returned scores are exact inner products, and the exact index returns
      the exact top-k unless a true neighbour falls out of the shortlist.

    An exact index scans a batch of 16 queries or more as matrix products over blocks of rows (the stored vectors
    are read once per batch, not once per query); smaller batches go to FAISS.

    A query is embedded with the attached model (see [`attach_model`], [`load_index`]); text search uses the coarse
    video-sentence similarity `<z, s>`. Searches may run from several threads at once: the model runs in eval mode
    without its mode being switched (a model in training mode is run through an eval-mode copy that shares its
    weights), and a model the index loads itself is loaded once.

    Attributes:
        dataset (`datasets.Dataset`): the ids, embeddings and FAISS index.
        index_type (`str`): `"exact"`, `"ivf"`, `"hnsw"` or a FAISS factory string.
        storage (`str`): `"float32"`, `"float16"` or `"int8"`, how the FAISS index stores the vectors.
        rerank (`int`): candidates per query re-scored with the float32 embeddings when `storage` is compressed.
        search_params (`dict`): FAISS search-time parameters applied to the index (`nprobe`, `efSearch`, ...).
        skipped (`list[SkippedVideo]`): videos left out while building because they could not be read.
        model_name_or_path (`str`, *optional*): where the model that embedded the videos loads from.
        model_class (`str`, *optional*): the class name of that model.
    """

    def __init__(
        self,
        dataset: datasets.Dataset,
        index_type: str,
        search_params: dict[str, Any] | None = None,
        skipped: Sequence[SkippedVideo] = (),
        model_name_or_path: str | None = None,
        model_class: str | None = None,
        *,
        storage: str = "float32",
        rerank: int = DEFAULT_RERANK,
    ):
        _check_storage(storage, rerank)
        self.dataset = dataset
        self.index_type = index_type
        self.storage = storage
        self.rerank = rerank
        self.search_params = {}
        self.skipped = list(skipped)
        self.model_name_or_path = model_name_or_path
        self.model_class = model_class
        self.model = None
        self.processor = None
        self._ids = dataset.data.column(ID_COLUMN)  # the Arrow column: `select_columns` would copy the table
        # Views of the float32 embeddings in the Arrow table (no copy), one per chunk, for the scan and the rerank.
        self._embedding_chunks = [
            chunk.flatten().to_numpy().reshape(len(chunk), -1)
            for chunk in dataset.data.column(EMBEDDING_COLUMN).chunks
            if len(chunk)
        ]
        self._chunk_starts = np.cumsum([0] + [len(chunk) for chunk in self._embedding_chunks[:-1]])
        self._loading = threading.Lock()
        self.set_search_params(**(search_params or {}))

    @classmethod
    def from_embeddings(
        cls,
        embeddings: np.ndarray | torch.Tensor,
        video_ids: Sequence[str],
        index_type: str = "exact",
        search_params: dict[str, Any] | None = None,
        skipped: Sequence[SkippedVideo] = (),
        model=None,
        processor=None,
        seed: int = 0,
        *,
        storage: str = "float32",
        rerank: int = DEFAULT_RERANK,
    ) -> "VideoIndex":
        """
        Index ready embeddings.

        Args:
            embeddings (`np.ndarray` or `torch.Tensor` of shape `(num_videos, D)`): one embedding per video
                (L2-normalised, for cosine scores).
            video_ids (`Sequence[str]`): `num_videos` distinct ids.
            index_type (`str`, *optional*, defaults to `"exact"`): see the class docstring.
            search_params (`dict`, *optional*): search-time FAISS parameters over the preset's defaults.
            skipped (`Sequence[SkippedVideo]`): videos left out, kept as the record of the build.
            model, processor (*optional*): attached for text search; the model's name or path is recorded.
            seed (`int`): seed of the sample that trains an index that needs training.
            storage (`str`, *optional*, defaults to `"float32"`): `"float32"`, `"float16"` or `"int8"`, how the
                preset index types store the vectors (see the class docstring).
            rerank (`int`, *optional*, defaults to 100): with compressed storage, the candidates per query that are
                re-scored with the float32 embeddings (at least `k` are).
        """
        faiss = _import_faiss()
        embeddings = _as_float32(embeddings)
        video_ids = [str(video_id) for video_id in video_ids]
        if embeddings.ndim != 2 or embeddings.shape[0] == 0:
            raise ValueError(f"`embeddings` must be [num_videos > 0, dim], got shape {tuple(embeddings.shape)}.")
        if len(video_ids) != len(embeddings):
            raise ValueError(f"Got {len(video_ids)} video ids for {len(embeddings)} embeddings: give one id each.")
        _check_unique(video_ids)
        if not np.all(np.isfinite(embeddings)):
            rows = np.flatnonzero(~np.isfinite(embeddings).all(1))[:5]
            raise ValueError(f"Embeddings of {[video_ids[row] for row in rows]} hold NaN or infinite values.")
        if not isinstance(index_type, str) or not index_type:
            raise ValueError(f"`index_type` must be one of {INDEX_TYPES} or a FAISS factory string: {index_type!r}")
        _check_storage(storage, rerank)
        num_videos, dim = embeddings.shape
        factory, defaults = faiss_factory(index_type, num_videos, storage)

        # A copy that the dataset owns, shared by its Arrow column without another copy. The dataset gets a random
        # fingerprint: by default `datasets` would pickle and hash the whole table (several times its size in memory).
        embeddings = embeddings.copy()
        table = pa.table({
            ID_COLUMN: pa.array(video_ids, pa.string()),
            EMBEDDING_COLUMN: pa.FixedSizeListArray.from_arrays(pa.array(embeddings.reshape(-1)), dim),
        })
        dataset = datasets.Dataset(table, fingerprint=generate_random_fingerprint())
        try:
            faiss_index = faiss.index_factory(dim, factory, faiss.METRIC_INNER_PRODUCT)
        except RuntimeError as error:
            raise ValueError(
                f"`index_type` {index_type!r} is neither one of {INDEX_TYPES} nor a FAISS factory string that builds "
                f"for {dim}-d vectors: {error}"
            ) from error
        if not faiss_index.is_trained:
            rng = np.random.default_rng(seed)
            sample = rng.choice(num_videos, size=min(num_videos, MAX_TRAINING_VECTORS), replace=False)
            faiss_index.train(embeddings[np.sort(sample)])
        dataset.add_faiss_index(EMBEDDING_COLUMN, custom_index=faiss_index)

        index = cls(
            dataset,
            index_type,
            {**defaults, **(search_params or {})},
            skipped,
            model_name_or_path=_model_name_or_path(model) if model is not None else None,
            model_class=type(model).__name__ if model is not None else None,
            storage=storage,
            rerank=rerank,
        )
        if model is not None or processor is not None:
            index.attach_model(model, processor)
        return index

    def __len__(self) -> int:
        return len(self.dataset)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(num_videos={len(self)}, dim={self.dim}, index_type={self.index_type!r}, "
            f"storage={self.storage!r}, search_params={self.search_params}, skipped={len(self.skipped)}, "
            f"model_name_or_path={self.model_name_or_path!r})"
        )

    @property
    def dim(self) -> int:
        """The embedding dimension `D`."""
        return self.faiss_index.d

    @property
    def faiss_index(self):
        """The underlying `faiss.Index`."""
        return self.dataset.get_index(EMBEDDING_COLUMN).faiss_index

    def attach_model(self, model=None, processor=None) -> "VideoIndex":
        """Attach the model and/or processor that embed text queries (those of the build, or loaded like them)."""
        if model is not None:
            _feature_model(model)
            self.model = model
        if processor is not None:
            self.processor = processor
        return self

    def set_search_params(self, **params) -> "VideoIndex":
        """
        Set FAISS search-time parameters, e.g. `nprobe=32` (`"ivf"`) or `efSearch=256` (`"hnsw"`): larger is slower
        and closer to exact. They are saved with the index.
        """
        faiss = _import_faiss()
        space = faiss.ParameterSpace()
        for name, value in params.items():
            try:
                space.set_index_parameter(self.faiss_index, name, value)
            except (RuntimeError, TypeError) as error:
                raise ValueError(
                    f"Cannot set search parameter {name}={value!r} on a {self.index_type!r} index: {error}"
                ) from error
            self.search_params[name] = value
        return self

    def search(self, query: str | np.ndarray | torch.Tensor, k: int = 10) -> list[tuple[str, float]]:
        """
        The `k` videos that best match one query.

        Args:
            query (`str`, or an embedding `np.ndarray` / `torch.Tensor` of shape `(D,)`): a text (embedded with the
                attached model) or a query embedding (used as given: normalise it for cosine scores).
            k (`int`, *optional*, defaults to 10): number of results; fewer when the index holds fewer videos (or
                an approximate index finds fewer).

        Returns:
            `list[tuple[str, float]]`: `(video_id, score)` pairs, best first.
        """
        if isinstance(query, str):
            return self.search_batch([query], k)[0]
        query = _as_float32(query)
        if query.ndim != 1:
            raise ValueError(f"`search` takes one query embedding of shape ({self.dim},), got {query.shape}; "
                             "use `search_batch` for several.")
        return self.search_batch(query[None], k)[0]

    def search_batch(
        self, queries: Sequence[str] | np.ndarray | torch.Tensor, k: int = 10
    ) -> list[list[tuple[str, float]]]:
        """
        [`search`] for `Q` queries at once: a list of texts, or embeddings of shape `(Q, D)` (an array, a tensor or
        nested lists). Returns one result list per query.
        """
        if not isinstance(k, int) or isinstance(k, bool) or k < 1:
            raise ValueError(f"`k` must be a positive integer, got {k!r}.")
        if isinstance(queries, str):
            raise TypeError("`search_batch` takes a list of texts; use `search` for a single text.")
        if isinstance(queries, (list, tuple)) and queries and all(isinstance(query, str) for query in queries):
            query_embeds = self.embed_texts(queries)
        else:
            query_embeds = _as_float32(queries)
        if query_embeds.ndim != 2 or query_embeds.shape[1] != self.dim:
            raise ValueError(
                f"Query embeddings must be [num_queries, {self.dim}] (the index's dimension), got "
                f"{tuple(query_embeds.shape)}."
            )
        compressed = self.storage != "float32"
        num_candidates = min(max(self.rerank, k), len(self)) if compressed else k
        if self.index_type == "exact" and len(query_embeds) >= MATMUL_MIN_QUERIES:
            scores, rows = self._scan(query_embeds, num_candidates)
        else:
            scores, rows = self.faiss_index.search(query_embeds, num_candidates)
        # An exact index re-scores its float32 results too, so that the scores of one query do not depend on the path
        # (FAISS or the matrix products) that the size of its batch chose.
        if compressed or self.index_type == "exact":
            scores, rows = self._rerank(query_embeds, rows, k)
        found = rows >= 0  # FAISS pads with -1 when it finds fewer than k
        ids = iter(self._ids.take(rows[found]).to_pylist())
        return [
            [(next(ids), float(score)) for score in query_scores[query_found]]
            for query_scores, query_found in zip(scores, found, strict=True)
        ]

    def _scan(self, queries: np.ndarray, num: int) -> tuple[np.ndarray, np.ndarray]:
        """
        The top `num` rows (`[Q, num]` scores and rows) of an exact index for `queries` `[Q, D]`, by the stored
        vectors: matrix products over blocks of `SCAN_BLOCK_ROWS` rows, whose top `num` are merged into the running
        top `num`. An `"int8"` index scores `queries * step` against the 8-bit codes: its scores are the inner
        products with the decoded vectors less a constant per query, which leaves the ranking unchanged.
        """
        num = min(num, len(self))
        weights = queries
        if self.storage == "int8":  # a code c of dimension d decodes to minimum_d + (c + 0.5) * range_d / 255
            weights = queries * (_faiss_view(self.faiss_index.sq.trained)[self.dim :] / 255)
        all_scores, all_rows = [], []
        for first in range(0, len(queries), SCAN_QUERY_CHUNK):
            query_weights = weights[first : first + SCAN_QUERY_CHUNK]
            best_scores = torch.full((len(query_weights), num), -math.inf)
            best_rows = torch.full((len(query_weights), num), -1)
            for start, block in self._stored_blocks():
                # numpy multiplies read-only blocks (memory-mapped after `load_index`) without a copy
                block_scores = torch.from_numpy(query_weights @ block.T)
                top_scores, top_rows = block_scores.topk(min(num, len(block)), dim=1)
                merged_scores = torch.cat([best_scores, top_scores], dim=1)
                merged_rows = torch.cat([best_rows, top_rows + start], dim=1)
                best_scores, order = merged_scores.topk(num, dim=1)
                best_rows = merged_rows.gather(1, order)
            all_scores.append(best_scores.numpy())
            all_rows.append(best_rows.numpy())
        return np.concatenate(all_scores), np.concatenate(all_rows)

    def _stored_blocks(self):
        """
        `(first row, [rows, D] float32 array)` blocks of the vectors as the index stores them: the dataset's float32
        embeddings, float16 vectors converted, or the 8-bit codes as numbers (0 to 255).
        """
        if self.storage == "float32":
            for chunk_start, chunk in zip(self._chunk_starts, self._embedding_chunks, strict=True):
                for start in range(0, len(chunk), SCAN_BLOCK_ROWS):
                    yield chunk_start + start, chunk[start : start + SCAN_BLOCK_ROWS]
            return
        faiss_index = self.faiss_index  # referenced while its codes are read: `save_to_disk` reloads the index
        codes = _faiss_view(faiss_index.codes)
        codes = (codes.view(np.float16) if self.storage == "float16" else codes).reshape(-1, self.dim)
        for start in range(0, len(codes), SCAN_BLOCK_ROWS):
            block = codes[start : start + SCAN_BLOCK_ROWS]
            # torch converts float16 with vector instructions, numpy one number at a time (20x slower); uint8 the
            # other way round
            if self.storage == "float16":
                yield start, torch.from_numpy(block).float().numpy()
            else:
                yield start, block.astype(np.float32)

    def _rerank(self, queries: np.ndarray, rows: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """
        The top `k` of candidate `rows` `[Q, C]` (-1: none) by their float32 inner products with `queries` `[Q, D]`:
        `([Q, min(k, C)]` scores, rows).
        """
        found = rows >= 0
        vectors = self._embedding_rows(np.where(found, rows, 0).reshape(-1)).reshape(*rows.shape, self.dim)
        scores = np.matmul(vectors, queries[:, :, None])[..., 0]
        scores[~found] = -np.inf
        order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        return np.take_along_axis(scores, order, axis=1), np.take_along_axis(np.where(found, rows, -1), order, axis=1)

    def _embedding_rows(self, rows: np.ndarray) -> np.ndarray:
        """The float32 embeddings `[len(rows), D]` of dataset rows `rows`."""
        if len(self._embedding_chunks) == 1:
            return self._embedding_chunks[0][rows]
        vectors = np.empty((len(rows), self.dim), dtype=np.float32)
        chunk_of_row = np.searchsorted(self._chunk_starts, rows, side="right") - 1
        for chunk in np.unique(chunk_of_row):
            in_chunk = chunk_of_row == chunk
            vectors[in_chunk] = self._embedding_chunks[chunk][rows[in_chunk] - self._chunk_starts[chunk]]
        return vectors

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        """`(Q, D)` float32 sentence embeddings of `texts` with the attached (or recorded) model, in eval mode."""
        model, processor = self._text_encoder()
        with torch.inference_mode():
            return encode_texts(_inference_model(_feature_model(model)), processor, list(texts)).numpy()

    def _text_encoder(self):
        if self.model is not None and self.processor is not None:
            return self.model, self.processor
        with self._loading:  # concurrent first searches load the model once
            if self.model is None or self.processor is None:
                self._load_text_encoder()
        return self.model, self.processor

    def _load_text_encoder(self) -> None:
        if self.model_name_or_path is None:
            raise ValueError(
                "This index has no model to embed text queries with, and records no model to load: call "
                "`index.attach_model(model, processor)` (or pass them to `load_index`), or search by embedding."
            )
        if self.model is None:
            model_class = getattr(modeling_locvtp, self.model_class or "", None)
            if not (isinstance(model_class, type) and issubclass(model_class, PreTrainedModel)):
                model_class = AutoModel
            logger.info(f"Loading {model_class.__name__} from {self.model_name_or_path} to embed text queries")
            self.model = model_class.from_pretrained(self.model_name_or_path).eval()  # the index's own model
        if self.processor is None:
            self.processor = AutoProcessor.from_pretrained(self.model_name_or_path)

    def save_to_disk(self, path: str | os.PathLike) -> None:
        """
        Save to a folder: `dataset/` (the ids and embeddings, `Dataset.save_to_disk`), `index.faiss` (the FAISS
        index) and `index_config.json` (index type, search parameters, dimension, model name or path and class,
        skipped videos). The model itself is not saved; [`load_index`] loads it from the recorded Hub id, or from
        the recorded local folder, which is written relative to `path` (the folder may be shared or moved with the
        model beside it, and holds no absolute path of this machine).
        """
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        self.dataset.save_faiss_index(EMBEDDING_COLUMN, path / FAISS_INDEX_NAME)
        # `save_to_disk` refuses a dataset with an index attached: detach it, save, reattach it from its file.
        self.dataset.drop_index(EMBEDDING_COLUMN)
        try:
            self.dataset.save_to_disk(path / DATASET_FOLDER)
        finally:
            self.dataset.load_faiss_index(EMBEDDING_COLUMN, path / FAISS_INDEX_NAME)
            self.set_search_params(**self.search_params)
        config = {
            "format_version": FORMAT_VERSION,
            "index_type": self.index_type,
            "storage": self.storage,
            "rerank": self.rerank,
            "metric": "inner_product",
            "search_params": self.search_params,
            "dim": self.dim,
            "num_videos": len(self),
            "model_name_or_path": _relative_to(self.model_name_or_path, path),
            "model_class": self.model_class,
            "skipped": [asdict(video) for video in self.skipped],
        }
        (path / CONFIG_NAME).write_text(json.dumps(config, indent=2) + "\n")


def load_index(path: str | os.PathLike, model=None, processor=None) -> VideoIndex:
    """
    Load a [`VideoIndex`] saved with [`VideoIndex.save_to_disk`].

    Text search needs the model and processor that embedded the videos: pass them here (or later with
    `index.attach_model`); otherwise they are loaded from the recorded `model_name_or_path` (a local folder saved
    with `save_pretrained`, holding the processor too, recorded relative to `path`; or a Hub id) at the first text
    query, once however many threads search. Searching by embedding needs no model.
    """
    path = Path(path)
    config_file = path / CONFIG_NAME
    if not config_file.is_file():
        raise FileNotFoundError(
            f"{path} is not a saved video index (it has no {CONFIG_NAME}); save one with `VideoIndex.save_to_disk`."
        )
    config = json.loads(config_file.read_text())
    if config.get("format_version") not in READABLE_FORMAT_VERSIONS:
        raise ValueError(
            f"{config_file} has format_version {config.get('format_version')!r}; this version of locvtp-hf reads "
            f"{' and '.join(map(str, READABLE_FORMAT_VERSIONS))}."
        )
    _import_faiss()
    dataset = datasets.load_from_disk(str(path / DATASET_FOLDER))
    dataset.load_faiss_index(EMBEDDING_COLUMN, path / FAISS_INDEX_NAME)
    num_vectors = dataset.get_index(EMBEDDING_COLUMN).faiss_index.ntotal
    if num_vectors != len(dataset) or len(dataset) != config["num_videos"]:
        raise ValueError(
            f"{path} is inconsistent: {len(dataset)} rows in {DATASET_FOLDER}/, {num_vectors} vectors in "
            f"{FAISS_INDEX_NAME}, {config['num_videos']} videos in {CONFIG_NAME}."
        )
    model_name_or_path = config["model_name_or_path"]
    if model_name_or_path is not None and (path / model_name_or_path).is_dir():
        model_name_or_path = str((path / model_name_or_path).resolve())  # a local folder, saved relative to `path`
    index = VideoIndex(
        dataset,
        config["index_type"],
        config["search_params"],
        [SkippedVideo(**video) for video in config["skipped"]],
        model_name_or_path=model_name_or_path,
        model_class=config["model_class"],
        storage=config.get("storage", "float32"),
        rerank=config.get("rerank", DEFAULT_RERANK),
    )
    return index.attach_model(model, processor)


def build_video_index(
    model,
    processor,
    videos: Sequence | datasets.Dataset,
    batch_size: int = 16,
    *,
    video_ids: Sequence[str] | None = None,
    video_column: str = "video",
    id_column: str = "video_id",
    index_type: str = "exact",
    search_params: dict[str, Any] | None = None,
    load_video: Callable[[Any], Any] | None = None,
    video_fps: float | None = None,
    storage: str = "float32",
    rerank: int = DEFAULT_RERANK,
) -> VideoIndex:
    r"""
    Embed videos with a LocVTP model (the video embedding `z`, clips centred in the processor's `num_clips`
    segments) and index them for search. A video that cannot be read (missing, not a video, truncated, an invalid
    array) is left out and reported in `index.skipped` (its id and why) and in a warning; the build fails only when
    no video can be read. Errors of the model on readable videos (e.g. frames of another size than the model's
    `image_size`) are raised as they are.

    Args:
        model: a [`LocVTPModel`], or any model with `get_video_features` / `get_text_features` like it (or holding
            one as `.locvtp`). It is run in eval mode, without switching the mode of `model` itself (see
            [`VideoIndex`]), and attached to the index for text search.
        processor ([`LocVTPProcessor`]): samples and normalises the clips; attached for text search.
        videos: a list of videos (file paths, uint8 arrays `[N, H, W, 3]`, frame lists, or anything `load_video`
            turns into one), or a `datasets.Dataset` whose `video_column` holds paths, `datasets.Video` entries or
            what `load_video` takes.
        batch_size (`int`, *optional*, defaults to 16): videos per forward pass.
        video_ids (`Sequence[str]`, *optional*): one distinct id per video. Defaults: a dataset's `id_column` when it
            has one; otherwise the path of path videos (also `datasets.Video` ones) or the video's position.
        video_column, id_column (`str`): columns of a dataset.
        index_type (`str`, *optional*, defaults to `"exact"`): `"exact"`, `"ivf"`, `"hnsw"` or a FAISS factory
            string; see [`VideoIndex`].
        search_params (`dict`, *optional*): FAISS search-time parameters, e.g. `{"nprobe": 32}`.
        load_video (`Callable`, *optional*): maps an entry of `videos` to what the video processor takes.
        video_fps (`float`, *optional*): frame rate of array videos.
        storage (`str`, *optional*, defaults to `"float32"`): `"float32"`, `"float16"` or `"int8"`; see
            [`VideoIndex`].
        rerank (`int`, *optional*, defaults to 100): candidates per query re-scored in float32 with compressed
            storage.

    Returns:
        [`VideoIndex`]
    """
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise ValueError(f"`batch_size` must be a positive integer, got {batch_size!r}.")
    encoder = _inference_model(_feature_model(model))
    with tempfile.TemporaryDirectory(prefix="locvtp-index-") as scratch:
        entries, ids = _video_entries(videos, video_ids, video_column, id_column, scratch)
        with torch.inference_mode():
            embeddings, _, _, unreadable = encode_videos(
                encoder, processor, entries, load_video, video_fps, batch_size=batch_size, skip_unreadable=True
            )
    skipped = [SkippedVideo(ids[video.index], video.reason) for video in unreadable]
    if skipped:
        listing = "; ".join(f"{video.video_id} ({video.reason})" for video in skipped[:10])
        more = f" and {len(skipped) - 10} more" if len(skipped) > 10 else ""
        logger.warning(f"Skipped {len(skipped)} of {len(entries)} videos that could not be read: {listing}{more}.")
    unreadable_rows = {video.index for video in unreadable}
    kept_ids = [video_id for row, video_id in enumerate(ids) if row not in unreadable_rows]
    return VideoIndex.from_embeddings(
        embeddings, kept_ids, index_type, search_params, skipped, model=model, processor=processor, storage=storage,
        rerank=rerank,
    )


def _video_entries(videos, video_ids, video_column: str, id_column: str, scratch: str) -> tuple[list, list[str]]:
    """The videos as the processor (or `load_video`) takes them, and their ids."""
    if isinstance(videos, datasets.Dataset):
        if video_column not in videos.column_names:
            raise ValueError(
                f"The dataset has no video column {video_column!r} (it has {videos.column_names}): pass "
                "`video_column=`."
            )
        if isinstance(videos.features[video_column], datasets.Video):
            videos = videos.cast_column(video_column, datasets.Video(decode=False))
        if video_ids is None and id_column in videos.column_names:
            video_ids = videos[id_column]
        entries = list(videos[video_column])
    elif isinstance(videos, (str, os.PathLike)):
        raise TypeError(
            f"`videos` is a single path ({os.fspath(videos)!r}): pass a list of videos, e.g. "
            "`sorted(Path(folder).glob('*.mp4'))`."
        )
    else:
        entries = list(videos)
    if not entries:
        raise ValueError("`videos` is empty: there is nothing to index.")
    if video_ids is None:
        video_ids = [_default_id(entry, position) for position, entry in enumerate(entries)]
    video_ids = [str(video_id) for video_id in video_ids]
    if len(video_ids) != len(entries):
        raise ValueError(f"Got {len(video_ids)} video ids for {len(entries)} videos: give one id each.")
    _check_unique(video_ids)
    return [_from_video_feature(entry, position, scratch) for position, entry in enumerate(entries)], video_ids


def _is_video_feature(entry) -> bool:
    return isinstance(entry, dict) and set(entry) == {"path", "bytes"}


def _default_id(entry, position: int) -> str:
    if _is_video_feature(entry) and entry["path"]:
        return entry["path"]
    return os.fspath(entry) if isinstance(entry, (str, os.PathLike)) else str(position)


def _from_video_feature(entry, position: int, scratch: str):
    """A `datasets.Video(decode=False)` entry (`{"path", "bytes"}`) as a file path; other entries unchanged."""
    if not _is_video_feature(entry):
        return entry
    if not entry["bytes"]:
        return entry["path"]
    # The video is embedded in the dataset: the decoder reads files, so it gets a scratch copy.
    file = Path(scratch) / f"{position}{Path(entry['path'] or '').suffix or '.mp4'}"
    file.write_bytes(entry["bytes"])
    return str(file)


def _check_storage(storage: str, rerank: int) -> None:
    if storage not in STORAGES:
        raise ValueError(f"`storage` must be one of {STORAGES}, got {storage!r}.")
    if not isinstance(rerank, int) or isinstance(rerank, bool) or rerank < 1:
        raise ValueError(f"`rerank` must be a positive integer (candidates re-scored per query), got {rerank!r}.")


def _faiss_view(vector) -> np.ndarray:
    """A numpy view (no copy) of a FAISS C++ vector, e.g. an index's `codes`: valid while that index exists."""
    return _import_faiss().rev_swig_ptr(vector.data(), vector.size())


def _check_unique(video_ids: Sequence[str]) -> None:
    seen, repeated = set(), []
    for video_id in video_ids:
        if video_id in seen:
            repeated.append(video_id)
        seen.add(video_id)
    if repeated:
        raise ValueError(f"Video ids must be distinct; repeated: {sorted(set(repeated))[:10]}.")


def _relative_to(model_name_or_path: str | None, folder: str | os.PathLike) -> str | None:
    """A local model folder (recorded absolute) relative to `folder`; a Hub id as it is."""
    if model_name_or_path is None or not os.path.isabs(model_name_or_path):
        return model_name_or_path
    return os.path.relpath(model_name_or_path, os.path.abspath(folder))


def _as_float32(array: np.ndarray | torch.Tensor) -> np.ndarray:
    if isinstance(array, torch.Tensor):
        array = array.detach().cpu().float().numpy()
    return np.ascontiguousarray(array, dtype=np.float32)
