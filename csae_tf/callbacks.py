"""Keras callbacks of a CSAE run: epoch statistics and TensorBoard monitoring."""

from __future__ import annotations

import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from csae_tf import viz
from csae_tf.runs import encode


class EpochStats(keras.callbacks.Callback):
    """Adds the epoch's wall time and learning rate to the logs (so history.csv and TensorBoard get them).

    The learning rate is the schedule's value at the epoch's first step (`schedule(epoch * steps)`), also
    for an epoch resumed in its middle; without a schedule, the optimizer's rate when the epoch begins.
    """

    def __init__(self, schedule=None, steps_per_epoch: int | None = None):
        super().__init__()
        self.schedule, self.steps_per_epoch = schedule, steps_per_epoch

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.time()
        rate = (self.schedule(epoch * self.steps_per_epoch) if self.schedule is not None
                else self.model.optimizer.learning_rate)
        self._rate = float(keras.ops.convert_to_numpy(rate))

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["seconds"] = time.time() - self._start
            logs["learning_rate"] = self._rate


# --- TensorBoard monitoring: images, centroid geometry, latent projector, hparams ---
#
# The Keras `TensorBoard` callback already writes every value of `train_step`/`test_step` (loss,
# loss1-3, accuracy) and the learning rate into LOGDIR/train and LOGDIR/validation. The callbacks
# below add what the paper looks at (Fig. 4-9): they run at epoch ends, never inside a training step.

GAUSSIAN_LIMIT = 2000  # training images used to fit the per-class latent Gaussians for the generated grid
GEOMETRY_LIMIT = 1000  # validation images whose class-mean latent codes give the distance heat-map
PROJECTOR_LIMIT = 2500  # validation images shown in the Embedding Projector (a 50 x 50 sprite)
RECONSTRUCTION_COUNT = 10  # validation images in the reconstruction grid
SCORE_LIMIT = 500  # validation images whose open-set scores are histogrammed each epoch


def to_display(images, source_shape: tuple) -> np.ndarray:
    """Model-scale images ([-1, 1], padded) -> uint8 images of the dataset's own size."""
    from csae_tf.data import from_model_output

    return np.asarray(from_model_output(tf.convert_to_tensor(images), source_shape)).round().astype(np.uint8)


