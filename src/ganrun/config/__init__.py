"""Configuration: the typed schemas Hydra composes against, and the checks of a run config."""
