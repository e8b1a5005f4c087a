"""Mixup for training batches: blend pairs of faces and their targets.

A regulariser against the overfitting that caps our emotion nets (training accuracy climbs to
~80 % on augmented faces while PublicTest stands still): each face is blended with another face
of the same batch, ``λ·a + (1-λ)·b``, and its target likewise, with ``λ ~ Beta(α, α)`` drawn per
face. ``λ`` is folded to ``max(λ, 1-λ)`` so each face stays the larger part of its own blend.
"""

from __future__ import annotations


def mix_batch(images, targets, alpha: float, seed: int):
    """Blend each face of a batch with the face at the mirrored batch position.

    ``images`` (N, H, W, C) and ``targets`` (N, K) are tensors; ``alpha`` is Beta's α (> 0).
    The batch is shuffled before it gets here, so the partner is a random face.
    """
    import tensorflow as tf

    if alpha <= 0:
        raise ValueError(f"mixup alpha must be positive, not {alpha}")
    count = tf.shape(images)[0]
    # Beta(α, α) as the ratio of two Gamma(α) draws.
    first = tf.random.gamma([count], alpha, seed=seed)
    second = tf.random.gamma([count], alpha, seed=seed + 1)
    share = first / tf.maximum(first + second, 1e-12)
    share = tf.maximum(share, 1.0 - share)
    partner_images = tf.reverse(images, axis=[0])
    partner_targets = tf.reverse(targets, axis=[0])
    image_share = tf.reshape(share, [-1, 1, 1, 1])
    target_share = tf.reshape(share, [-1, 1])
    mixed_images = image_share * images + (1.0 - image_share) * partner_images
    mixed_targets = target_share * targets + (1.0 - target_share) * partner_targets
    return mixed_images, mixed_targets
