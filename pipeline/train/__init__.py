"""Training a network: the SGD loop, its learning-rate schedules, the device runtime, checkpoints,
and one tracked, resumable run (the train and pretrain stages)."""
