"""Export a kit model to TensorFlow Lite (a mobile-ready file) and run it."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .files import atomic_path


def to_tflite(model, path: str | Path) -> Path:
    """Convert `model` to a .tflite file at `path` (atomically); returns the path.

    The file takes the same input as the model: float32 (1, height, width, 3) RGB in 0..255.
    """
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]  # no TF ops: runs anywhere
    data = converter.convert()
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def interpreter_class() -> tuple[type, str]:
    """(Interpreter class, its name): LiteRT's, else TensorFlow's tf.lite (deprecated; it warns).

    LiteRT (`ai-edge-litert`, a dependency of the kit where it has wheels) is tf.lite's successor.
    """
    try:
        from ai_edge_litert.interpreter import Interpreter

        return Interpreter, "LiteRT"
    except ImportError:
        import tensorflow as tf

        return tf.lite.Interpreter, "tf.lite"


class TFLiteModel:
    """A .tflite classifier: `probabilities(image)` for one float32 (height, width, 3) image.

    `runtime` says which interpreter runs it: "LiteRT", or "tf.lite" where LiteRT is not installed.
    """

    def __init__(self, path: str | Path, threads: int = 2):
        Interpreter, self.runtime = interpreter_class()
        self.interpreter = Interpreter(model_path=str(path), num_threads=threads)
        details = self.interpreter.get_input_details()[0]
        self._input = details["index"]
        self.input_size = tuple(int(d) for d in details["shape"][1:3])
        self.interpreter.resize_tensor_input(self._input, (1, *self.input_size, 3))
        self.interpreter.allocate_tensors()
        self._output = self.interpreter.get_output_details()[0]["index"]

    def probabilities(self, image: np.ndarray) -> np.ndarray:
        """Class probabilities (classes,) of one image at the model's input size."""
        self.interpreter.set_tensor(self._input, np.asarray(image, np.float32)[None])
        self.interpreter.invoke()
        return self.interpreter.get_tensor(self._output)[0]
