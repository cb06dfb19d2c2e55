"""Wrong answers to exercise 5 (honest evaluation)."""

from tests.wrong_solutions import Wrong

WRONG = {
    "task1": [
        Wrong("resamples images, not cells", """
def cell_bootstrap(correct, groups, n_boot, seed):
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(correct), size=(n_boot, len(correct)))
    accs = correct[picks].mean(axis=1)
    return float(np.percentile(accs, 2.5)), float(np.percentile(accs, 97.5))
""", "resampl"),
        Wrong("never draws the last cell", """
def cell_bootstrap(correct, groups, n_boot, seed):
    rng = np.random.default_rng(seed)
    cells = np.unique(groups)
    hits = np.array([correct[groups == c].sum() for c in cells], dtype=float)
    sizes = np.array([(groups == c).sum() for c in cells], dtype=float)
    picks = rng.integers(0, len(cells) - 1, size=(n_boot, len(cells)))
    accs = hits[picks].sum(axis=1) / sizes[picks].sum(axis=1)
    return float(np.percentile(accs, 2.5)), float(np.percentile(accs, 97.5))
""", "can every cell be drawn"),
        Wrong("calls the kit's bootstrap", """
def cell_bootstrap(correct, groups, n_boot, seed):
    return hl.evaluate.bootstrap_accuracy(correct, groups, n_boot=n_boot, seed=seed)
""", "hides hl.evaluate.bootstrap_accuracy"),
    ],
    "task2": [
        Wrong("a majority vote of the predictions", """
def cell_vote_accuracy(probs, labels, groups):
    votes = []
    for cell in np.unique(groups):
        mask = groups == cell
        votes.append(np.bincount(probs[mask].argmax(axis=1), minlength=4).argmax() == labels[mask][0])
    return float(np.mean(votes))
""", "a majority vote says 1"),
        Wrong("accuracy per image", """
def cell_vote_accuracy(probs, labels, groups):
    return float(np.mean(probs.argmax(axis=1) == labels))
""", "expected 2/3"),
        Wrong("averages over the wrong axis", """
def cell_vote_accuracy(probs, labels, groups):
    votes = []
    for cell in np.unique(groups):
        mask = groups == cell
        votes.append(probs[mask].mean(axis=1).argmax() == labels[mask][0])
    return float(np.mean(votes))
""", "expected 2/3"),
    ],
    "task3": [
        Wrong("exactly half right counted as learned", """
def missed(correct, groups):
    cells = sorted(c for c in np.unique(groups) if correct[groups == c].mean() < 0.5)
    return cells, float(np.isin(groups, cells).mean())
""", "half: missed"),
        Wrong("the share of cells, not of images", """
def missed(correct, groups):
    cells = sorted(c for c in np.unique(groups) if correct[groups == c].mean() <= 0.5)
    return cells, len(cells) / len(np.unique(groups))
""", "the share of images, not cells"),
        Wrong("calls the kit's missed_cell_names", """
def missed(correct, groups):
    cells = sorted(hl.evaluate.missed_cell_names(correct, groups))
    return cells, float(np.isin(groups, cells).mean())
""", "hides hl.evaluate.missed_cell_names"),
    ],
    "task4": [
        Wrong("averages the gradient over the channels, not the spatial axes", """
def grad_cam(model, crop, class_index):
    parts = hl.model.parts_of(model)
    dense = parts.head.layers[-1]
    x = tf.convert_to_tensor(np.asarray(crop, dtype=np.float32)[None])
    with tf.GradientTape() as tape:
        conv = parts.base(parts.preprocess(x), training=False)
        tape.watch(conv)
        score = (tf.matmul(parts.pool(conv), dense.kernel) + dense.bias)[:, class_index]
    weights = tf.reduce_mean(tape.gradient(score, conv), axis=-1, keepdims=True)
    cam = tf.nn.relu(tf.reduce_sum(conv * weights, axis=-1))[0]
    return (cam / tf.maximum(tf.reduce_max(cam), 1e-12)).numpy()
""", "differs from Grad-CAM's"),
        Wrong("the probability after softmax, not the score", """
def grad_cam(model, crop, class_index):
    parts = hl.model.parts_of(model)
    x = tf.convert_to_tensor(np.asarray(crop, dtype=np.float32)[None])
    with tf.GradientTape() as tape:
        conv = parts.base(parts.preprocess(x), training=False)
        tape.watch(conv)
        score = parts.head(parts.pool(conv))[:, class_index]
    weights = tf.reduce_mean(tape.gradient(score, conv), axis=(1, 2), keepdims=True)
    cam = tf.nn.relu(tf.reduce_sum(conv * weights, axis=-1))[0]
    return (cam / tf.maximum(tf.reduce_max(cam), 1e-12)).numpy()
""", "differs from Grad-CAM's"),
        Wrong("the predicted class, whatever class_index says", """
def grad_cam(model, crop, class_index):
    parts = hl.model.parts_of(model)
    dense = parts.head.layers[-1]
    x = tf.convert_to_tensor(np.asarray(crop, dtype=np.float32)[None])
    with tf.GradientTape() as tape:
        conv = parts.base(parts.preprocess(x), training=False)
        tape.watch(conv)
        logits = tf.matmul(parts.pool(conv), dense.kernel) + dense.bias
        score = logits[:, int(tf.argmax(logits[0]))]
    weights = tf.reduce_mean(tape.gradient(score, conv), axis=(1, 2), keepdims=True)
    cam = tf.nn.relu(tf.reduce_sum(conv * weights, axis=-1))[0]
    return (cam / tf.maximum(tf.reduce_max(cam), 1e-12)).numpy()
""", "differs from Grad-CAM's"),
        Wrong("calls the kit's Grad-CAM", """
def grad_cam(model, crop, class_index):
    return hl.explain.grad_cam(model, crop, class_index)[1]
""", "hides hl.explain.grad_cam"),
    ],
}
