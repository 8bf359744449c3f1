"""The CSAE model: encoder onto fixed PEDCC centroids, noisy decoder, three-loss train step.

`CSAE` is a `keras.Model` that owns its losses and metrics: `fit`, `evaluate`, KerasTuner and
`tf.distribute` strategies all drive it through the standard Keras API. Every loss is
averaged over the global batch, so the gradients are right under any number of replicas.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from csae_tf import losses
from csae_tf.layers import BN_MOMENTUM, DecodeBlock, LatentGaussians, NoiseInjection, PEDCCCentroids, ResidualBlock
from csae_tf.steps import apply_gradients, update_trackers

METRIC_NAMES = ("loss", "loss1", "loss2", "loss3", "accuracy")
_FULL_COVARIANCE_LIMIT = 1 << 24  # n * d * d values above which generation keeps a diagonal covariance


def conv_trunk(x, sync_bn: bool = False):
    """The CSAE-C trunk on a tensor: conv3x3(16, valid) -> BN -> ReLU -> 3 residual blocks (64 x H/8 x W/8)."""
    x = keras.layers.Conv2D(16, 3, padding="valid", use_bias=False, kernel_initializer="he_normal",
                            name="stem_conv")(x)
    x = keras.layers.BatchNormalization(synchronized=sync_bn, momentum=BN_MOMENTUM, name="stem_bn")(x)
    x = keras.layers.ReLU(name="stem_relu")(x)
    for i, filters in enumerate((32, 64, 64)):
        x = ResidualBlock(filters, strides=2, sync_bn=sync_bn, name=f"res{i + 1}")(x)
    return x


def build_encoder(arch: str, image_shape: tuple, latent_dim: int, sync_bn: bool = False) -> keras.Model:
    """CSAE-C: conv3x3(16, valid) -> BN -> ReLU -> 3 residual blocks -> dense d; CSAE-L: 784 -> 400 -> d."""
    inputs = keras.Input(image_shape, name="images")
    if arch == "conv":
        x = keras.layers.Flatten(name="flatten")(conv_trunk(inputs, sync_bn))
    else:
        x = keras.layers.Flatten(name="flatten")(inputs)
        x = keras.layers.Dense(400, activation="relu", name="hidden")(x)
    z = keras.layers.Dense(latent_dim, name="latent")(x)
    return keras.Model(inputs, z, name="encoder")


def build_decoder(arch: str, image_shape: tuple, latent_dim: int, sync_bn: bool = False) -> keras.Model:
    """CSAE-C: dense -> 64x(H/8)x(W/8) -> 3 decode blocks -> conv1x1; CSAE-L: d -> 400 -> pixels. No sigmoid."""
    h, w, channels = image_shape
    inputs = keras.Input((latent_dim,), name="latent")
    if arch == "conv":
        if h % 8 or w % 8:
            raise ValueError(f"the conv architecture needs image sides divisible by 8 (got {h}x{w})")
        x = keras.layers.Dense((h // 8) * (w // 8) * 64, name="project")(inputs)
        x = keras.layers.Reshape((h // 8, w // 8, 64), name="reshape")(x)
        for i, filters in enumerate((64, 32, 16)):
            x = DecodeBlock(filters, sync_bn=sync_bn, name=f"up{i + 1}")(x)
        x = keras.layers.Conv2D(channels, 1, name="to_image")(x)
    else:
        x = keras.layers.Dense(400, activation="relu", name="hidden")(inputs)
        x = keras.layers.Dense(h * w * channels, name="to_pixels")(x)
        x = keras.layers.Reshape(image_shape, name="to_image")(x)
    return keras.Model(inputs, x, name="decoder")


@keras.saving.register_keras_serializable(package="csae_tf")
class CSAE(keras.Model):
    """Classification Supervised Auto-Encoder on predefined evenly-distributed class centroids.

    Args:
        image_shape: (H, W, C) of the preprocessed images (scaled to [-1, 1]).
        num_classes: number of classes n (one PEDCC centroid each).
        arch: "conv" (CSAE-C) or "linear" (CSAE-L).
        latent_dim: d.
        centroids: (n, d) PEDCC centroids; None when weights are loaded afterwards.
        beta: noise level of the decoder input in training.
        lambda1, lambda2: weights of Loss2 (pixels) and Loss3 (edges).
        edge_loss: "laplacian", "sobel" or "none".
        weight_decay: coupled L2 decay added to the gradients of trainable weights.
        sync_bn: synchronised batch normalisation across replicas.
        seed: seeds the per-step noise.

    Example:
        >>> model = CSAE((32, 32, 1), 10, centroids=pedcc.generate(10, 40))
        >>> model.compile(keras.optimizers.SGD(0.1, momentum=0.9))
        >>> model.fit(train_ds, validation_data=test_ds)  # logs loss, loss1-3, accuracy

    Reference: Zhu & Zhang, "A Classification Supervised Auto-Encoder Based on Predefined
    Evenly-Distributed Class Centroids", 2019.
    """

    def __init__(self, image_shape, num_classes: int, arch: str = "conv", latent_dim: int = 40,
                 centroids: np.ndarray | None = None, beta: float = 0.04, lambda1: float = 1.0,
                 lambda2: float = 1.0, edge_loss: str = "laplacian", weight_decay: float = 0.0,
                 sync_bn: bool = False, seed: int = 0, **kwargs):
        super().__init__(**kwargs)
        # === Config ===
        self.image_shape = tuple(image_shape)
        self.num_classes = num_classes
        self.arch = arch
        self.latent_dim = latent_dim
        self.beta = float(beta)
        self.lambda1 = float(lambda1)
        self.lambda2 = float(lambda2)
        self.edge_loss = edge_loss
        self.weight_decay = float(weight_decay)
        self.sync_bn = sync_bn
        self.seed = seed
        self._edge_fn = losses.edge_loss(edge_loss)
        # === Layers ===
        self.encoder = build_encoder(arch, self.image_shape, latent_dim, sync_bn)
        self.decoder = build_decoder(arch, self.image_shape, latent_dim, sync_bn)
        self.pedcc = PEDCCCentroids(num_classes, latent_dim, centroids, name="pedcc")
        self.noise = NoiseInjection(beta, name="noise")
        self.latent_gaussians = LatentGaussians(
            num_classes, latent_dim, full_covariance=num_classes * latent_dim**2 <= _FULL_COVARIANCE_LIMIT,
            name="latent_gaussians")
        # === Metrics ===
        self.trackers = {name: keras.metrics.Mean(name=name) for name in METRIC_NAMES}
        self.build((None, *self.image_shape))

    def build(self, input_shape):
        self.pedcc.build((None, self.latent_dim))
        self.built = True

    @property
    def metrics(self):
        return list(self.trackers.values())

    # --- inference ---
    def call(self, images, training=False):
        z = self.encoder(images, training=training)
        return {"latent": z, "distances": self.pedcc(z),
                "reconstruction": self.decoder(self.noise(z, training=training), training=training)}

    def encode(self, images):
        """Latent codes z, shape (B, d)."""
        return self.encoder(images, training=False)

    def classify(self, images):
        """(labels, distances): the nearest centroid and the Euclidean distance to every centroid."""
        distances = tf.sqrt(tf.maximum(self.pedcc(self.encode(images)), 0.0))
        return tf.argmin(distances, axis=-1), distances

    def reconstruct(self, images):
        """Decoder output for the noise-free latent code, in the input's [-1, 1] scale."""
        return self.decoder(self.encode(images), training=False)

    def generate(self, class_ids, seed=(0, 0)):
        """Decode samples drawn from each class's latent Gaussian (fit them first: `fit_latent_gaussians`)."""
        seed = tf.cast(tf.convert_to_tensor(seed), tf.int32)
        seed = tf.stack([seed[0], seed[1]]) if seed.shape.rank == 1 else tf.stack([seed, 0])
        class_ids = tf.convert_to_tensor(class_ids, tf.int32)
        return self.decoder(self.latent_gaussians(class_ids, seed=seed), training=False)

    def fit_latent_gaussians(self, dataset) -> np.ndarray:
        """Fit each class's mean and covariance of z on `dataset` of (images, labels); return the counts."""
        n, d = self.num_classes, self.latent_dim
        full = self.latent_gaussians.full_covariance
        count, total = np.zeros(n), np.zeros((n, d))
        second = np.zeros((n, d, d) if full else (n, d))
        for images, labels in dataset:
            z = self.encode(images).numpy().astype(np.float64)
            onehot = np.eye(n)[np.asarray(labels)]
            count += onehot.sum(0)
            total += onehot.T @ z
            second += np.einsum("bn,bi,bj->nij", onehot, z, z) if full else onehot.T @ (z * z)
        safe = np.maximum(count, 1)
        means = total / safe[:, None]
        if full:
            cov = second / safe[:, None, None] - np.einsum("ni,nj->nij", means, means) + 1e-5 * np.eye(d)
            scale = np.linalg.cholesky(cov)
        else:
            scale = np.sqrt(np.maximum(second / safe[:, None] - means**2, 0.0))
        self.latent_gaussians.means.assign(means.astype("float32"))
        self.latent_gaussians.scale.assign(scale.astype("float32"))
        return count

    # --- training ---
    def _compute_losses(self, images, labels, z, reconstruction):
        targets = tf.gather(tf.convert_to_tensor(self.pedcc.centroids), labels)
        loss1 = losses.centroid_loss(z, targets)
        loss2 = losses.reconstruction_loss(reconstruction, images)
        loss3 = self._edge_fn(reconstruction, images) if self._edge_fn else tf.zeros_like(loss2)
        total = loss1 + self.lambda1 * loss2 + self.lambda2 * loss3
        correct = tf.cast(tf.equal(tf.argmin(self.pedcc(z), axis=-1, output_type=labels.dtype), labels), "float32")
        return {"loss": total, "loss1": loss1, "loss2": loss2, "loss3": loss3, "accuracy": correct}

    def _noise_seed(self):
        """A (2,) seed that differs per step and per replica: independent, reproducible noise."""
        replica = tf.distribute.get_replica_context()
        replica_id = replica.replica_id_in_sync_group if replica is not None else 0
        step = tf.cast(self.optimizer.iterations, tf.int32)
        return tf.stack([tf.constant(self.seed, tf.int32) + tf.cast(replica_id, tf.int32) * 1_000_003, step])

    def train_step(self, data):
        images, labels = data[:2]
        labels = tf.cast(labels, tf.int32)
        with tf.GradientTape() as tape:
            z = self.encoder(images, training=True)
            z_noisy = self.noise(z, training=True, seed=self._noise_seed())
            reconstruction = self.decoder(z_noisy, training=True)
            values = self._compute_losses(images, labels, z, reconstruction)
            # Divide by the *global* batch: the optimizer sums gradients over replicas.
            loss = tf.nn.compute_average_loss(values["loss"])
        apply_gradients(self, tape, loss, weight_decay=self.weight_decay)
        return update_trackers(self.trackers, values)

    def test_step(self, data):
        images, labels = data[:2]
        labels = tf.cast(labels, tf.int32)
        z = self.encoder(images, training=False)
        reconstruction = self.decoder(z, training=False)
        return update_trackers(self.trackers, self._compute_losses(images, labels, z, reconstruction))

    def get_config(self):
        return {
            **super().get_config(),
            "image_shape": list(self.image_shape), "num_classes": self.num_classes, "arch": self.arch,
            "latent_dim": self.latent_dim, "beta": self.beta, "lambda1": self.lambda1, "lambda2": self.lambda2,
            "edge_loss": self.edge_loss, "weight_decay": self.weight_decay, "sync_bn": self.sync_bn,
            "seed": self.seed,
        }


def nearest_centroid(latent: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """Labels of the nearest centroid for each row of `latent` (numpy, for checks outside a model)."""
    d2 = (latent**2).sum(1, keepdims=True) - 2 * latent @ centroids.T + (centroids**2).sum(1)[None]
    return d2.argmin(1)




def build_model(cfg, num_classes: int, image_shape: tuple, centroids: np.ndarray | None = None) -> CSAE:
    """The CSAE of a FitConfig; PEDCC centroids are generated from its seed unless given."""
    from csae_tf import pedcc

    if centroids is None:
        centroids = pedcc.generate(num_classes, cfg.latent_dim, method=cfg.pedcc_method, seed=cfg.seed)
    return CSAE(image_shape, num_classes, arch=cfg.arch, latent_dim=cfg.latent_dim, centroids=centroids,
                beta=cfg.beta, lambda1=cfg.lambda1, lambda2=cfg.lambda2, edge_loss=cfg.edge_loss,
                weight_decay=cfg.weight_decay, sync_bn=cfg.sync_bn, seed=cfg.seed, name="csae")
