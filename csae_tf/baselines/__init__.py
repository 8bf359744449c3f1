"""The systems CSAE is compared with, one module each, all trainable on `csae_tf.data` batches.

- `basenet.BaseNet`: the CSAE-C trunk with a softmax head (paper §4.3).
- `encoder_only.EncoderOnly`: CSAE-C without decoder, Loss1 only (paper §4.3).
- `cvae.CVAE`: the paper's fully connected conditional VAE.
- `ddae.DDAE`: DropConnect stacked autoencoders + kernel ELM (seed 002); `kelm` holds the solver.
- `conv_vae.ConvVAE`: seed 003's three convolutional VAEs.
- `fsae.FSAE`: seed 004's functionally separate autoencoder.

Importing this package registers every class for `keras.models.load_model`.
"""

from csae_tf.baselines.base import Baseline
from csae_tf.baselines.basenet import BaseNet
from csae_tf.baselines.conv_vae import VARIANTS as CONV_VAE_VARIANTS
from csae_tf.baselines.conv_vae import ConvVAE
from csae_tf.baselines.cvae import CVAE
from csae_tf.baselines.ddae import DDAE
from csae_tf.baselines.encoder_only import EncoderOnly
from csae_tf.baselines.fsae import FSAE

__all__ = ["CONV_VAE_VARIANTS", "CVAE", "DDAE", "FSAE", "BaseNet", "Baseline", "ConvVAE", "EncoderOnly"]
