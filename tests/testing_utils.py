"""Helpers shared by several test modules (fixtures live in conftest.py)."""

# Comparing float32 results computed in another process: the same weights and inputs, but the other process may pick
# other kernels or thread splits, so sums round differently. Logits are scaled by the logit scale (up to 100), so the
# tolerance must be relative; a wrong weight or input changes results by orders of magnitude more.
CROSS_PROCESS_TOLERANCE = {"rtol": 1e-5, "atol": 1e-6}
