"""How hard each loss term pulls on an encoder: nominal loss weights are not effective weights."""

import torch


def term_gradient_norms(terms: dict, parameters) -> dict[str, float]:
    """
    The L2 norm of the gradient of each loss term with respect to `parameters` (e.g. the clip encoder's), computed
    with `torch.autograd.grad` so that the parameters' `.grad` is left alone; the graph is kept for the backward pass
    of the total loss. Nominal loss weights are not effective weights: this shows which term the shared encoder
    actually follows.

    Args:
        terms (`dict[str, torch.Tensor | None]`): the (weighted) scalar terms; `None` and constant terms are left out.
        parameters: the parameters to measure against; those that do not require gradients are left out.

    Returns:
        `dict[str, float]`: the norm of each term's gradient (0.0 for a term that does not reach the parameters).
    """
    parameters = [parameter for parameter in parameters if parameter.requires_grad]
    norms = {}
    for name, term in terms.items():
        if term is None or not term.requires_grad or not parameters:
            continue
        grads = torch.autograd.grad(term, parameters, retain_graph=True, allow_unused=True)
        squares = [grad.float().square().sum() for grad in grads if grad is not None]
        norms[name] = torch.stack(squares).sum().sqrt().item() if squares else 0.0
    return norms

