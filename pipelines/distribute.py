"""Devices and workers: one tf.distribute strategy, chosen once, before any TensorFlow op.

``--strategy``: ``default`` (one device), ``mirrored`` (every local GPU, or every logical CPU
device when there is no GPU), ``multi-worker`` (``MultiWorkerMirroredStrategy`` over the
cluster that ``TF_CONFIG`` names), ``auto`` (multi-worker when ``TF_CONFIG`` names more than one
worker, mirrored with more than one local GPU, else default). ``--batch-size`` is the global
batch: each of the N replicas takes batch/N per step, and the learning rate is scaled only
when ``lr_scaling=linear`` asks for it.

Only the chief writes the run directory. Every other worker trains into a temporary folder
(its own backups and checkpoints, as tf.distribute's pattern has it) and deletes it at the end.
The workers agree on the chief's run id through one collective all-reduce.

Keras 3.15's ``fit`` does not run under ``MultiWorkerMirroredStrategy`` as it is
(keras-team/keras#20585): it reduces a nested data batch with ``strategy.reduce`` (which takes
no nests) and each step's scalar metrics with ``axis=0``. Under that strategy
:func:`fitting_model` gives ``fit`` a twin of the model, built outside the strategy's scope (so
Keras skips that first reduce), whose steps return metrics with a batch axis, and :func:`detach`
gives the chief a twin that predicts and saves without waiting on the other workers. Both share
the model's layers and variables; only public Keras API is used. ``MirroredStrategy`` on one
machine needs neither.
"""

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from pipelines.errors import UserError

STRATEGIES = ("auto", "default", "mirrored", "multi-worker")
TASK_TYPES = ("chief", "worker")


@dataclass
class Cluster:
    """This process's place in the cluster ``TF_CONFIG`` describes."""

    addresses: dict  # {"chief": [...], "worker": [...]}
    task_type: str
    index: int

    @property
    def size(self):
        return sum(len(v) for v in self.addresses.values())

    @property
    def is_chief(self):
        """The chief writes the run: the "chief" task, or worker 0 where there is none."""
        if "chief" in self.addresses:
            return self.task_type == "chief"
        return self.index == 0


@dataclass
class Placement:
    """The strategy a run trains under, and who this process is in it."""

    strategy: object
    name: str
    replicas: int = 1
    cluster: Cluster = None

    @property
    def workers(self):
        return self.cluster.size if self.cluster else 1

    @property
    def is_chief(self):
        return self.cluster is None or self.cluster.is_chief

    @property
    def distributed(self):
        return self.name != "default"

    @property
    def multi_worker(self):
        return self.name == "multi-worker"

    def describe(self, batch_size, lr_scaling):
        """What config.json records: replicas, workers, global and per-replica batch, scaling."""
        return {"strategy": self.name, "replicas": self.replicas, "workers": self.workers,
                "global_batch_size": batch_size,
                "per_replica_batch_size": batch_size / self.replicas,
                "learning_rate_scaling": lr_scaling,
                "learning_rate_factor": self.lr_factor(lr_scaling)}

    def lr_factor(self, lr_scaling):
        return float(self.replicas) if lr_scaling == "linear" else 1.0


def read_tf_config(text):
    """Validate ``TF_CONFIG`` (JSON: a cluster of chief/worker address lists and this task's
    type and index); every mistake is one line naming what is wrong."""
    example = '{"cluster": {"worker": ["host1:port", "host2:port"]}, "task": {"type": "worker", "index": 0}}'
    try:
        document = json.loads(text)
    except json.JSONDecodeError as error:
        raise UserError(f"TF_CONFIG: not valid JSON ({error.msg} at character {error.pos})") from None
    if not isinstance(document, dict) or not isinstance(document.get("cluster"), dict) \
            or not isinstance(document.get("task"), dict):
        raise UserError(f"TF_CONFIG: needs a 'cluster' and a 'task' object, e.g. {example}")
    addresses = document["cluster"]
    for kind, listed in addresses.items():
        if kind not in TASK_TYPES:
            raise UserError(f"TF_CONFIG: cluster job '{kind}' is not supported; MultiWorkerMirrored"
                            f"Strategy uses {' and '.join(TASK_TYPES)}")
        if not isinstance(listed, list) or not listed or \
                not all(isinstance(a, str) and ":" in a for a in listed):
            raise UserError(f"TF_CONFIG: cluster '{kind}' must be a list of 'host:port' addresses")
    if len(addresses.get("chief", [])) > 1:
        raise UserError("TF_CONFIG: a cluster has at most one chief")
    task_type, index = document["task"].get("type"), document["task"].get("index", 0)
    if task_type not in addresses:
        raise UserError(f"TF_CONFIG: task type {task_type!r} is not in the cluster "
                        f"({', '.join(addresses) or 'empty'})")
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < len(addresses[task_type]):
        raise UserError(f"TF_CONFIG: task index {index!r} is out of range; cluster '{task_type}' "
                        f"has {len(addresses[task_type])} address(es)")
    return Cluster(addresses, task_type, index)


