"""Model cards that say what was forgotten, how, and how close the result came to retraining."""
