"""Medical segmentation (issue 5, in progress): U-Net over the registry's pyramid, NIfTI in and out.

Written and tested so far: :mod:`.metrics` (Dice, IoU, HD95 with the empty-structure
conventions), :mod:`.volumes` (NIfTI I/O, per-volume normalisation, slicing), :mod:`.readers`
(images/masks folders, MSD layout, phantoms), :mod:`.unet` (decoder, Dice + cross-entropy) and
:mod:`.baselines` (Otsu, probabilistic atlas). The task is not registered yet: the next step is
``task.py`` (slices per case, volume reassembly, tiled inference, report) and shipping a
hippocampus subset in ``data/``.
"""
