"""Wrong answers to exercise 7 (inference, and when to trust a prediction)."""

from tests.wrong_solutions import Wrong

WRONG = {
    "task1": [
        Wrong("lets bad input raise", """
def classify_bytes(predictor, data, name):
    rgb, _notes = hl.images.decode_image(data, name=name)
    p = predictor.predict_array(rgb, name)
    return {"class": p.class_name, "confidence": p.confidence}
""", "must return a dict, not raise"),
        Wrong("a message that says nothing", """
def classify_bytes(predictor, data, name):
    try:
        rgb, _notes = hl.images.decode_image(data, name=name)
    except hl.images.ImageDecodeError:
        return {"error": "bad image"}
    p = predictor.predict_array(rgb, name)
    return {"class": p.class_name, "confidence": p.confidence}
""", "return the decoder's message"),
        Wrong("confidence in percent", """
def classify_bytes(predictor, data, name):
    try:
        rgb, _notes = hl.images.decode_image(data, name=name)
    except hl.images.ImageDecodeError as exc:
        return {"error": str(exc)}
    p = predictor.predict_array(rgb, name)
    return {"class": p.class_name, "confidence": 100 * p.confidence}
""", "a probability"),
    ],
    "task2": [
        Wrong("answers only above the threshold (> not >=)", """
def choose_threshold(probs, labels, target):
    confidence = probs.max(axis=1)
    right = probs.argmax(axis=1) == labels
    for t in np.unique(confidence):
        answered = confidence > t
        if answered.any() and right[answered].mean() >= target:
            return float(t), float(answered.mean())
    return None, 0.0
""", "expected (0.7, 0.8)"),
        Wrong("the highest threshold, not the lowest", """
def choose_threshold(probs, labels, target):
    confidence = probs.max(axis=1)
    right = probs.argmax(axis=1) == labels
    for t in np.unique(confidence)[::-1]:
        answered = confidence >= t
        if right[answered].mean() >= target:
            return float(t), float(answered.mean())
    return None, 0.0
""", "expected (0.7, 0.8)"),
        Wrong("the kit's 0.6, whatever the target", """
def choose_threshold(probs, labels, target):
    return 0.6, float((probs.max(axis=1) >= 0.6).mean())
""", "expected (0.7, 0.8)"),
        Wrong("accuracy over all images, not the answered ones", """
def choose_threshold(probs, labels, target):
    confidence = probs.max(axis=1)
    right = probs.argmax(axis=1) == labels
    for t in np.unique(confidence):
        if right.mean() >= target:
            return float(t), float((confidence >= t).mean())
    return None, 0.0
""", "expected (0.7, 0.8)"),
    ],
    "task3": [
        Wrong("every bin counts the same", """
def expected_calibration_error(probs, labels, bins):
    confidence = probs.max(axis=1)
    right = probs.argmax(axis=1) == labels
    index = np.minimum((confidence * bins).astype(int), bins - 1)
    gaps = [abs(right[index == b].mean() - confidence[index == b].mean()) for b in range(bins) if (index == b).any()]
    return float(np.mean(gaps))
""", "weighted by images"),
        Wrong("the true class's probability as the confidence", """
def expected_calibration_error(probs, labels, bins):
    confidence = probs[np.arange(len(labels)), labels]
    right = probs.argmax(axis=1) == labels
    index = np.minimum((confidence * bins).astype(int), bins - 1)
    return float(sum((index == b).mean() * abs(right[index == b].mean() - confidence[index == b].mean())
                     for b in range(bins) if (index == b).any()))
""", "weighted by images"),
        Wrong("calls the kit's calibration", """
def expected_calibration_error(probs, labels, bins):
    return hl.evaluate.calibration(probs, labels, bins)["ece"]
""", "hides hl.evaluate.calibration"),
    ],
}
