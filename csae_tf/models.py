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
from csae_tf.config import FitConfig
from csae_tf.layers import (
    Augmentation,
    BatchNormalization,
    DecodeBlock,
    LatentGaussians,
    NoiseInjection,
    PEDCCCentroids,
    ResidualBlock,
    kernel_init,
)
from csae_tf.steps import OptimizerBuiltBeforeFit, apply_gradients, scale_loss, update_trackers

METRIC_NAMES = ("loss", "loss1", "loss2", "loss3", "accuracy")
DIVERGED = "the training loss is not finite"  # the check_numerics message the trainer turns into an error
_DEFAULTS = FitConfig()
_FULL_COVARIANCE_LIMIT = 1 << 24  # n * d * d values above which generation keeps a diagonal covariance


def conv_trunk(x, sync_bn: bool = False):
    """The CSAE-C trunk on a tensor: conv3x3(16, valid) -> BN -> ReLU -> 3 residual blocks (64 x H/8 x W/8)."""
    x = keras.layers.Conv2D(16, 3, padding="valid", use_bias=False, kernel_initializer=kernel_init(),
                            name="stem_conv")(x)
    x = BatchNormalization(synchronized=sync_bn, name="stem_bn")(x)
    x = keras.layers.ReLU(name="stem_relu")(x)
    for i, filters in enumerate((32, 64, 64)):
        x = ResidualBlock(filters, strides=2, sync_bn=sync_bn, name=f"res{i + 1}")(x)
    return x


def build_encoder(arch: str = _DEFAULTS.arch, image_shape: tuple = (32, 32, 1), latent_dim: int = _DEFAULTS.latent_dim,
                  sync_bn: bool = False, linear_input: str = _DEFAULTS.linear_input) -> keras.Model:
    """CSAE-C: conv3x3(16, valid) -> BN -> ReLU -> 3 residual blocks -> dense d; CSAE-L: 784 -> 400 -> d.

    CSAE-L with `linear_input="unit"` first maps the [-1, 1] pixels to [0, 1] (a `Rescaling` layer). The
    latent layer computes in float32 under a mixed-precision policy: codes and centroids stay float32.
    """
    inputs = keras.Input(image_shape, name="images")
    if arch == "conv":
        x = keras.layers.Flatten(name="flatten")(conv_trunk(inputs, sync_bn))
    else:
        x = keras.layers.Flatten(name="flatten")(inputs)
        if linear_input == "unit":
            x = keras.layers.Rescaling(0.5, offset=0.5, name="to_unit_range")(x)
        x = keras.layers.Dense(400, activation="relu", name="hidden", kernel_initializer=kernel_init())(x)
    z = keras.layers.Dense(latent_dim, name="latent", dtype="float32", kernel_initializer=kernel_init())(x)
    return keras.Model(inputs, z, name="encoder")


