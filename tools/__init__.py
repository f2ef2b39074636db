"""Build-time tools, not part of the runtime package: training the bundled model, its corpus, stand-in checkpoints."""
