"""What the benchmark scripts share: the device and precision, the machine's description, timing and peak memory of a
piece of torch work, the matrix multiply peak, and markdown tables.

Imports only torch (and transformers for its version), so that the scripts that use it run wherever the model runs.
"""

import itertools
import math
import os
import platform
import statistics
import time
from collections.abc import Callable
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile
from torch.utils import flop_counter as torch_flop_counter


def pick_device(name: str) -> torch.device:
    """`"auto"`: the CUDA device when torch sees one, else the CPU; otherwise the named CPU or CUDA device."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"--device {name}: the benchmarks measure time and memory on cpu or cuda devices only.")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {name}: torch sees no CUDA device (torch.cuda.is_available() is False).")
    return device


def pick_precision(name: str, device: torch.device) -> str:
    """`"auto"`: bf16 autocast on CUDA, fp32 on the CPU; otherwise `"fp32"` or `"bf16"` as named."""
    if name == "auto":
        return "bf16" if device.type == "cuda" else "fp32"
    return name


def autocast(device: torch.device, precision: str):
    """The autocast context of `precision` (`"bf16"`), or no context for fp32."""
    return torch.autocast(device.type, dtype=torch.bfloat16) if precision == "bf16" else nullcontext()


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _cpu_model() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def machine_description(device: torch.device) -> dict[str, str]:
    """CPU model and cores, RAM, GPU (when the benchmark runs on one), and the torch / transformers versions."""
    import transformers

    usable_cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    machine = {
        "CPU": f"{_cpu_model()}, {os.cpu_count()} cores ({usable_cores} usable), torch threads: "
        f"{torch.get_num_threads()}",
        "RAM": f"{ram / 2**30:.1f} GiB",
        "GPU": "none used",
    }
    if device.type == "cuda":
        properties = torch.cuda.get_device_properties(device)
        machine["GPU"] = f"{properties.name}, {properties.total_memory / 2**30:.1f} GiB, CUDA {torch.version.cuda}"
    machine["software"] = (
        f"Python {platform.python_version()}, torch {torch.__version__}, transformers {transformers.__version__}"
    )
    return machine


def machine_line(device: torch.device) -> str:
    return "; ".join(f"{name}: {value}" for name, value in machine_description(device).items())


def is_out_of_memory(error: BaseException) -> bool:
    """CUDA's `OutOfMemoryError`, or the CPU allocator's `RuntimeError` when an allocation fails."""
    return isinstance(error, torch.OutOfMemoryError) or (
        isinstance(error, RuntimeError) and "not enough memory" in str(error)
    )


@dataclass
class PeakMemory:
    """Filled in when the `peak_memory` block ends."""

    bytes: int = 0


@contextmanager
def peak_memory(device: torch.device):
    """
    The peak bytes of torch tensors allocated inside the block, above what was allocated when it began.

    On CUDA, the caching allocator's statistics (`torch.cuda.max_memory_allocated`). On the CPU, the allocation and
    free events that `torch.profiler` records with `profile_memory=True`, summed in time order. Both count the tensors'
    bytes: neither the allocator's cache nor memory that is not a torch tensor (Python objects, libraries).
    """
    result = PeakMemory()
    if device.type == "cuda":
        synchronize(device)
        start = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        yield result
        synchronize(device)
        result.bytes = torch.cuda.max_memory_allocated(device) - start
        return
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as profiler:
        yield result
    events = sorted(
        (
            event
            for event in profiler.profiler.kineto_results.events()
            if event.name() == "[memory]" and event.device_type() == torch.autograd.DeviceType.CPU
        ),
        key=lambda event: event.start_ns(),
    )
    result.bytes = max(itertools.accumulate((event.nbytes() for event in events), initial=0))


def _register_missing_flop_formulas() -> None:
    """Formulas that `FlopCounterMode` lacks, whose FLOPs it would count as zero: the flash attention kernel that SDPA
    uses on the CPU (with the formulas of the CUDA kernels), and the in-place `addmm_` (`c.addmm_(a, b)`, as `addmm`),
    which the losses use to accumulate a gradient."""
    aten, registry = torch.ops.aten, torch_flop_counter.flop_registry
    if aten._scaled_dot_product_flash_attention_for_cpu not in registry:
        torch_flop_counter.register_flop_formula(aten._scaled_dot_product_flash_attention_for_cpu)(
            lambda query, key, value, *args, out_shape=None, **kwargs: torch_flop_counter.sdpa_flop_count(
                query, key, value
            )
        )
    if aten._scaled_dot_product_flash_attention_for_cpu_backward not in registry:
        torch_flop_counter.register_flop_formula(aten._scaled_dot_product_flash_attention_for_cpu_backward)(
            lambda grad_out, query, key, value, *args, out_shape=None, **kwargs: (
                torch_flop_counter.sdpa_backward_flop_count(grad_out, query, key, value)
            )
        )
    if aten.addmm_ not in registry:
        torch_flop_counter.register_flop_formula(aten.addmm_)(
            lambda self, mat1, mat2, *args, out_shape=None, **kwargs: 2 * mat1[0] * mat1[1] * mat2[1]
        )


def flop_counter() -> torch_flop_counter.FlopCounterMode:
    """A `FlopCounterMode` (matrix multiplies, convolutions, attention) that also counts the CPU attention kernel and
    in-place matrix products (see `_register_missing_flop_formulas`); it prints nothing."""
    _register_missing_flop_formulas()
    return torch_flop_counter.FlopCounterMode(display=False)


@dataclass
class Measurement:
    """`seconds`: median over the timed runs; `peak_bytes`: see `peak_memory`; `flops`: counted by `flop_counter`
    when asked for."""

    seconds: float
    peak_bytes: int
    flops: int | None = None


def measure(work: Callable[[], object], device: torch.device, repeats: int, count_flops: bool = False) -> Measurement:
    """Runs `work` once to warm up, once more for its peak memory (and FLOPs), then `repeats` timed times."""
    work()
    counter = flop_counter() if count_flops else nullcontext()
    with peak_memory(device) as memory, counter:
        work()
    times = []
    for _ in range(repeats):
        synchronize(device)
        start = time.perf_counter()
        work()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return Measurement(
        seconds=statistics.median(times),
        peak_bytes=memory.bytes,
        flops=counter.get_total_flops() if count_flops else None,
    )


def matmul_peak_flops(device: torch.device, precision: str, size: int, repeats: int = 5) -> float:
    """FLOP/s of the fastest of `repeats` `size x size` matrix multiplies in the precision's dtype: the peak the
    benchmarks' FLOP/s are compared with."""
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    generator = torch.Generator(device=device).manual_seed(0)
    a = torch.randn(size, size, device=device, dtype=dtype, generator=generator)
    b = torch.randn(size, size, device=device, dtype=dtype, generator=generator)
    a @ b  # warm-up: kernel selection, first-touch of the memory
    fastest = math.inf
    for _ in range(repeats):
        synchronize(device)
        start = time.perf_counter()
        a @ b
        synchronize(device)
        fastest = min(fastest, time.perf_counter() - start)
    return 2 * size**3 / fastest


def format_value(value) -> str:
    """Numbers to 3 significant digits without exponents where they fit; `None` as `-`."""
    if value is None:
        return "-"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, int):
        return str(value)
    if value == 0 or not math.isfinite(value):
        return str(value)
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) < 1e-3:
        return f"{value:.2e}"
    return f"{value:.{max(0, 2 - math.floor(math.log10(abs(value))))}f}"


@dataclass
class Table:
    """A result table: `rows` map each column header to a value (a number, a string, or `None` for none)."""

    title: str
    columns: list[str]
    rows: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_markdown(self) -> str:
        lines = ["| " + " | ".join(self.columns) + " |", "|" + "---|" * len(self.columns)]
        for row in self.rows:
            lines.append("| " + " | ".join(format_value(row.get(column)) for column in self.columns) + " |")
        return "\n".join(lines + ([""] + self.notes if self.notes else []))

    def print(self) -> None:
        print(f"\n{self.title}\n\n{self.to_markdown()}\n", flush=True)