def build_decoder(arch: str = _DEFAULTS.arch, image_shape: tuple = (32, 32, 1), latent_dim: int = _DEFAULTS.latent_dim,
                  sync_bn: bool = False) -> keras.Model:
    """CSAE-C: dense -> 64x(H/8)x(W/8) -> 3 decode blocks -> conv1x1; CSAE-L: d -> 400 -> pixels. No sigmoid."""
    h, w, channels = image_shape
    inputs = keras.Input((latent_dim,), name="latent")
    if arch == "conv":
        if h % 8 or w % 8:
            raise ValueError(f"the conv architecture needs image sides divisible by 8 (got {h}x{w})")
        x = keras.layers.Dense((h // 8) * (w // 8) * 64, name="project", kernel_initializer=kernel_init())(inputs)
        x = keras.layers.Reshape((h // 8, w // 8, 64), name="reshape")(x)
        for i, filters in enumerate((64, 32, 16)):
            x = DecodeBlock(filters, sync_bn=sync_bn, name=f"up{i + 1}")(x)
        x = keras.layers.Conv2D(channels, 1, name="to_image", dtype="float32", kernel_initializer=kernel_init())(x)
    else:
        x = keras.layers.Dense(400, activation="relu", name="hidden", kernel_initializer=kernel_init())(inputs)
        x = keras.layers.Dense(h * w * channels, name="to_pixels", dtype="float32", kernel_initializer=kernel_init())(x)
        x = keras.layers.Reshape(image_shape, name="to_image")(x)
    return keras.Model(inputs, x, name="decoder")


@keras.saving.register_keras_serializable(package="csae_tf")
class CSAE(OptimizerBuiltBeforeFit, keras.Model):
    """Classification Supervised Auto-Encoder on predefined evenly-distributed class centroids.

    Takes its parts like keras-io's `VAE(encoder, decoder)`: any encoder from images to (batch, d)
    codes, any decoder from codes back to images, and the fixed (n, d) PEDCC centroids. The loss
    weights default to `FitConfig`'s, the one set of defaults of the project.

    Args:
        encoder: `keras.Model` from preprocessed images (B, H, W, C) in [-1, 1] to latent codes (B, d).
        decoder: `keras.Model` from latent codes (B, d) to images (B, H, W, C); no output activation.
        centroids: (n, d) PEDCC centroids (`csae_tf.generate_centroids`), or a `PEDCCCentroids` layer.
        beta: noise level of the decoder input in training.
        lambda1, lambda2: weights of Loss2 (pixels) and Loss3 (edges).
        edge_loss: "laplacian" (paper), "sobel" (the authors' batch-level edge energy),
            "sobel-per-example" or "none" (Loss3 is then the Laplacian loss, reported but not trained on).
        weight_decay: coupled L2 decay added to the gradients of trainable weights.
        augment: random +-2 pixel shifts of training images, inside the train step.
        flip: random horizontal flips of training images, inside the train step.
        seed: seeds the per-step noise and augmentation.
        arch: which builder made the networks ("conv", "linear"), or "custom"; it says how source
            images are padded to the encoder's input.

    Example:
        >>> import csae_tf, keras
        >>> from csae_tf.models import CSAE, build_decoder, build_encoder
        >>> encoder = build_encoder("conv", (32, 32, 1), 40)
        >>> decoder = build_decoder("conv", (32, 32, 1), 40)
        >>> model = CSAE(encoder, decoder, csae_tf.generate_centroids(10, 40))
        >>> model.compile(keras.optimizers.SGD(0.05, momentum=0.9))
        >>> model.fit(train_ds, validation_data=val_ds)  # (images, labels) batches; logs loss, loss1-3, accuracy

    Reference: Zhu & Zhang, "A Classification Supervised Auto-Encoder Based on Predefined
    Evenly-Distributed Class Centroids", 2019.
    """

    def __init__(self, encoder: keras.Model, decoder: keras.Model, centroids, *, beta: float = _DEFAULTS.beta,
                 lambda1: float = _DEFAULTS.lambda1, lambda2: float = _DEFAULTS.lambda2,
                 edge_loss: str = _DEFAULTS.edge_loss, weight_decay: float = _DEFAULTS.weight_decay,
                 augment: bool = _DEFAULTS.augment, flip: bool = _DEFAULTS.flip, seed: int = _DEFAULTS.seed,
                 arch: str = "custom", **kwargs):
        super().__init__(**kwargs)
        # === Layers ===
        self.encoder = encoder
        self.decoder = decoder
        if isinstance(centroids, PEDCCCentroids):
            self.pedcc = centroids
        else:
            centroids = np.asarray(centroids, "float32")
            self.pedcc = PEDCCCentroids(centroids.shape[0], centroids.shape[1], centroids, name="pedcc")
        self.noise = NoiseInjection(beta, name="noise")
        self.augmentation = Augmentation(2 if augment else 0, flip, name="augmentation") if augment or flip else None
        n, d = self.pedcc.num_classes, self.pedcc.latent_dim
        self.latent_gaussians = LatentGaussians(n, d, full_covariance=n * d * d <= _FULL_COVARIANCE_LIMIT,
                                                name="latent_gaussians")
        # === Config ===
        self.image_shape = tuple(encoder.input_shape[1:])
        self.num_classes = n
        self.latent_dim = d
        self.beta = float(beta)
        self.lambda1 = float(lambda1)
        self.lambda2 = float(lambda2)
        self.edge_loss = edge_loss
        self.weight_decay = float(weight_decay)
        self.augment = bool(augment)
        self.flip = bool(flip)
        self.seed = int(seed)
        self.arch = arch
        self._edge_fn = losses.edge_loss(edge_loss)
        if tuple(encoder.output_shape[1:]) != (d,):
            raise ValueError(f"the encoder gives codes of shape {encoder.output_shape[1:]}, the centroids need ({d},)")
        # === Metrics ===
        self.trackers = {name: keras.metrics.Mean(name=name) for name in METRIC_NAMES}
        self.build((None, *self.image_shape))

    def build(self, input_shape):
        self.pedcc.build((None, self.latent_dim))
        # Every layer built here: otherwise Keras' symbolic pre-build under a strategy (fit, evaluate) runs
        # the model on a MEAN-reduced (float) copy of a uint8 batch, which `preprocess` passes on unpadded.
        for layer, shape in ((self.noise, (None, self.latent_dim)), (self.latent_gaussians, (None,)),
                             (self.augmentation, (None, *self.image_shape))):
            if layer is not None and not layer.built:
                layer.build(shape)
        self.built = True

    @property
    def metrics(self):
        return list(self.trackers.values())

    # --- inference ---
    def call(self, images, training=False):
        z = self.encoder(self.preprocess(images), training=training)
        return {"latent": z, "distances": self.pedcc(z),
                "reconstruction": self.decoder(self.noise(z, training=training), training=training)}

    def preprocess(self, images):
        """Images of the dataset (uint8 0-255, or its own smaller size) -> the encoder's input in [-1, 1].

        Float images of the encoder's input size pass as they are (already preprocessed). The trainer's
        pipelines send uint8 batches: a quarter of the bytes to the device, and the padding and scaling
        run there, inside the step.
        """
        if images.dtype != tf.uint8 and tuple(images.shape[1:3]) == tuple(self.image_shape[:2]):
            return images
        from csae_tf.data import to_model_input

        return to_model_input(images, self.image_shape)

    def encode(self, images):
        """Latent codes z, shape (B, d), float32."""
        return tf.cast(self.encoder(self.preprocess(images), training=False), tf.float32)

    def classify(self, images):
        """(labels, distances): the nearest centroid and the Euclidean distance to every centroid (uint8 or
        preprocessed images)."""
        distances = tf.sqrt(tf.maximum(self.pedcc(self.encode(images)), 0.0))
        return tf.argmin(distances, axis=-1), distances

    def reconstruct(self, images):
        """Decoder output for the noise-free latent code, in the model's [-1, 1] scale (padded), float32."""
        return tf.cast(self.decoder(self.encode(images), training=False), tf.float32)

    def generate(self, class_ids, seed=(0, 0)):
        """Decode samples drawn from each class's latent Gaussian (fit them first: `fit_latent_gaussians`)."""
        seed = tf.cast(tf.convert_to_tensor(seed), tf.int32)
        seed = tf.stack([seed[0], seed[1]]) if seed.shape.rank == 1 else tf.stack([seed, 0])
        class_ids = tf.convert_to_tensor(class_ids, tf.int32)
        return tf.cast(self.decoder(self.latent_gaussians(class_ids, seed=seed), training=False), tf.float32)

    def latent_codes(self, dataset) -> tuple[np.ndarray, np.ndarray]:
        """(z, labels) of every batch of a dataset of (images, labels), the encoder compiled once."""
        encode = tf.function(self.encode, reduce_retracing=True, jit_compile=self.jit_compile is True)
        codes, labels = [], []
        for images, y in dataset:
            codes.append(encode(images).numpy())
            labels.append(np.asarray(y))
        if not codes:
            return np.zeros((0, self.latent_dim), np.float32), np.zeros(0, np.int32)
        return np.concatenate(codes), np.concatenate(labels)

    def fit_latent_gaussians(self, dataset) -> np.ndarray:
        """Fit each class's mean and covariance of z on `dataset` of (images, labels); return the counts."""
        n, d = self.num_classes, self.latent_dim
        full = self.latent_gaussians.full_covariance
        z, labels = self.latent_codes(dataset)
        z = z.astype(np.float64)
        count = np.bincount(labels, minlength=n)[:n].astype(np.float64)
        means, scale = np.zeros((n, d)), np.zeros((n, d, d) if full else (n, d))
        for c in np.flatnonzero(count):
            zc = z[labels == c]
            means[c] = zc.mean(axis=0)
            if full:
                cov = zc.T @ zc / len(zc) - np.outer(means[c], means[c]) + 1e-5 * np.eye(d)
                scale[c] = np.linalg.cholesky(cov)
            else:
                scale[c] = np.sqrt(np.maximum((zc * zc).mean(axis=0) - means[c] ** 2, 0.0))
        if full:  # classes without images keep a valid (identity-scaled) factor, as before
            for c in np.flatnonzero(count == 0):
                scale[c] = np.sqrt(1e-5) * np.eye(d)
        self.latent_gaussians.means.assign(means.astype("float32"))
        self.latent_gaussians.scale.assign(scale.astype("float32"))
        return count

    # --- training ---
    def compute_losses(self, images, labels, z, reconstruction) -> dict:
        """Per-example Loss1, Loss2, Loss3, their weighted sum and correctness, all float32."""
        z = tf.cast(z, tf.float32)
        reconstruction = tf.cast(reconstruction, tf.float32)
        images = tf.cast(images, tf.float32)
        targets = tf.gather(tf.convert_to_tensor(self.pedcc.centroids), labels)
        loss1 = losses.centroid_loss(z, targets)
        loss2 = losses.reconstruction_loss(reconstruction, images)
        # without an edge loss, Loss3 is still measured as the Laplacian one (as the paper's Table 5 does), not trained
        loss3 = (self._edge_fn or losses.laplacian_loss)(reconstruction, images)
        total = loss1 + self.lambda1 * loss2 + (self.lambda2 * loss3 if self._edge_fn else 0.0)
        correct = tf.cast(tf.equal(tf.argmin(self.pedcc(z), axis=-1, output_type=labels.dtype), labels), "float32")
        return {"loss": total, "loss1": loss1, "loss2": loss2, "loss3": loss3, "accuracy": correct}

    def _step_seed(self, salt: int):
        """A (2,) seed that differs per step, per replica and per use: independent, reproducible draws."""
        replica = tf.distribute.get_replica_context()
        replica_id = replica.replica_id_in_sync_group if replica is not None else 0
        step = tf.cast(self.optimizer.iterations, tf.int32)
        offset = tf.cast(replica_id, tf.int32) * 1_000_003 + salt
        return tf.stack([tf.constant(self.seed, tf.int32) + offset, step])

    def train_step(self, data):
        images, labels = data[:2]
        images, labels = self.preprocess(images), tf.cast(labels, tf.int32)
        if self.augmentation is not None:
            images = self.augmentation(images, seed=self._step_seed(7))
        with tf.GradientTape() as tape:
            z = self.encoder(images, training=True)
            z_noisy = self.noise(z, training=True, seed=self._step_seed(0))
            reconstruction = self.decoder(z_noisy, training=True)
            values = self.compute_losses(images, labels, z, reconstruction)
            # Divide by the *global* batch: the optimizer sums gradients over replicas.
            loss = tf.nn.compute_average_loss(values["loss"])
            loss = scale_loss(self, tf.debugging.check_numerics(loss, DIVERGED))
        apply_gradients(self, tape, loss, weight_decay=self.weight_decay)
        return update_trackers(self.trackers, values)

    def test_step(self, data):
        images, labels = data[:2]
        images, labels = self.preprocess(images), tf.cast(labels, tf.int32)
        z = self.encoder(images, training=False)
        reconstruction = self.decoder(z, training=False)
        return update_trackers(self.trackers, self.compute_losses(images, labels, z, reconstruction))

    def get_config(self):
        return {
            **super().get_config(),
            "encoder": keras.saving.serialize_keras_object(self.encoder),
            "decoder": keras.saving.serialize_keras_object(self.decoder),
            "centroids": keras.saving.serialize_keras_object(self.pedcc),
            "beta": self.beta, "lambda1": self.lambda1, "lambda2": self.lambda2, "edge_loss": self.edge_loss,
            "weight_decay": self.weight_decay, "augment": self.augment, "flip": self.flip, "seed": self.seed,
            "arch": self.arch,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        if "encoder" not in config:  # saved before the model took its parts (csae-tf 0.1)
            return _from_legacy_config(cls, config)
        for key in ("encoder", "decoder", "centroids"):
            config[key] = keras.saving.deserialize_keras_object(config[key])
        return cls(**config)


def _from_legacy_config(cls, config: dict) -> CSAE:
    """A CSAE from the 0.1 config (image_shape, num_classes, arch, ...): the same networks, the same weight names."""
    shape, n, arch = tuple(config.pop("image_shape")), config.pop("num_classes"), config.pop("arch")
    d, sync_bn = config.pop("latent_dim"), config.pop("sync_bn", False)
    return cls(build_encoder(arch, shape, d, sync_bn), build_decoder(arch, shape, d, sync_bn),
               PEDCCCentroids(n, d, name="pedcc"), arch=arch, **config)


def nearest_centroid(latent: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """Labels of the nearest centroid for each row of `latent` (numpy, for checks outside a model)."""
    d2 = (latent**2).sum(1, keepdims=True) - 2 * latent @ centroids.T + (centroids**2).sum(1)[None]
    return d2.argmin(1)


def build_model(cfg: FitConfig, num_classes: int, image_shape: tuple, centroids: np.ndarray | None = None) -> CSAE:
    """The CSAE of a FitConfig (the paper's networks); PEDCC centroids are generated from its seed unless given."""
    from csae_tf import pedcc

    if centroids is None:
        centroids = pedcc.generate(num_classes, cfg.latent_dim, method=cfg.pedcc_method, seed=cfg.seed)
    image_shape = tuple(image_shape)
    return CSAE(build_encoder(cfg.arch, image_shape, cfg.latent_dim, cfg.sync_bn, cfg.linear_input),
                build_decoder(cfg.arch, image_shape, cfg.latent_dim, cfg.sync_bn), centroids,
                beta=cfg.beta, lambda1=cfg.lambda1, lambda2=cfg.lambda2, edge_loss=cfg.edge_loss,
                weight_decay=cfg.weight_decay, augment=cfg.augment, flip=cfg.flip, seed=cfg.seed, arch=cfg.arch,
                name="csae")
