"""cnn-tasks shared machinery: registry, config, data, training, evaluation, reports, runs, CLI.

Data flows one way: command line -> configuration -> task -> data -> model -> training ->
evaluation -> run directory. Each concern lives in exactly one module of this package.
"""

__version__ = "0.1.0"
