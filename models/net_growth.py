"""Grow a trained emotion net into a deeper one that starts out computing exactly the same.

Forks of a trained net at its own size stopped improving (README: warm restarts, lighter
augmentation, distillation, mixup all held run B at ~67.5 %), and a larger net trained from
scratch takes more sittings than we have. Growing adds capacity without losing what was
learned: every layer the two nets share by name and shape takes the trained weights, and each
new middle-flow block (an identity shortcut plus two separable convolutions) starts with the
scale of its last batch norm at zero, so it adds nothing until training moves it (the
zero-initialised residual of Goyal et al., 2017).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import keras

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Growth:
    """What :func:`grow` did: layers that took trained weights, and new blocks made silent."""

    copied: tuple[str, ...]
    silenced: tuple[str, ...]


def grow(source: keras.Model, target: keras.Model) -> Growth:
    """Copy ``source``'s weights into ``target`` layer by layer (same name, same shapes) and
    silence ``target``'s middle blocks that ``source`` lacks.

    Raises ValueError when a shared layer's shapes differ, when a layer of ``target`` that is
    not a new middle block has no trained counterpart, or when ``target`` lacks a trained
    layer (a smaller net): the grown net would not start where the trained one is.
    """
    trained = {layer.name: layer for layer in source.layers}
    kept = {layer.name for layer in target.layers}
    lost = [name for name, layer in trained.items() if layer.weights and name not in kept]
    if lost:
        raise ValueError(f"the grown net lacks trained layers ({', '.join(lost[:3])}, ...)")
    copied: list[str] = []
    silenced: list[str] = []
    for layer in target.layers:
        if not layer.weights:
            continue
        if layer.name in trained:
            weights = trained[layer.name].get_weights()
            if [w.shape for w in weights] != [tuple(w.shape) for w in layer.weights]:
                raise ValueError(f"layer {layer.name}: trained and grown shapes differ")
            layer.set_weights(weights)
            copied.append(layer.name)
        elif not layer.name.startswith("mid"):
            raise ValueError(f"layer {layer.name} is new and not a middle block: cannot grow")
        elif layer.name.endswith("_b_bn"):
            gamma, *rest = layer.get_weights()
            layer.set_weights([gamma * 0.0, *rest])
            silenced.append(layer.name.removesuffix("_b_bn"))
    log.info("grown: %d layers took trained weights, new blocks %s", len(copied), silenced)
    return Growth(tuple(copied), tuple(silenced))
