"""The model families (one module each; see ganrun.models.family)."""