class ImageSummaries(keras.callbacks.Callback):
    """Every `every` epochs and after the last: reconstructions, generated samples and class-centre distances,
    to TensorBoard and PNG.

    Images go to the TensorBoard run `log_dir` (tags `reconstruction`, `generated`, `class_mean_distances`,
    `pedcc_distances`; the scalar `image_summary_seconds` is the time they took) and, overwritten each time
    (the latest epoch), to `figures_dir/reconstruction.png`, `generated.png` and `distances.png`
    (class-mean distances left, PEDCC centroid distances right).

    Args:
        log_dir: folder of the image summaries (a TensorBoard run of its own).
        figures_dir: folder of the PNG files.
        test_images, test_labels: model-scale test images; the first `reconstruction_count` are
            reconstructed, all of them give the class means of the latent codes.
        gaussian_data: a dataset of (images, labels) on which the per-class latent Gaussians are fit
            before sampling (a bounded, un-augmented subset of the training set).
        source_shape: (h, w, c) of the dataset's images, to crop the model's padding for display.
        classes: class ids to generate (one row each).
        every: epochs between image writes (0: never).
    """

    def __init__(self, log_dir, figures_dir, test_images, test_labels, gaussian_data, source_shape, classes,
                 every: int = 1, per_class: int = 10, reconstruction_count: int = RECONSTRUCTION_COUNT,
                 seed: int = 0):
        super().__init__()
        self.log_dir = str(log_dir)
        self.figures_dir = Path(figures_dir)
        self.test_images = np.asarray(test_images)
        self.test_labels = np.asarray(test_labels)
        self.gaussian_data = gaussian_data
        self.source_shape = tuple(source_shape)
        self.classes = [int(c) for c in classes]
        self.every = every
        self.per_class = per_class
        self.reconstruction_count = min(reconstruction_count, len(self.test_images))
        self.seed = seed
        self._writer = None
        self._pedcc_heatmap = None  # the centroids are constant: drawn once

    def on_train_begin(self, logs=None):
        self._writer = tf.summary.create_file_writer(self.log_dir)

    def on_epoch_end(self, epoch, logs=None):
        last = epoch + 1 == (self.params or {}).get("epochs")
        if self.every and ((epoch + 1) % self.every == 0 or last):
            self.write(epoch)

    def on_train_end(self, logs=None):
        if self._writer is not None:
            self._writer.close()

    def figures(self) -> dict[str, np.ndarray]:
        """The four images, uint8 (H, W, C)."""
        model = self.model
        x = self.test_images[: self.reconstruction_count]
        pairs = np.concatenate([x, np.asarray(model.reconstruct(x))])
        reconstruction = viz.image_grid(to_display(pairs, self.source_shape), 2, len(x))
        model.fit_latent_gaussians(self.gaussian_data)
        ids = np.repeat(np.asarray(self.classes, "int32"), self.per_class)
        samples = np.asarray(model.generate(ids, seed=(self.seed, 0)))
        generated = viz.image_grid(to_display(samples, self.source_shape), len(self.classes), self.per_class)
        latent = encode(model, self.test_images)
        means = viz.class_mean_distances(latent, self.test_labels, model.num_classes)
        if self._pedcc_heatmap is None:
            centroids = viz.pairwise_distances(np.asarray(model.pedcc.centroids))
            self._pedcc_heatmap = viz.heatmap(centroids, "distances between PEDCC centroids")
        return {
            "reconstruction": reconstruction,
            "generated": generated,
            "class_mean_distances": viz.heatmap(means, "distances between class means of z (test)"),
            "pedcc_distances": self._pedcc_heatmap,
        }

    def write(self, epoch: int) -> dict[str, np.ndarray]:
        start = time.time()
        images = self.figures()
        with self._writer.as_default(step=epoch):
            for tag, image in images.items():
                tf.summary.image(tag, image[None], max_outputs=1)
        viz.save_png(images["reconstruction"], self.figures_dir / "reconstruction.png")
        viz.save_png(images["generated"], self.figures_dir / "generated.png")
        left, right = images["class_mean_distances"], images["pedcc_distances"]
        height = max(left.shape[0], right.shape[0])
        pad = [np.full((height - im.shape[0], im.shape[1], 3), 255, np.uint8) for im in (left, right)]
        viz.save_png(np.concatenate([np.concatenate([left, pad[0]]), np.concatenate([right, pad[1]])], axis=1),
                     self.figures_dir / "distances.png")
        with self._writer.as_default(step=epoch):
            tf.summary.scalar("image_summary_seconds", time.time() - start)  # this callback's own cost
        self._writer.flush()
        return images


class LatentProjector(keras.callbacks.Callback):
    """At the end of training: the Embedding Projector over the latent codes of validation images and the centroids.

    Writes into `log_dir` a `tf.train.Checkpoint` of the codes (tensor `latent/.ATTRIBUTES/VARIABLE_VALUE`),
    `metadata.tsv` (label, class name, kind), `sprite.png` (each test image; each centroid's decoded image),
    `projector_config.pbtxt` and an event file (TensorBoard only lists folders that hold one).
    """

    def __init__(self, log_dir, images, labels, source_shape, class_names):
        super().__init__()
        self.log_dir = Path(log_dir)
        self.images = np.asarray(images)
        self.labels = np.asarray(labels)
        self.source_shape = tuple(source_shape)
        self.class_names = list(class_names)

    def on_train_end(self, logs=None):
        self.write()

    def write(self) -> Path:
        from tensorboard.plugins import projector

        model = self.model
        centroids = np.asarray(model.pedcc.centroids, np.float32)
        codes = np.concatenate([encode(model, self.images), centroids]).astype(np.float32)
        pictures = to_display(np.concatenate([self.images, np.asarray(model.decoder(centroids, training=False))]),
                              self.source_shape)
        labels = np.concatenate([self.labels, np.arange(len(centroids))]).astype(int)
        kinds = ["validation"] * len(self.images) + ["centroid"] * len(centroids)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log_dir / "metadata.tsv", "w") as f:
            f.write("label\tname\tkind\n")
            for label, kind in zip(labels, kinds):
                f.write(f"{label}\t{self.class_names[label] if label < len(self.class_names) else label}\t{kind}\n")
        side = int(np.ceil(np.sqrt(len(pictures))))
        viz.save_png(viz.image_grid(pictures, side, side, pad=0), self.log_dir / "sprite.png")
        checkpoint = tf.train.Checkpoint(latent=tf.Variable(codes))
        checkpoint.save(str(self.log_dir / "latent.ckpt"))
        config = projector.ProjectorConfig()
        embedding = config.embeddings.add()
        embedding.tensor_name = "latent/.ATTRIBUTES/VARIABLE_VALUE"
        embedding.metadata_path = "metadata.tsv"
        embedding.sprite.image_path = "sprite.png"
        embedding.sprite.single_image_dim.extend([self.source_shape[1], self.source_shape[0]])
        projector.visualize_embeddings(str(self.log_dir), config)
        with tf.summary.create_file_writer(str(self.log_dir)).as_default(step=0):
            tf.summary.text("projector", f"latent codes of {len(self.images)} test images and "
                                         f"{len(centroids)} PEDCC centroids ({codes.shape[1]} dimensions)")
        return self.log_dir


