"""Growing a trained net deeper: the grown net starts out answering exactly as the trained one."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("tensorflow")

from models.emotion_net import NetConfig, build_emotion_net
from models.net_growth import grow

# 16+ channels: narrower separable convolutions crash oneDNN (see test_train_emotion).
SMALL = NetConfig(stem=(16,), blocks=(16, 32), middle=1, exit_width=16)


def _trained_like(config: NetConfig):
    """A net whose weights (batch-norm statistics included) are far from their initial values,
    as a trained net's are, so that a copy that missed a layer would show."""
    model = build_emotion_net(config)
    rng = np.random.default_rng(3)
    for layer in model.layers:
        weights = layer.get_weights()
        if weights:
            layer.set_weights(
                [
                    np.abs(w) + 0.5 if "variance" in v.path else w + rng.normal(0, 0.2, w.shape)
                    for w, v in zip(weights, layer.weights, strict=True)
                ]
            )
    return model


def test_a_grown_net_answers_as_the_trained_one() -> None:
    trained = _trained_like(SMALL)
    grown = build_emotion_net(NetConfig(**{**SMALL.__dict__, "middle": 3}))
    faces = np.random.default_rng(4).random((6, 48, 48, 1)).astype("float32")
    before = np.asarray(grown(faces, training=False))

    growth = grow(trained, grown)

    assert growth.silenced == ("mid1", "mid2")
    assert "mid0_b_bn" in growth.copied and "emotion" in growth.copied
    expected = np.asarray(trained(faces, training=False))
    answered = np.asarray(grown(faces, training=False))
    np.testing.assert_allclose(answered, expected, atol=1e-5)
    assert not np.allclose(before, expected, atol=1e-3)  # the copy, not chance, made them agree
    # The new blocks are silent, not dead: their convolutions keep weights to learn from.
    assert np.abs(grown.get_layer("mid2_a_sep").get_weights()[1]).sum() > 0


def test_growing_refuses_nets_that_differ_elsewhere() -> None:
    trained = _trained_like(SMALL)
    wider = build_emotion_net(NetConfig(**{**SMALL.__dict__, "exit_width": 32}))
    with pytest.raises(ValueError, match="exit_sep"):
        grow(trained, wider)
    extra_block = build_emotion_net(NetConfig(**{**SMALL.__dict__, "blocks": (16, 32, 32)}))
    with pytest.raises(ValueError, match="down2"):
        grow(trained, extra_block)
    shallower = build_emotion_net(NetConfig(**{**SMALL.__dict__, "middle": 0}))
    with pytest.raises(ValueError, match="lacks trained layers \\(mid0_a_sep"):
        grow(trained, shallower)
