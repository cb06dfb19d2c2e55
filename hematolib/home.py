"""Where the kit is published: the repository and the version that Colab badges and setup cells use.

Every notebook's "Open in Colab" badge opens it from REPOSITORY at REF, and its Colab setup cell
fetches the kit from there. Colab has no kit yet when that cell runs, so each notebook spells the
two values out; change them only with `python tools/set_home.py URL REF`, which rewrites this file
and every badge and setup cell. tests/test_home.py checks that they all agree with this file.
"""

from __future__ import annotations

import re

# PLACEHOLDER: the kit has no public home yet. Whoever publishes it (or a fork) sets the GitHub
# repository and the tag or commit to pin with `python tools/set_home.py URL REF`.
REPOSITORY = "https://github.com/YOUR-GITHUB-ACCOUNT/hematovision"
REF = "v0.1.0"  # a tag or a commit, never a branch: every student gets the same kit

FOLDERS = ("notebooks", "exercises", "solutions", "app")  # where notebooks with badges and setup cells live
BRANCHES = ("main", "master", "HEAD")  # refs that move
_REPOSITORY = re.compile(r"https://github\.com/([A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)/([A-Za-z0-9._-]+)")
_REF = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


class HomeError(ValueError):
    """A repository URL or ref that Colab cannot open or that does not pin one version."""


def check_repository(url: str) -> str:
    """`url` as https://github.com/OWNER/NAME (no trailing / or .git), or HomeError."""
    url = url.strip().rstrip("/").removesuffix(".git")
    if not _REPOSITORY.fullmatch(url):
        raise HomeError(f"{url!r}: expected a GitHub repository URL, https://github.com/OWNER/NAME "
                        "(Colab opens notebooks from GitHub only).")
    return url


def check_ref(ref: str) -> str:
    """`ref` if it can name a tag or commit in a badge URL, or HomeError."""
    if ref in BRANCHES:
        raise HomeError(f"{ref!r} is a branch, and a branch moves: pin a tag (e.g. v0.1.0) or a commit, "
                        "so every student gets the same kit.")
    if not _REF.fullmatch(ref) or ".." in ref or ref.endswith(".lock"):
        raise HomeError(f"{ref!r}: expected a tag or a commit made of letters, digits, '.', '_' and '-' "
                        "(no '/'), e.g. v0.1.0 or a 40-character commit hash.")
    return ref


def colab_url(path: str, repository: str = REPOSITORY, ref: str = REF) -> str:
    """The address that opens notebook `path` (e.g. notebooks/01_explore_data.ipynb) in Colab."""
    owner_name = check_repository(repository).removeprefix("https://github.com/")
    return f"https://colab.research.google.com/github/{owner_name}/blob/{check_ref(ref)}/{path}"


def badge_target(folder: str, name: str) -> str:
    """The path a notebook's badge opens: an exercise's solution links to the exercise itself."""
    return f"{'exercises' if folder == 'solutions' else folder}/{name}"
