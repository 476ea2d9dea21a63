"""Data: the toy dataset, k-fold training datasets, and reading fold trees into arrays."""
