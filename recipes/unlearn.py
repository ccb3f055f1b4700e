"""Unlearn part of a model's training data, then (optionally) compare with retraining from scratch.

    accelerate launch recipes/unlearn.py --config recipes/configs/digits_pgu.yaml
    accelerate launch recipes/unlearn.py --config recipes/configs/digits_pgu.yaml --forget_class 7
    python recipes/unlearn.py --help

The logic lives in ``hf_unlearn.scripts.unlearn`` (also available as ``hf-unlearn unlearn``).
"""

from hf_unlearn.scripts.unlearn import main

if __name__ == "__main__":
    main()
