"""Wrong answers to exercise 2 (augmentation and the input pipeline)."""

from tests.wrong_solutions import Wrong

WRONG = {
    "task1": [
        Wrong("no colour layer", """
def make_augmenter(seed):
    return keras.Sequential([keras.layers.RandomFlip("horizontal_and_vertical", seed=seed),
                             keras.layers.RandomRotation(0.05, fill_mode="reflect", seed=seed)])
""", "add a colour layer"),
        Wrong("the seed passed to no layer", """
def make_augmenter(seed):
    return keras.Sequential([keras.layers.RandomFlip("horizontal_and_vertical"),
                             keras.layers.RandomRotation(0.05, fill_mode="reflect"),
                             keras.layers.RandomBrightness(0.15, value_range=(0, 255))])
""", "the same seed must give the same augmentation"),
        Wrong("brightness for images in 0..1", """
def make_augmenter(seed):
    return keras.Sequential([keras.layers.RandomFlip("horizontal_and_vertical", seed=seed),
                             keras.layers.RandomRotation(0.05, fill_mode="reflect", seed=seed),
                             keras.layers.RandomBrightness(0.15, value_range=(0, 1), seed=seed)])
""", "pixels must stay in 0..255"),
        Wrong("one seed for every layer", """
def make_augmenter(seed):
    return keras.Sequential([keras.layers.RandomFlip("horizontal_and_vertical", seed=seed),
                             keras.layers.RandomRotation(0.05, fill_mode="reflect", seed=seed),
                             keras.layers.RandomBrightness(0.15, value_range=(0, 255), seed=seed)])
""", "layers with the same seed draw the same random numbers"),
        Wrong("seed times the layer's index", """
def make_augmenter(seed):
    kinds = [keras.layers.RandomFlip, keras.layers.RandomRotation, keras.layers.RandomBrightness]
    options = [("horizontal_and_vertical",), (0.05,), (0.15,)]
    return keras.Sequential([kind(*args, seed=seed * i, **({"value_range": (0, 255)} if i == 2 else {}))
                             for i, (kind, args) in enumerate(zip(kinds, options))])
""", "at seed=0 your layers' seeds are [0, 0, 0]"),
        Wrong("calls the kit's augmenter", """
def make_augmenter(seed):
    return hl.augment.make_augmenter(seed=seed)
""", "hides hl.augment.make_augmenter"),
    ],
    "task2": [
        Wrong("no cache", """
def make_dataset(records, image_size, batch_size):
    paths = [str(r.path) for r in records]
    labels = np.array([r.label for r in records], dtype=np.int32)
    def load(path, label):
        img = tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)
        return tf.image.resize(img, (image_size, image_size)), label
    return (tf.data.Dataset.from_tensor_slices((paths, labels)).map(load, num_parallel_calls=tf.data.AUTOTUNE)
            .batch(batch_size).prefetch(tf.data.AUTOTUNE))
""", "cache the decoded images"),
        Wrong("shuffles the records", """
def make_dataset(records, image_size, batch_size):
    paths = [str(r.path) for r in records]
    labels = np.array([r.label for r in records], dtype=np.int32)
    def load(path, label):
        img = tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)
        return tf.image.resize(img, (image_size, image_size)), label
    return (tf.data.Dataset.from_tensor_slices((paths, labels)).shuffle(len(paths), seed=0)
            .map(load).cache().batch(batch_size).prefetch(2))
""", "labels must follow the order of the records"),
        Wrong("scales pixels to 0..1", """
def make_dataset(records, image_size, batch_size):
    paths = [str(r.path) for r in records]
    labels = np.array([r.label for r in records], dtype=np.int32)
    def load(path, label):
        img = tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)
        return tf.image.resize(img, (image_size, image_size)) / 255.0, label
    return tf.data.Dataset.from_tensor_slices((paths, labels)).map(load).cache().batch(batch_size).prefetch(2)
""", "not 0..1"),
        Wrong("calls the kit's pipeline", """
def make_dataset(records, image_size, batch_size):
    return hl.pipelines.make_pipeline(records, image_size, batch_size=batch_size)
""", "hides hl.pipelines.make_pipeline"),
    ],
}
