"""The machinery around the lesson: checked public functions, files, training runs, pictures,
the experiment runner, the benchmark, the exercises and the README refresher. Nothing in the
lesson files (planarflow/*.py) imports from here."""
