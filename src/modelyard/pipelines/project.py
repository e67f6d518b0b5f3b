"""``yard init DIR``: a model project to start from: a training pipeline on sample data, a
``modelyard.toml``, a test, and a GitHub Actions workflow that trains and gates every pull request.

The templates live in ``templates/project`` (``.tmpl`` files, so that linters and test runners do
not take them for this package's own code); ``__NAME__`` becomes the model's name. The sample data
is scikit-learn's bundled breast-cancer set, split into ``train.csv`` and ``holdout.csv`` (for the
gate), with ``reference.csv`` (a copy of the training data: the constraints the pipeline validates
its input against) and ``new.parquet`` (the holdout's rows without the label: what the README
batch-scores, since batch scoring reads Parquet).
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from importlib import resources
from pathlib import Path

from modelyard.errors import AlreadyExistsError, InvalidInputError

__all__ = ["init_project"]

_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_.-]{0,127}")


def init_project(directory: str | Path, *, name: str | None = None) -> list[Path]:
    """Write the project into ``directory`` (new, or empty); returns the files written.

    Everything is written into a temporary folder beside it first and moved into place at the
    end, so a failure leaves nothing half-written.
    """
    target = Path(directory)
    model = name or _default_name(target)
    if not _NAME.fullmatch(model):
        raise InvalidInputError(
            f"Model name {model!r} is not valid; use letters, digits, '.', '_' or '-', starting "
            "with a letter (pass --name)."
        )
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise AlreadyExistsError(
            f"{str(target)!r} exists and is not an empty folder; choose a new folder for the "
            "project."
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        files = [*_render(staging, model), *_sample_data(staging / "data")]
        if target.exists():
            target.rmdir()
        os.replace(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return sorted(target / p.relative_to(staging) for p in files)


def _default_name(target: Path) -> str:
    cleaned = re.sub(r"[^A-Za-z0-9_.-]", "-", target.resolve().name).strip("-._")
    return cleaned if cleaned and cleaned[0].isalpha() else f"model-{cleaned}".strip("-")


def _render(root: Path, model: str) -> list[Path]:
    written = []
    templates = resources.files("modelyard.pipelines") / "templates" / "project"
    with resources.as_file(templates) as folder:
        for source in sorted(Path(folder).rglob("*.tmpl")):
            relative = source.relative_to(folder).with_suffix("")
            if relative.name == "gitignore":
                relative = relative.with_name(".gitignore")
            path = root / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(source.read_text().replace("__NAME__", model))
            written.append(path)
    return written


def _sample_data(folder: Path) -> list[Path]:
    from sklearn.datasets import load_breast_cancer
    from sklearn.model_selection import train_test_split

    data = load_breast_cancer(as_frame=True).frame
    train, holdout = train_test_split(data, test_size=0.2, random_state=0, stratify=data["target"])
    folder.mkdir(parents=True, exist_ok=True)
    train.to_csv(folder / "train.csv", index=False)
    holdout.to_csv(folder / "holdout.csv", index=False)
    train.to_csv(folder / "reference.csv", index=False)
    holdout.drop(columns=["target"]).to_parquet(folder / "new.parquet", index=False)
    names = ["train.csv", "holdout.csv", "reference.csv", "new.parquet"]
    return [folder / name for name in names]
