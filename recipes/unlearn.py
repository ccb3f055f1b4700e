"""Unlearn part of a model's training data, then (optionally) compare with retraining from scratch.

    accelerate launch recipes/unlearn.py --config recipes/configs/digits_class.yaml
    accelerate launch recipes/unlearn.py --config recipes/configs/digits_random.yaml --method scrub --scrub_alpha 0.01
    python recipes/unlearn.py --method eupmu --help     # the options of that method's run

The logic lives in ``hf_unlearn.scripts.unlearn`` (also available as ``hf-unlearn unlearn``).
"""

from hf_unlearn.scripts.unlearn import main
from hf_unlearn.scripts.user_errors import run_reporting_user_errors

if __name__ == "__main__":
    run_reporting_user_errors(main)
