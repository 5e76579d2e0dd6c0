"""Task packages, one per task; each is found through the ``cnn_tasks.tasks`` entry points
(setup.cfg) and registers itself with :data:`pipelines.tasks.TASKS` when imported."""
