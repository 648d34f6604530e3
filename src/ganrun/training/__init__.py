"""Training: setup from a validated config, the loop, its logs, signals, DDP and speed settings.

Within ganrun only ganrun.commands.train imports this package: sampling and scoring never load
it."""