def setup(name, environ=None):
    """Create the strategy ``name`` asks for. Call it before any other TensorFlow op: collective
    ops must be configured at program start-up."""
    import tensorflow as tf

    environ = os.environ if environ is None else environ
    if name not in STRATEGIES:
        raise UserError(f"--strategy {name}: choose one of {', '.join(STRATEGIES)}")
    raw = environ.get("TF_CONFIG", "").strip()
    cluster = read_tf_config(raw) if raw and name in ("auto", "multi-worker") else None
    if name == "multi-worker" and cluster is None:
        raise UserError("--strategy multi-worker: TF_CONFIG is not set; give every worker a "
                        "TF_CONFIG naming the cluster and its own place in it (docs/scaling.md)")
    if name == "auto":
        if cluster is not None and cluster.size > 1:
            name = "multi-worker"
        elif len(tf.config.list_physical_devices("GPU")) > 1:
            name = "mirrored"
        else:
            return Placement(tf.distribute.get_strategy(), "default")
    if name == "default":
        return Placement(tf.distribute.get_strategy(), "default")
    if name == "mirrored":
        strategy = tf.distribute.MirroredStrategy(devices=_local_devices(tf))
        return Placement(strategy, name, strategy.num_replicas_in_sync)
    resolver = tf.distribute.cluster_resolver.SimpleClusterResolver(
        tf.train.ClusterSpec(cluster.addresses), task_type=cluster.task_type, task_id=cluster.index,
        rpc_layer="grpc")
    strategy = tf.distribute.MultiWorkerMirroredStrategy(cluster_resolver=resolver)
    return Placement(strategy, name, strategy.num_replicas_in_sync, cluster)


def _local_devices(tf):
    """Every GPU, or (no GPU) every logical CPU device, e.g. two configured for tests."""
    gpus = tf.config.list_logical_devices("GPU")
    return [d.name for d in (gpus or tf.config.list_logical_devices("CPU"))]


def agree_on_run_id(placement, run_id):
    """The chief's ``run_id`` on every worker, through one all-reduce (others pass None)."""
    if placement.cluster is None or placement.workers == 1:
        return run_id
    import numpy as np
    import tensorflow as tf

    width = 64
    encoded = np.zeros(width, np.int32)
    if placement.is_chief:
        raw = run_id.encode("ascii")[:width]
        encoded[:len(raw)] = np.frombuffer(raw, np.uint8)
    @tf.function  # collectives run eagerly are slow, and TensorFlow warns that they are
    def gather():
        values = placement.strategy.run(lambda: tf.constant(encoded))
        return placement.strategy.reduce("SUM", values, axis=None)

    return bytes(int(c) for c in gather().numpy() if c).decode("ascii")


def worker_folder(placement):
    """Where a non-chief worker writes its backups and checkpoints; deleted after training."""
    return Path(tempfile.mkdtemp(prefix=f"cnn-tasks-{placement.cluster.task_type}"
                                        f"{placement.cluster.index}-"))


def detach(model):
    """A functional twin of ``model`` made outside the strategy's scope, sharing its layers and
    variables: it predicts and saves locally (the chief's evaluation must not wait on workers)."""
    import keras

    return keras.Model(model.input, model.output, name=model.name)


def fitting_model(model, placement):
    """The model ``fit`` should train: the model itself (one device, or mirrored on one machine,
    where Keras' fit works as it is), else a twin that works around keras-team/keras#20585 (see
    the module docstring)."""
    if not placement.multi_worker:
        return model
    return _batch_axis_metrics_class()(model.input, model.output, name=f"{model.name}_fitting")


def _batch_axis_metrics_class():
    import keras
    from keras import ops

    class BatchAxisMetrics(keras.Model):
        """Steps return each metric as shape (1,): multi-worker Keras reduces them on axis 0."""

        def train_step(self, data):
            return {k: ops.reshape(v, (1,)) for k, v in super().train_step(data).items()}

        def test_step(self, data):
            return {k: ops.reshape(v, (1,)) for k, v in super().test_step(data).items()}

    return BatchAxisMetrics


def local_cluster(count):
    """``TF_CONFIG`` values for ``count`` workers on free 127.0.0.1 ports: one machine standing
    in for a cluster (tests, benchmarks, trying it out)."""
    import socket

    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    addresses = [f"127.0.0.1:{s.getsockname()[1]}" for s in sockets]
    for s in sockets:
        s.close()
    return [json.dumps({"cluster": {"worker": addresses}, "task": {"type": "worker", "index": i}})
            for i in range(count)]
