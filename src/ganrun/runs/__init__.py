"""Run folders and what is in them: layout, checkpoints, evaluation records, sweeps."""
