// UnCLIPPipelines: orchestration of the models (prior, decoder).
