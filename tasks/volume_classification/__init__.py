"""Volume classification: CT/MRI volumes to classes with a 3D backbone; see task.py."""
