"""Wrong answers to exercise 4 (fine-tuning)."""

from tests.wrong_solutions import Wrong

WRONG = {
    "task1": [
        Wrong("BatchNorm unfrozen too", """
def unfreeze(model, n_layers):
    base = hl.model.base_of(model)
    base.trainable = True
    count = 0
    for i, layer in enumerate(base.layers):
        layer.trainable = i >= len(base.layers) - n_layers
        count += bool(layer.trainable and layer.weights)
    return count
""", "BatchNorm layers must stay frozen"),
        Wrong("one layer too many", """
def unfreeze(model, n_layers):
    base = hl.model.base_of(model)
    base.trainable = True
    count = 0
    for i, layer in enumerate(base.layers):
        layer.trainable = (i >= len(base.layers) - n_layers - 1
                           and not isinstance(layer, keras.layers.BatchNormalization))
        count += bool(layer.trainable and layer.weights)
    return count
""", "layers trainable, from"),
        Wrong("counts layers without weights", """
def unfreeze(model, n_layers):
    base = hl.model.base_of(model)
    base.trainable = True
    count = 0
    for i, layer in enumerate(base.layers):
        layer.trainable = (i >= len(base.layers) - n_layers
                           and not isinstance(layer, keras.layers.BatchNormalization))
        count += layer.trainable
    return count
""", "trainable layers with weights"),
        Wrong("calls the kit's unfreeze", """
def unfreeze(model, n_layers):
    return hl.model.unfreeze(hl.model.base_of(model), n_layers)
""", "hides hl.model.unfreeze"),
    ],
    "task2": [
        Wrong("spreads the smoothing over the other classes only", """
def smooth_labels(labels, num_classes, smoothing):
    one_hot = np.eye(num_classes)[labels]
    return one_hot * (1 - smoothing) + (1 - one_hot) * smoothing / (num_classes - 1)
""", "0.925 for the true class"),
        Wrong("adds without scaling the true class down", """
def smooth_labels(labels, num_classes, smoothing):
    return np.eye(num_classes)[labels] + smoothing / num_classes
""", "0.925 for the true class"),
        Wrong("hard-codes 0.925 and 0.025", """
def smooth_labels(labels, num_classes, smoothing):
    return np.where(np.eye(num_classes)[labels] == 1, 0.925, 0.025)
""", "3 classes, smoothing 0.3"),
    ],
    "task3": [
        Wrong("the head's learning rate", """
def compile_for_fine_tuning(model, head_learning_rate, smoothing):
    model.compile(optimizer=keras.optimizers.Adam(head_learning_rate),
                  loss=keras.losses.CategoricalCrossentropy(label_smoothing=smoothing), metrics=["accuracy"])
""", "should be 3e-4"),
        Wrong("ten times higher, not lower", """
def compile_for_fine_tuning(model, head_learning_rate, smoothing):
    model.compile(optimizer=keras.optimizers.Adam(head_learning_rate * 10),
                  loss=keras.losses.CategoricalCrossentropy(label_smoothing=smoothing), metrics=["accuracy"])
""", "should be 3e-4"),
        Wrong("sparse loss, no smoothing", """
def compile_for_fine_tuning(model, head_learning_rate, smoothing):
    model.compile(optimizer=keras.optimizers.Adam(head_learning_rate / 10),
                  loss=keras.losses.SparseCategoricalCrossentropy(), metrics=["accuracy"])
""", "use CategoricalCrossentropy"),
        Wrong("smoothing left out", """
def compile_for_fine_tuning(model, head_learning_rate, smoothing):
    model.compile(optimizer=keras.optimizers.Adam(head_learning_rate / 10),
                  loss=keras.losses.CategoricalCrossentropy(), metrics=["accuracy"])
""", "pass `smoothing` as label_smoothing"),
    ],
    "task4": [
        Wrong("the moving variance, not the mean", """
def batchnorm_statistics(model):
    return {layer.name: np.array(layer.moving_variance) for layer in hl.model.base_of(model).layers
            if isinstance(layer, keras.layers.BatchNormalization)}
""", "not its moving mean"),
        Wrong("the variables themselves, not copies", """
def batchnorm_statistics(model):
    return {layer.name: layer.moving_mean for layer in hl.model.base_of(model).layers
            if isinstance(layer, keras.layers.BatchNormalization)}
""", "NumPy copies"),
        Wrong("finds BatchNorm layers by name", """
def batchnorm_statistics(model):
    return {layer.name: np.array(layer.moving_mean) for layer in hl.model.base_of(model).layers
            if "_BN" in layer.name}
""", "include every BatchNormalization layer"),
    ],
}
