"""Training: the config, the task (what to compute), the steps, the loop (how to run
it), optimizers and schedules, fine-tuning, checkpoints, distribution and TensorBoard."""
