"""The emotion network: an Xception-style CNN for 48x48 grayscale faces.

It keeps the seed's design (entry flow, residual blocks of separable convolutions with batch
norm, global average pooling, softmax over the 7 FER2013 emotions) and improves on it where
CPU compute is cheap: wider separable blocks, a middle flow at low resolution where extra
depth costs little, and dropout before the classifier. Pure factory functions; nothing is
built or loaded at import.
"""

from __future__ import annotations

from dataclasses import dataclass

import keras
from keras import layers

NUM_CLASSES = 7
INPUT_SIZE = 48


@dataclass(frozen=True)
class NetConfig:
    """Shape of the network; the defaults are the served model's."""

    stem: tuple[int, int] = (32, 64)
    blocks: tuple[int, ...] = (128, 256, 512)
    middle: int = 2
    exit_width: int = 768
    dropout: float = 0.4
    weight_decay: float = 1e-4


def _sep_bn(x: keras.KerasTensor, width: int, decay: float, name: str) -> keras.KerasTensor:
    x = layers.SeparableConv2D(
        width,
        3,
        padding="same",
        use_bias=False,
        pointwise_regularizer=keras.regularizers.l2(decay),
        name=f"{name}_sep",
    )(x)
    return layers.BatchNormalization(name=f"{name}_bn")(x)


def _down_block(x: keras.KerasTensor, width: int, decay: float, name: str) -> keras.KerasTensor:
    """Xception entry-flow block: two separable convs, max-pool, 1x1 strided shortcut."""
    shortcut = layers.Conv2D(
        width, 1, strides=2, padding="same", use_bias=False, name=f"{name}_sc"
    )(x)
    shortcut = layers.BatchNormalization(name=f"{name}_sc_bn")(shortcut)
    x = _sep_bn(x, width, decay, f"{name}_a")
    x = layers.ReLU(name=f"{name}_a_relu")(x)
    x = _sep_bn(x, width, decay, f"{name}_b")
    x = layers.MaxPooling2D(3, strides=2, padding="same", name=f"{name}_pool")(x)
    return layers.Add(name=f"{name}_add")([x, shortcut])


def _middle_block(x: keras.KerasTensor, width: int, decay: float, name: str) -> keras.KerasTensor:
    """Xception middle-flow block: pre-activation separable convs with an identity shortcut."""
    shortcut = x
    for part in ("a", "b"):
        x = layers.ReLU(name=f"{name}_{part}_relu")(x)
        x = _sep_bn(x, width, decay, f"{name}_{part}")
    return layers.Add(name=f"{name}_add")([x, shortcut])


def build_emotion_net(config: NetConfig = NetConfig()) -> keras.Model:
    """Return an uncompiled model: (N, 48, 48, 1) floats in [0, 1] -> (N, 7) probabilities."""
    decay = config.weight_decay
    inputs = keras.Input((INPUT_SIZE, INPUT_SIZE, 1), name="face")
    x = layers.Rescaling(2.0, offset=-1.0, name="to_signed")(inputs)
    for i, width in enumerate(config.stem):
        x = layers.Conv2D(
            width,
            3,
            padding="same",
            use_bias=False,
            kernel_regularizer=keras.regularizers.l2(decay),
            name=f"stem{i}",
        )(x)
        x = layers.BatchNormalization(name=f"stem{i}_bn")(x)
        x = layers.ReLU(name=f"stem{i}_relu")(x)
    for i, width in enumerate(config.blocks):
        x = _down_block(x, width, decay, f"down{i}")
    for i in range(config.middle):
        x = _middle_block(x, config.blocks[-1], decay, f"mid{i}")
    x = layers.ReLU(name="exit_relu0")(x)
    x = _sep_bn(x, config.exit_width, decay, "exit")
    x = layers.ReLU(name="exit_relu")(x)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    x = layers.Dropout(config.dropout, name="dropout")(x)
    outputs = layers.Dense(NUM_CLASSES, activation="softmax", name="emotion")(x)
    return keras.Model(inputs, outputs, name="emotion_xception")


def build_augmenter(seed: int, strength: float = 1.0, erase: float = 0.0) -> keras.Sequential:
    """Training-time augmentation: flip, rotation, shift, shear and zoom of the face.

    ``strength`` scales every geometric range (flips stay): below 1 for fine-tuning on faces
    closer to the centred, upright ones we read at serving time. ``erase`` > 0 also blanks a
    random patch (2-33 % of the face, filled with noise) in some faces — random erasing, a
    regulariser against leaning on one part of the face (a hand, glasses, a shadow hide parts
    of real ones): each face is erased with a probability drawn from U(0, ``erase``), so 1.0
    erases about half of them.
    """
    s = strength
    erasing = (
        [layers.RandomErasing(erase, value_range=(0.0, 1.0), seed=seed + 5)] if erase > 0 else []
    )
    return keras.Sequential(
        [
            layers.RandomFlip("horizontal", seed=seed),
            layers.RandomRotation(0.05 * s, fill_mode="reflect", seed=seed + 1),
            layers.RandomTranslation(0.1 * s, 0.1 * s, fill_mode="reflect", seed=seed + 2),
            layers.RandomShear(
                x_factor=0.1 * s, y_factor=0.1 * s, fill_mode="reflect", seed=seed + 3
            ),
            layers.RandomZoom((-0.1 * s, 0.15 * s), fill_mode="reflect", seed=seed + 4),
            *erasing,
        ],
        name="augment",
    )
