"""Step-level control of a run: the utility guard, the stop rules and the step size, read every few steps.

``controller.py`` decides (checks, rollbacks, stops); ``stop_rules.py`` resolves which rule a run uses;
``step_growth.py`` grows a stalled sample removal's step; ``state.py`` holds what the control is told and
what it reports, and the weight copies its rollbacks use. Nothing here imports the trainer.
"""
