"""Entry points behind ``recipes/`` and the ``hf-unlearn`` command."""
