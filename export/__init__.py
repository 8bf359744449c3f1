"""Export a trained CSAE for serving: ``python -m export.saved_model --run RUN_DIR --output EXPORT_BASE``."""

import csae_tf  # noqa: E402, F401  (before TensorFlow: csae_tf sets its oneDNN switch)
