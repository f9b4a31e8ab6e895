"""The sanity trainers, one module a task over a shared loop (loop.py):

    classification  one class an image                      classification.py
    localisation    one object an image: its class and box  localisation.py
    detection       every object: CenterNet-style heads     detection.py
    segmentation    a class for every pixel                 segmentation.py

`augpipe.training.run.train` is the entry point; it picks the task from the dataset (or --task),
plans and refuses before any data is read, then hands the task to the loop.
"""

from __future__ import annotations

import importlib

MODULES = {"classification": "classification", "localisation": "localisation", "detection": "detection",
           "segmentation": "segmentation"}
CLASSES = {"classification": "Classification", "localisation": "Localisation", "detection": "Detection",
           "segmentation": "Segmentation"}


def task_module(name: str):
    return importlib.import_module(f"augpipe.training.{MODULES[name]}")


def task_class(name: str):
    return getattr(task_module(name), CLASSES[name])
