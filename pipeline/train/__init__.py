"""Training a network: the SGD engine every kind of training runs on, its learning-rate schedules,
the device runtime, checkpoints, and one tracked, resumable run (the train and pretrain stages)."""
