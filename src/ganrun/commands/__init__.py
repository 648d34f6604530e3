"""The four commands, one Hydra entry point each: train, eval, sample, report."""
