"""Medical segmentation (issue 5, in progress): U-Net over the registry's pyramid, NIfTI in and out.

So far: the metrics (:mod:`.metrics`). The task itself is not registered yet.
"""
