"""Medical segmentation: U-Net over the registry's pyramid, 2D images and NIfTI volumes.

:mod:`.metrics` (Dice, IoU, HD95), :mod:`.volumes` (NIfTI I/O, normalisation, slicing),
:mod:`.readers` (images/masks folders, MSD layout, phantoms), :mod:`.unet` (decoder, Dice + CE),
:mod:`.baselines` (Otsu, atlas), :mod:`.figures` and :mod:`.task` (registers the task).
"""

from tasks.medical_segmentation import task  # noqa: F401  (registers the task)
