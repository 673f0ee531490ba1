"""The online learner: micro-batch updates from feedrank.examples, crash-safe."""
