"""Models as data and as C++: one neutral description (:mod:`spec`), written as JSON or as a
self-contained C++17 header (:mod:`cpp`), for one model or for the models of all folds."""
