"""The Trainer side: ``UnlearningTrainer``, ``UnlearningArguments`` and the parts the trainer is made of.

``trainer.py`` runs a request; ``arguments.py`` validates its settings; ``measurements.py`` reads the
accuracies the run is steered and judged by; ``publishing.py`` saves and pushes the result with its card;
``checkpoints.py`` makes a killed run resume exactly; ``engines.py`` decides what a distributed engine
allows; ``step_hooks.py`` wraps each optimizer step with the projection.
"""
