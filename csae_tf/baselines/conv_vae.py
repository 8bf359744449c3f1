"""Seed 003's convolutional VAEs: simple (2-d latent), high-dimensional (16-d) and deep (KL weight 0.5)."""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from csae_tf.baselines.base import Baseline, from_unit, to_unit
from csae_tf.steps import apply_gradients, update_trackers

VARIANTS = {
    "simple": {"filters": [32, 64], "dense": [256, 64], "latent_dim": 2, "kl_weight": 1.0},
    "16d": {"filters": [32, 64], "dense": [256, 64], "latent_dim": 16, "kl_weight": 1.0},
    "deep": {"filters": [32, 128], "dense": [1024, 256, 32], "latent_dim": 2, "kl_weight": 0.5},
}


@keras.saving.register_keras_serializable(package="csae_tf")
class ConvVAE(Baseline, keras.Model):
    """Convolutional VAE of seed 003 (Yuhas): conv3x3 (valid, ReLU) + 2x2 max-pool per filter count,
    dense ReLU layers, then the mean and log-variance of z; the decoder mirrors it with dense layers
    and stride-2 transposed convolutions, ending in a sigmoid on the [0, 1] pixel scale.

    Loss: per-image sum of squared pixel errors (the seed's MSE on [0, 1] pixels, summed so that the
    KL term does not swamp it) + `kl_weight` * KL(q || N(0, I)). The seed trains with Adam 1e-4,
    batch 50, 10 epochs. It has no classifier; `encode` gives the posterior means for scatter plots.

    Args:
        image_shape: (H, W, C), sides divisible by 4 (the decoder doubles twice).
        filters: conv filter counts ([32, 64] simple / 16-d, [32, 128] deep).
        dense: dense widths ([256, 64] or [1024, 256, 32]).
        latent_dim: 2, 16 or 2.
        kl_weight: 1.0, or 0.5 for the deep variant.
        lr: Adam learning rate (the seed's 1e-4).
        seed: seeds the reparameterisation noise.

    Example:
        >>> vae = ConvVAE.variant("deep", (32, 32, 3))
    """

    classifies = False

    def __init__(self, image_shape, filters=(32, 64), dense=(256, 64), latent_dim: int = 2, kl_weight: float = 1.0,
                 lr: float = 1e-4, seed: int = 0, **kwargs):
        super().__init__(**kwargs)
        # === Config ===
        self.image_shape = tuple(image_shape)
        self.filters = list(filters)
        self.dense = list(dense)
        self.latent_dim = latent_dim
        self.kl_weight = float(kl_weight)
        self.lr = float(lr)
        self.seed = seed
        h, w, channels = self.image_shape
        if h % 4 or w % 4:
            raise ValueError(f"ConvVAE needs image sides divisible by 4 (got {h}x{w})")
        # === Layers ===
        inputs = keras.Input(self.image_shape, name="images")
        x = inputs
        for i, f in enumerate(self.filters):
            x = keras.layers.Conv2D(f, 3, padding="valid", activation="relu", name=f"conv{i + 1}")(x)
            x = keras.layers.MaxPooling2D(2, name=f"pool{i + 1}")(x)
        x = keras.layers.Flatten(name="flatten")(x)
        for i, units in enumerate(self.dense):
            x = keras.layers.Dense(units, activation="relu", name=f"dense{i + 1}")(x)
        self.encoder = keras.Model(inputs, [keras.layers.Dense(latent_dim, name="mean")(x),
                                            keras.layers.Dense(latent_dim, name="log_var")(x)], name="encoder")
        z_in = keras.Input((latent_dim,), name="latent")
        x = z_in
        for i, units in enumerate(reversed(self.dense)):
            x = keras.layers.Dense(units, activation="relu", name=f"dense{i + 1}")(x)
        x = keras.layers.Dense((h // 4) * (w // 4) * self.filters[-1], activation="relu", name="project")(x)
        x = keras.layers.Reshape((h // 4, w // 4, self.filters[-1]), name="reshape")(x)
        for i, f in enumerate(reversed(self.filters)):
            x = keras.layers.Conv2DTranspose(f, 3, strides=2, padding="same", activation="relu", name=f"up{i + 1}")(x)
        outputs = keras.layers.Conv2D(channels, 3, padding="same", activation="sigmoid", name="to_image")(x)
        self.decoder = keras.Model(z_in, outputs, name="decoder")
        self.seed_generator = keras.random.SeedGenerator(seed)
        # === Metrics ===
        self.trackers = {name: keras.metrics.Mean(name=name) for name in ("loss", "reconstruction", "kl")}
        self.built = True

    @classmethod
    def variant(cls, kind: str, image_shape, seed: int = 0, **kwargs) -> ConvVAE:
        """One of seed 003's three networks: "simple", "16d" or "deep"."""
        if kind not in VARIANTS:
            raise ValueError(f"unknown conv VAE variant {kind!r}; choose from {', '.join(VARIANTS)}")
        return cls(image_shape, seed=seed, name=kwargs.pop("name", f"conv_vae_{kind}"), **VARIANTS[kind], **kwargs)

    @property
    def metrics(self):
        return list(self.trackers.values())

    def _terms(self, target, z_mean, z_log_var, z):
        reconstruction = tf.reduce_sum(tf.square(self.decoder(z) - target), axis=[1, 2, 3])
        kl = -0.5 * tf.reduce_sum(1.0 + z_log_var - tf.square(z_mean) - tf.exp(z_log_var), axis=-1)
        return {"loss": reconstruction + self.kl_weight * kl, "reconstruction": reconstruction, "kl": kl}

    def call(self, images, training=False):
        return self.reconstruct(images)

    def train_step(self, data):
        target = to_unit(data[0])
        with tf.GradientTape() as tape:
            z_mean, z_log_var = self.encoder(target, training=True)
            eps = keras.random.normal(tf.shape(z_mean), seed=self.seed_generator)
            values = self._terms(target, z_mean, z_log_var, z_mean + tf.exp(0.5 * z_log_var) * eps)
            loss = tf.nn.compute_average_loss(values["loss"])
        apply_gradients(self, tape, loss)
        return update_trackers(self.trackers, values)

    def test_step(self, data):
        target = to_unit(data[0])
        z_mean, z_log_var = self.encoder(target, training=False)
        return update_trackers(self.trackers, self._terms(target, z_mean, z_log_var, z_mean))

    def default_optimizer(self):
        return keras.optimizers.Adam(self.lr)

    def encode(self, images):
        """Posterior means of z, (B, latent_dim)."""
        return self.encoder(to_unit(images), training=False)[0]

    def reconstruct(self, images, labels=None):
        return from_unit(self.decoder(self.encode(images)))

    def get_config(self):
        return {**super().get_config(), "image_shape": list(self.image_shape), "filters": self.filters,
                "dense": self.dense, "latent_dim": self.latent_dim, "kl_weight": self.kl_weight, "lr": self.lr,
                "seed": self.seed}


def latent_scatter(model: ConvVAE, images: np.ndarray, labels: np.ndarray, path, title: str = "") -> None:
    """Scatter plot of the 2-d posterior means coloured by class (seed 003's figures 2-4), saved as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if model.latent_dim != 2:
        raise ValueError(f"a scatter plot needs a 2-d latent space (this model has {model.latent_dim})")
    z = np.concatenate([model.encode(images[i : i + 500]).numpy() for i in range(0, len(images), 500)])
    fig, ax = plt.subplots(figsize=(6, 5))
    points = ax.scatter(z[:, 0], z[:, 1], c=labels, cmap="tab10", s=3, vmin=-0.5, vmax=9.5)
    fig.colorbar(points, ax=ax, ticks=range(10), label="class")
    ax.set_xlabel("z[0]")
    ax.set_ylabel("z[1]")
    ax.set_title(title or f"{model.name}: test-set latent means by class")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
