"""Testing: weighted confusion matrices, ROC curves and score distributions of a fold's model."""
