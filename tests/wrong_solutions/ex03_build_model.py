"""Wrong answers to exercise 3 (transfer learning with MobileNetV2)."""

from tests.wrong_solutions import Wrong

WRONG = {
    "task1": [
        Wrong("splits images, not cells (leaks)", """
def grouped_split(records, val_fraction, seed):
    order = np.random.default_rng(seed).permutation(len(records))
    cut = int(len(records) * val_fraction)
    return [records[i] for i in order[cut:]], [records[i] for i in order[:cut]]
""", "original cells are on both sides"),
        Wrong("one cell too many per class", """
def grouped_split(records, val_fraction, seed):
    rng = np.random.default_rng(seed)
    cells = defaultdict(set)
    for r in records:
        cells[r.label].add(r.original)
    val_cells = set()
    for label in sorted(cells):
        ids = sorted(cells[label])
        rng.shuffle(ids)
        val_cells.update(ids[:round(len(ids) * val_fraction) + 1])
    return [r for r in records if r.original not in val_cells], [r for r in records if r.original in val_cells]
""", "cells in validation"),
        Wrong("ignores the seed", """
def grouped_split(records, val_fraction, seed):
    rng = np.random.default_rng()
    cells = defaultdict(set)
    for r in records:
        cells[r.label].add(r.original)
    val_cells = set()
    for label in sorted(cells):
        ids = sorted(cells[label])
        rng.shuffle(ids)
        val_cells.update(ids[:max(1, round(len(ids) * val_fraction))])
    return [r for r in records if r.original not in val_cells], [r for r in records if r.original in val_cells]
""", "the same seed must give the same split"),
        Wrong("always seed 0", """
def grouped_split(records, val_fraction, seed):
    rng = np.random.default_rng(0)
    cells = defaultdict(set)
    for r in records:
        cells[r.label].add(r.original)
    val_cells = set()
    for label in sorted(cells):
        ids = sorted(cells[label])
        rng.shuffle(ids)
        val_cells.update(ids[:max(1, round(len(ids) * val_fraction))])
    return [r for r in records if r.original not in val_cells], [r for r in records if r.original in val_cells]
""", "another seed should give another split"),
        Wrong("calls the kit's split", """
def grouped_split(records, val_fraction, seed):
    return hl.splits.split_by_original(records, val_fraction, seed)
""", "hides hl.splits.split_by_original"),
    ],
    "task2": [
        Wrong("the base left trainable", """
def build_classifier(alpha, image_size):
    inputs = keras.Input((image_size, image_size, 3))
    x = keras.layers.Rescaling(1 / 127.5, offset=-1)(inputs)
    base = keras.applications.MobileNetV2(input_shape=(image_size, image_size, 3), alpha=alpha,
                                          include_top=False, weights=None)
    base.load_weights(str(hl.model.resolve_weights(alpha)))
    x = keras.layers.GlobalAveragePooling2D()(base(x, training=False))
    return keras.Model(inputs, keras.layers.Dense(4, activation="softmax")(x))
""", "only the head should train"),
        Wrong("no rescaling: 0..255 into the base", """
def build_classifier(alpha, image_size):
    inputs = keras.Input((image_size, image_size, 3))
    base = keras.applications.MobileNetV2(input_shape=(image_size, image_size, 3), alpha=alpha,
                                          include_top=False, weights=None)
    base.load_weights(str(hl.model.resolve_weights(alpha)))
    base.trainable = False
    x = keras.layers.GlobalAveragePooling2D()(base(inputs, training=False))
    return keras.Model(inputs, keras.layers.Dense(4, activation="softmax")(x))
""", "scale pixels to MobileNetV2's -1..1"),
        Wrong("scales to 0..1, not -1..1", """
def build_classifier(alpha, image_size):
    inputs = keras.Input((image_size, image_size, 3))
    x = keras.layers.Rescaling(1 / 255)(inputs)
    base = keras.applications.MobileNetV2(input_shape=(image_size, image_size, 3), alpha=alpha,
                                          include_top=False, weights=None)
    base.load_weights(str(hl.model.resolve_weights(alpha)))
    base.trainable = False
    x = keras.layers.GlobalAveragePooling2D()(base(x, training=False))
    return keras.Model(inputs, keras.layers.Dense(4, activation="softmax")(x))
""", "scale pixels to MobileNetV2's -1..1"),
        Wrong("calls the kit's network", """
def build_classifier(alpha, image_size):
    return hl.model.build_network(alpha, image_size)
""", "hides hl.model.build_network"),
    ],
    "task3": [
        Wrong("no label smoothing", """
def train_head(head, features, labels, epochs):
    head.compile(optimizer=keras.optimizers.Adam(1e-3), loss=keras.losses.CategoricalCrossentropy(),
                 metrics=["accuracy"])
    return head.fit(features, keras.utils.to_categorical(labels, 4), epochs=epochs, batch_size=32, verbose=0)
""", "label_smoothing should be 0.1"),
        Wrong("a fixed number of epochs", """
def train_head(head, features, labels, epochs):
    head.compile(optimizer=keras.optimizers.Adam(1e-3),
                 loss=keras.losses.CategoricalCrossentropy(label_smoothing=0.1), metrics=["accuracy"])
    return head.fit(features, keras.utils.to_categorical(labels, 4), epochs=5, batch_size=32, verbose=0)
""", "train for `epochs` epochs"),
        Wrong("sparse labels, so no smoothing", """
def train_head(head, features, labels, epochs):
    head.compile(optimizer=keras.optimizers.Adam(1e-3), loss=keras.losses.SparseCategoricalCrossentropy(),
                 metrics=["accuracy"])
    return head.fit(features, labels, epochs=epochs, batch_size=32, verbose=0)
""", "need CategoricalCrossentropy"),
        Wrong("ten times the learning rate", """
def train_head(head, features, labels, epochs):
    head.compile(optimizer=keras.optimizers.Adam(1e-2),
                 loss=keras.losses.CategoricalCrossentropy(label_smoothing=0.1), metrics=["accuracy"])
    return head.fit(features, keras.utils.to_categorical(labels, 4), epochs=epochs, batch_size=32, verbose=0)
""", "learning rate should be 1e-3"),
    ],
}
