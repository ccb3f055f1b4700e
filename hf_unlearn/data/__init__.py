"""Data the library needs: embedded datasets, forget-set selection, two-stream batches."""
