"""What a researcher calls: the lesson's functions with their arguments checked, fit and its run,
the start at the mode, targets of one's own, numerical gradients, posterior estimates, files.
Imports the lesson (planarflow/*.py) and fused.py, never the lab."""