HPARAM_FIELDS = ("dataset", "arch", "latent_dim", "beta", "lambda1", "lambda2", "edge_loss", "optimizer", "lr",
                 "schedule", "batch_size", "epochs", "seed")
HPARAM_METRICS = ("val_accuracy", "val_loss", "val_loss1", "val_loss2", "val_loss3",
                  "accuracy", "loss", "loss1", "loss2", "loss3")


class HParamsSummary(keras.callbacks.Callback):
    """The run's hyperparameters and final metrics for the TensorBoard hparams plugin.

    The hparams session is the TensorBoard run `log_dir`; at the end of training the last epoch's
    metrics are written there as scalars `final/<name>` (`val_` = the validation data, here the test
    split), which the hparams table shows next to the hyperparameters. (A session cannot read the
    Keras callback's `train`/`validation` runs when TensorBoard is pointed at their parent folder.)
    """

    def __init__(self, log_dir, hparams: dict, trial_id: str | None = None):
        super().__init__()
        self.log_dir = str(log_dir)
        self.hparams = dict(hparams)
        self.trial_id = trial_id
        self._epoch = 0

    def on_train_begin(self, logs=None):
        from tensorboard.plugins.hparams import api as hp

        metrics = [hp.Metric(f"final/{name}", display_name=name[4:] + " (validation)" if name.startswith("val_")
                             else name + " (train)") for name in HPARAM_METRICS]
        with tf.summary.create_file_writer(self.log_dir).as_default():
            hp.hparams_config(hparams=[hp.HParam(k) for k in self.hparams], metrics=metrics)
            hp.hparams(self.hparams, trial_id=self.trial_id)

    def on_epoch_end(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_end(self, logs=None):
        if not logs:
            return
        with tf.summary.create_file_writer(self.log_dir).as_default(step=self._epoch):
            for name in HPARAM_METRICS:
                if name in logs:
                    tf.summary.scalar(f"final/{name}", float(logs[name]))


def monitoring_callbacks(cfg, info, shown, train, log_dir, figures_dir) -> list[keras.callbacks.Callback]:
    """The TensorBoard image, projector and hparams callbacks of a run (add them only where logs are written).

    `shown` (`data.Arrays`, the validation images) gives the reconstructions, class-mean distances and the
    projector; the per-class Gaussians behind the generated grid are refit at each image epoch on the
    first GAUSSIAN_LIMIT images of `train` (un-augmented). The test split is never read here.
    """
    from csae_tf import data
    from csae_tf.ood import ScoreHistogram

    log_dir = Path(log_dir)
    limit = max(GEOMETRY_LIMIT, PROJECTOR_LIMIT)
    images = np.asarray(data.to_model_input(shown.images[:limit], info.image_shape))
    labels = shown.labels[:limit]
    hparams = {k: getattr(cfg, k) for k in HPARAM_FIELDS}
    callbacks = [
        HParamsSummary(log_dir / "hparams", hparams, trial_id=Path(cfg.output).name),
        LatentProjector(log_dir / "projector", images[:PROJECTOR_LIMIT], labels[:PROJECTOR_LIMIT],
                        info.source_shape, info.class_names),
        # the open-set scores of known images, epoch by epoch: how far the separation has grown
        ScoreHistogram(log_dir / "ood", shown.images[:SCORE_LIMIT], classes=cfg.classes),
    ]
    if cfg.image_every:
        callbacks.insert(0, ImageSummaries(
            log_dir / "images", figures_dir, images[:GEOMETRY_LIMIT], labels[:GEOMETRY_LIMIT],
            data.evaluation_pipeline(train.take(slice(0, GAUSSIAN_LIMIT)), info, 512), info.source_shape,
            classes=cfg.classes or range(info.num_classes), every=cfg.image_every, seed=cfg.seed))
    return callbacks
