"""Object detection: boxes and classes from the registry's pyramid (RetinaNet); see task.py."""
