"""Times the authors' KNOWN architecture in Keras (run inside an environment with TensorFlow).

    python known_speed_keras.py KNOWN_Conv.h5 seq.npy REPEATS

Rebuilds the two-stream model with the layer names of the official ``.h5`` (``dense`` …
``dense_12``), loads the weights, predicts the (N, 5) sequences with ``model.predict`` at a large
batch, and prints one JSON line: median seconds and the first 4,096 residuals (a parity check).
Only benchmarks/known_speed.py calls this; weightlab itself never imports TensorFlow.
"""

import json
import statistics
import sys
import time

import numpy as np
import tensorflow as tf
from tensorflow import keras
from tensorflow.keras import layers


def stream(x, names):
    d64 = layers.Dense(64, name=names[0])(x)
    h = layers.Dense(8, activation="relu", name=names[1])(d64)
    a = layers.Dense(64, name=names[2])(h)
    b = layers.Dense(64, name=names[3])(h)
    c = layers.Dense(64, name=names[4])(h)
    e = layers.Lambda(lambda t: t[0] * tf.exp(t[1] * t[2]))([b, c, d64])
    y = layers.Add()([a, e])
    y = layers.Dense(32, name=names[5])(y)
    return layers.LeakyReLU(0.3)(y)


def build():
    seq = keras.Input((5,))
    diff = keras.Input((4,))
    s1 = stream(seq, ["dense"] + [f"dense_{i}" for i in range(1, 6)])
    s2 = stream(diff, [f"dense_{i}" for i in range(6, 12)])
    z = layers.Concatenate()([s1, s2])
    out = layers.Dense(1, activation="tanh", name="dense_12")(z)
    return keras.Model([seq, diff], out)


def main():
    h5, seq_path, repeats = sys.argv[1], sys.argv[2], int(sys.argv[3])
    model = build()
    import h5py

    with h5py.File(h5, "r") as f:
        for layer in model.layers:
            if isinstance(layer, layers.Dense):
                g = f[layer.name][layer.name]
                layer.set_weights([g["kernel:0"][()], g["bias:0"][()]])
    seq = np.load(seq_path).astype(np.float32)
    diff = seq[:, 1:] - seq[:, :-1]
    first = model.predict([seq[:4096], diff[:4096]], batch_size=4096, verbose=0)[:, 0]
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        model.predict([seq, diff], batch_size=65536, verbose=0)
        times.append(time.perf_counter() - t)
    print(
        json.dumps(
            {
                "median_seconds": statistics.median(times),
                "all_seconds": times,
                "tensorflow": tf.__version__,
                "batch_size": 65536,
                "first_4096": first.tolist(),
            }
        )
    )


if __name__ == "__main__":
    from weightlab.errors import run_script

    sys.exit(run_script(main))
