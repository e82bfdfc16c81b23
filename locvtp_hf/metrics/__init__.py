"""`evaluate` metric modules shipped with the package; they load offline with `evaluate.load(metric_path(name))`."""

from pathlib import Path
from typing import TYPE_CHECKING


if TYPE_CHECKING:
    import evaluate


METRICS_DIR = Path(__file__).parent
METRIC_NAMES = ("temporal_grounding", "text_video_retrieval")


def metric_path(name: str = "temporal_grounding") -> str:
    """
    The folder of a shipped metric module, for `evaluate.load(...)`.

    Args:
        name (`str`, *optional*, defaults to `"temporal_grounding"`): One of [`METRIC_NAMES`].
    """
    if name not in METRIC_NAMES:
        raise ValueError(f"No metric {name!r} ships with locvtp_hf; choose one of {list(METRIC_NAMES)}.")
    return str(METRICS_DIR / name)


def load(name: str = "temporal_grounding", **kwargs) -> "evaluate.EvaluationModule":
    """`evaluate.load` of a shipped metric module (offline); `kwargs` go to `evaluate.load`."""
    import evaluate

    return evaluate.load(metric_path(name), **kwargs)
