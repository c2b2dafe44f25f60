"""kernelevolve's engine: experiment config, search spaces, samplers, sweeps, evaluation, tracking."""
