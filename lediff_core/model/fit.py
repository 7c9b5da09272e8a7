"""Does a model's config fit its weights? Checked before any model is built.

A ``config.json`` is a list of allocations: ``block_out_channels`` [4096]*4 or ``layers_per_block``
1000 beside small weights would build and initialise gigabytes of model before the weights are
found not to fit, and fail with the allocator's error (naming no file) or an out-of-memory kill. So
every reader of a model compares its config with its weights first, in two steps:

1. **The settings that size the model** (levels, widths, layers, channels) against what the weights'
   tensor names and shapes say they are (``unet_config.unet_mismatches``, ``vae.vae_mismatches``;
   from the safetensors header or a state dict, no tensor copied): a mismatch names the config, the
   key, both values and the fix (``check_settings``).
2. **Every parameter**: the model is built on PyTorch's ``meta`` device (shapes without memory) under
   a ceiling on the modules and tensors it may create (a small multiple of the tensors the weights
   hold, so that a config asking for a million layers stops at once), and its state dict's keys and
   shapes must be the weights' exactly (``meta_model``, ``check_shapes``).

Only then is the model built for real; its parameters are then the weights' own, which the weight
readers bound by the file's size (``weights.load_state_dict``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping
from contextlib import contextmanager

import torch
from torch import nn

from .weights import WeightError, listing

# A model has about as many modules as tensors (containers, activations and dropout add some):
# building stops past this many modules + parameters + buffers per tensor of the weights, plus a margin.
CEILING_PER_TENSOR = 4
CEILING_MARGIN = 1000

FIX = ("The config does not match the weights: re-download the model, or put back the config that came "
       "with these weights (a config and its weights must come from the same download)")


class ConfigMismatchError(WeightError):
    """A config that does not describe its weights; the message names the config, the key and the fix."""


def shapes_of(state_dict: Mapping[str, torch.Tensor]) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in state_dict.items()}


def indices(shapes: Iterable[str], prefix: str) -> list[int]:
    """The distinct numbers that follow ``prefix`` in the tensor names (``down_blocks.`` -> levels)."""
    found = set()
    for key in shapes:
        if key.startswith(prefix):
            head = key[len(prefix):].split(".", 1)[0]
            if head.isdigit():
                found.add(int(head))
    return sorted(found)


def dim(shapes: Mapping[str, tuple[int, ...]], key: str, axis: int) -> int | None:
    """One dimension of a tensor of the weights, None when the weights have no such tensor."""
    shape = shapes.get(key)
    return shape[axis] if shape is not None and len(shape) > axis else None


def mismatch(found: list, config: Mapping, key: str, weights_value) -> None:
    """Record ``key`` when the config sets it to something else than the weights' ``weights_value``
    (None: the weights do not say; a key the config leaves out is checked in step 2)."""
    if key not in config or weights_value is None:
        return
    given = config[key]
    given = list(given) if isinstance(given, tuple) else given
    if given != weights_value:
        found.append((key, given, weights_value))


def check_settings(mismatches: list, config_name: str, weights_name: str) -> None:
    """Raise ConfigMismatchError naming every setting of ``config_name`` that the weights contradict."""
    if mismatches:
        parts = "; ".join(f"{key} is {given!r} where the weights have {have!r}" for key, given, have in mismatches)
        raise ConfigMismatchError(f"{config_name} does not match the weights in {weights_name}: {parts}. {FIX}")


@contextmanager
def _ceiling(limit: int, refusal: Callable[[], Exception]):
    """Raise ``refusal()`` once this thread has registered more than ``limit`` modules, parameters
    and buffers: torch's global registration hooks, counted for this thread alone (the host may
    build other models in other threads)."""
    count, thread = 0, threading.get_ident()

    def hook(*_):
        nonlocal count
        if threading.get_ident() == thread:
            count += 1
            if count > limit:
                raise refusal()

    registrations = (nn.modules.module.register_module_module_registration_hook,
                     nn.modules.module.register_module_parameter_registration_hook,
                     nn.modules.module.register_module_buffer_registration_hook)
    handles = [register(hook) for register in registrations]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def meta_model(build: Callable[[], nn.Module], tensors: int, config_name: str, weights_name: str) -> nn.Module:
    """``build()`` on the ``meta`` device (every shape, no memory), refused by name once it creates
    far more modules and tensors than the weights' ``tensors`` can fill."""
    limit = CEILING_PER_TENSOR * tensors + CEILING_MARGIN

    def refusal():
        return ConfigMismatchError(
            f"{config_name} describes a model of more than {limit} modules and tensors, but {weights_name} holds "
            f"{tensors} tensors (its layer counts, e.g. layers_per_block or transformer_layers_per_block, ask for "
            f"far more layers than the weights have). {FIX}")

    with _ceiling(limit, refusal), torch.device("meta"):
        return build()


def check_shapes(expected: Mapping[str, tuple[int, ...]], got: Mapping[str, tuple[int, ...]], config_name: str,
                 weights_name: str) -> None:
    """The model built from ``config_name`` (``expected``: key -> shape, e.g. a ``meta_model``'s state
    dict) must hold exactly the weights' keys and shapes."""
    missing = [k for k in expected if k not in got]
    unexpected = [k for k in got if k not in expected]
    wrong = [f"{k}: the config gives {list(expected[k])}, the weights hold {list(got[k])}"
             for k in expected if k in got and tuple(expected[k]) != tuple(got[k])]
    parts = []
    if wrong:
        parts.append(f"{len(wrong)} tensor(s) of another shape: {listing(wrong, 3)}")
    if missing:
        parts.append(f"{len(missing)} missing key(s): {listing(missing, 5)}")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected key(s): {listing(unexpected, 5)}")
    if parts:
        raise ConfigMismatchError(f"{config_name} does not match the weights in {weights_name}: "
                                  f"{'; '.join(parts)}. {FIX}")
