"""The names a label column may have: one tuple for the core, the data helpers and the methods."""

LABEL_KEYS = ("labels", "label", "label_ids")
