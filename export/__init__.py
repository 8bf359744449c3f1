"""Export a trained CSAE for serving: ``python -m export.saved_model --run RUN_DIR --output EXPORT_BASE``."""
