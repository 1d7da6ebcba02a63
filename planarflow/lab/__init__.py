"""The machinery around the lesson and the library: the Figure 3 experiment, pictures, real
posteriors with exact answers, the benchmark, the exercises and the README refresher — each a
command of ``python -m planarflow``."""
