"""Wrong answers to exercise 6 (another lab)."""

from tests.wrong_solutions import Wrong

WRONG = {
    "task1": [
        Wrong("groups cells across labs", """
def cell_answers_by_lab(probs, labels, groups, labs):
    right = {}
    for cell in np.unique(groups):
        mask = groups == cell
        right[cell] = (probs[mask].mean(axis=0).argmax() == labels[mask][0], labs[mask][0])
    return {str(lab): np.array([r for r, l in right.values() if l == lab]) for lab in np.unique(labs)}
""", "is not home's cell 1"),
        Wrong("a majority vote of the predictions", """
def cell_answers_by_lab(probs, labels, groups, labs):
    answers = {}
    for lab in np.unique(labs):
        in_lab = labs == lab
        right = []
        for cell in np.unique(groups[in_lab]):
            mask = in_lab & (groups == cell)
            vote = np.bincount(probs[mask].argmax(axis=1), minlength=probs.shape[1]).argmax()
            right.append(vote == labels[mask][0])
        answers[str(lab)] = np.array(right, dtype=bool)
    return answers
""", "a majority vote says 1"),
        Wrong("one answer per image", """
def cell_answers_by_lab(probs, labels, groups, labs):
    return {str(lab): probs[labs == lab].argmax(axis=1) == labels[labs == lab] for lab in np.unique(labs)}
""", "home has one cell"),
        Wrong("the accuracy, not the answers", """
def cell_answers_by_lab(probs, labels, groups, labs):
    answers = {}
    for lab in np.unique(labs):
        in_lab = labs == lab
        right = [probs[in_lab & (groups == c)].mean(axis=0).argmax() == labels[in_lab & (groups == c)][0]
                 for c in np.unique(groups[in_lab])]
        answers[str(lab)] = np.full(len(right), np.mean(right))
    return answers
""", "a boolean per cell"),
    ],
    "task2": [
        Wrong("draws as many cells from home as away has", """
def gap_interval(right_home, right_away, n_boot, seed):
    rng = np.random.default_rng(seed)
    home, away = np.asarray(right_home, float), np.asarray(right_away, float)
    gaps = (home[rng.integers(0, len(home), size=(n_boot, len(away)))].mean(axis=1)
            - away[rng.integers(0, len(away), size=(n_boot, len(away)))].mean(axis=1))
    return float(home.mean() - away.mean()), float(np.percentile(gaps, 2.5)), float(np.percentile(gaps, 97.5))
""", "as many as it has"),
        Wrong("resamples only the other lab", """
def gap_interval(right_home, right_away, n_boot, seed):
    rng = np.random.default_rng(seed)
    home, away = np.asarray(right_home, float), np.asarray(right_away, float)
    gaps = home.mean() - away[rng.integers(0, len(away), size=(n_boot, len(away)))].mean(axis=1)
    return float(home.mean() - away.mean()), float(np.percentile(gaps, 2.5)), float(np.percentile(gaps, 97.5))
""", "as many as it has"),
        Wrong("the other lab's interval, not the gap's", """
def gap_interval(right_home, right_away, n_boot, seed):
    rng = np.random.default_rng(seed)
    home, away = np.asarray(right_home, float), np.asarray(right_away, float)
    accs = away[rng.integers(0, len(away), size=(n_boot, len(away)))].mean(axis=1)
    return float(home.mean() - away.mean()), float(np.percentile(accs, 2.5)), float(np.percentile(accs, 97.5))
""", "must straddle it"),
        Wrong("away minus home", """
def gap_interval(right_home, right_away, n_boot, seed):
    rng = np.random.default_rng(seed)
    home, away = np.asarray(right_home, float), np.asarray(right_away, float)
    gaps = (away[rng.integers(0, len(away), size=(n_boot, len(away)))].mean(axis=1)
            - home[rng.integers(0, len(home), size=(n_boot, len(home)))].mean(axis=1))
    return float(away.mean() - home.mean()), float(np.percentile(gaps, 2.5)), float(np.percentile(gaps, 97.5))
""", "home minus away"),
        Wrong("calls the kit's answer", """
def gap_interval(right_home, right_away, n_boot, seed):
    return hl.evaluate.bootstrap_gap(right_home, np.arange(len(right_home)), right_away,
                                     np.arange(len(right_away)), n_boot=n_boot, seed=seed)
""", "hides hl.evaluate.bootstrap_gap"),
    ],
}
