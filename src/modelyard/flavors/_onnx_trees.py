"""A compiled kernel for ONNX tree ensembles: about 6x onnxruntime's TreeEnsemble operator per core.

onnxruntime walks each tree of a ``TreeEnsembleClassifier``/``Regressor`` node row by row: a chain
of dependent loads and hard-to-predict branches (600k rows/s per core for the serving benchmark's
66-tree HistGradientBoosting model here; 3.4-3.6M with this kernel, benchmarks/batch.py). This
kernel evaluates the same node the QuickScorer way (Lucchese et al., SIGIR 2015), turned so that
it vectorises over rows:

- The leaves of each tree are numbered left to right, the "true" branch first, and every tree
  keeps a bitmask of the leaves still reachable (at most 64 leaves: one machine word).
- A branch node whose test is false rules out the leaves of its true subtree: its mask clears
  them. Evaluating a node is one comparison and one AND per row, with no branch on the data.
- A row's exit leaf in a tree is the lowest bit left in the tree's mask.

The rows go in blocks (transposed, so a node tests one contiguous column); every node of every
tree is applied to the whole block, which numba compiles into SIMD loops. Missing values follow
the node's ``missing_value_tracks_true``, each comparison mode (``BRANCH_LEQ``, ``BRANCH_LT``...)
has its own loop.

The kernel covers what scikit-learn, XGBoost and LightGBM exports are made of: a graph of one
tree-ensemble node (and Identity outputs) on one float input, at most 64 leaves per tree, the
post transforms NONE, LOGISTIC and SOFTMAX (classifiers), SUM or AVERAGE (regressors). Anything
else, or numba missing (the ``trees`` extra), stays with onnxruntime. A kernel is used only after
it agreed with onnxruntime on probe rows built from the model's own thresholds (each threshold,
the floats either side of it, and missing values; row- and column-major), so a semantic slip
falls back rather than mispredicts. Probabilities and scores match onnxruntime's to float32
rounding (sums of float32 leaf values).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from modelyard.flavors._base import Array

if TYPE_CHECKING:
    from collections.abc import Callable

    import onnx
    import onnxruntime

logger = logging.getLogger(__name__)

MAX_LEAVES = 64
BLOCK = 256  # rows per block: measured best of 64, 256, 1024 and 4096 (masks and columns in L1/L2)
PROBE_ROWS = 2048
_TOLERANCE = 1e-5

# A node's test, per comparison mode and missing_value_tracks_true, as the condition under which
# the row goes to the false branch (so the node clears its true subtree's leaves):
_MASKED_WHEN = {
    ("BRANCH_LEQ", 1): 0,  # x > t            (NaN goes true)
    ("BRANCH_LEQ", 0): 1,  # not (x <= t)     (NaN goes false)
    ("BRANCH_LT", 1): 2,  # x >= t
    ("BRANCH_LT", 0): 3,  # not (x < t)
    ("BRANCH_GTE", 1): 4,  # x < t
    ("BRANCH_GTE", 0): 5,  # not (x >= t)
    ("BRANCH_GT", 1): 6,  # x <= t
    ("BRANCH_GT", 0): 7,  # not (x > t)
    ("BRANCH_EQ", 1): 8,  # x < t or x > t
    ("BRANCH_EQ", 0): 9,  # x != t
    ("BRANCH_NEQ", 1): 10,  # x == t (NaN != t is true: it goes true either way)
    ("BRANCH_NEQ", 0): 10,
}
_POST_CODE = {"NONE": 0, "LOGISTIC": 1, "SOFTMAX": 2}  # _onnx_trees_jit.classify's codes
_POST = {
    "TreeEnsembleClassifier": ("NONE", "LOGISTIC", "SOFTMAX"),
    "TreeEnsembleRegressor": ("NONE",),
}


@dataclass(frozen=True)
class TreeTables:
    """A tree-ensemble node as flat arrays, one entry per branch node (``feature``, ``threshold``,
    ``test``, ``tree``, ``mask``) and the leaf values per tree, leaf and output column."""

    op: Literal["TreeEnsembleClassifier", "TreeEnsembleRegressor"]
    n_features: int
    feature: Array  # int32
    threshold: Array  # float32
    test: Array  # int8, a _MASKED_WHEN code
    tree: Array  # int32
    mask: Array  # uint32 or uint64: the tree's leaves left reachable when the test sends it false
    follow: Array  # int32 [branches, 2]: the true and false child, a branch or -1 - leaf number
    roots: Array  # int32 [trees]: each tree's first node, the same way
    leaves: Array  # float32 [trees, max leaves, columns]
    base: Array  # float32 [columns]
    post: str
    average: bool  # a regressor's AVERAGE: the sum divided by the number of trees
    binary: bool  # a classifier with one score column for two classes
    classes: list[Any] | None  # a classifier's labels, in output order


def tree_tables(model: onnx.ModelProto) -> tuple[TreeTables | None, str]:
    """The kernel's tables for ``model``, or ``None`` and why it stays with onnxruntime."""
    graph = model.graph
    initializers = {i.name for i in graph.initializer}
    inputs = [i for i in graph.input if i.name not in initializers]
    trees = [n for n in graph.node if n.op_type in _POST and n.domain == "ai.onnx.ml"]
    others = [n for n in graph.node if n not in trees]
    if len(trees) != 1 or any(n.op_type != "Identity" for n in others):
        return None, "the graph is not one TreeEnsembleClassifier/Regressor node (and Identity)"
    node = trees[0]
    source = {n.output[0]: n.input[0] for n in others}
    outputs = []
    for out in graph.output:
        name, hops = out.name, 0
        while name in source and hops <= len(others):
            name, hops = source[name], hops + 1
        outputs.append(name)
    if outputs != list(node.output):
        return None, "the graph's outputs are not the tree node's, in its order"
    if len(inputs) != 1 or inputs[0].type.tensor_type.elem_type != 1:  # FLOAT
        return None, "the input is not one float tensor"
    dims = inputs[0].type.tensor_type.shape.dim
    if len(dims) != 2 or not dims[1].HasField("dim_value"):
        return None, "the input is not [n, features] with a fixed number of features"
    attrs = {a.name: a for a in node.attribute}
    if any(name.endswith("_as_tensor") for name in attrs):
        return None, "double-precision attributes (*_as_tensor)"
    post = attrs["post_transform"].s.decode() if "post_transform" in attrs else "NONE"
    op: Literal["TreeEnsembleClassifier", "TreeEnsembleRegressor"] = node.op_type
    if post not in _POST[op]:
        return None, f"post_transform {post}"
    aggregate = attrs["aggregate_function"].s.decode() if "aggregate_function" in attrs else "SUM"
    if aggregate not in ("SUM", "AVERAGE"):
        return None, f"aggregate_function {aggregate}"
    try:
        return _build(op, attrs, dims[1].dim_value, post, aggregate == "AVERAGE"), ""
    except _UnsupportedError as exc:
        return None, str(exc)


class _UnsupportedError(Exception):
    """The node has something the kernel does not cover (the message says what)."""


class _Forest:
    """The node's trees as parallel lists, walked without recursion (trees may be deep)."""

    def __init__(self, attrs: dict[str, Any], n_features: int) -> None:
        def ints(name: str) -> list[int]:
            return list(attrs[name].ints) if name in attrs else []

        self.tree_ids, node_ids = ints("nodes_treeids"), ints("nodes_nodeids")
        self.features, self.true_ids, self.false_ids = (
            ints("nodes_featureids"), ints("nodes_truenodeids"), ints("nodes_falsenodeids"),
        )  # fmt: skip
        self.values = list(attrs["nodes_values"].floats)
        self.modes = [m.decode() for m in attrs["nodes_modes"].strings]
        self.missing = ints("nodes_missing_value_tracks_true") or [0] * len(self.modes)
        self.index = {
            (t, n): i for i, (t, n) in enumerate(zip(self.tree_ids, node_ids, strict=True))
        }
        known = {"LEAF", *(mode for mode, _ in _MASKED_WHEN)}
        if not set(self.modes) <= known:
            raise _UnsupportedError(f"node modes {sorted(set(self.modes) - known)}")
        branches = [i for i, m in enumerate(self.modes) if m != "LEAF"]
        if any(self.features[i] >= n_features for i in branches):
            raise _UnsupportedError("a node tests a feature past the input's width")
        self.trees = sorted(set(self.tree_ids))
        for t in self.trees:
            if (t, 0) not in self.index:
                raise _UnsupportedError(f"tree {t} has no node 0")

    def children(self, i: int) -> tuple[int, int]:
        t = self.tree_ids[i]
        true_child = self.index.get((t, self.true_ids[i]))
        false_child = self.index.get((t, self.false_ids[i]))
        if true_child is None or false_child is None:
            raise _UnsupportedError(f"tree {t} points at a node it does not have")
        return true_child, false_child

    def preorder(self, tree: int) -> list[int]:
        """The tree's nodes, each before its children and the true branch first."""
        out: list[int] = []
        stack = [self.index[(tree, 0)]]
        while stack:
            i = stack.pop()
            out.append(i)
            if len(out) > len(self.modes):
                raise _UnsupportedError(f"tree {tree} has a cycle")
            if self.modes[i] != "LEAF":
                true_child, false_child = self.children(i)
                stack += [false_child, true_child]
        return out


def _build(
    op: Literal["TreeEnsembleClassifier", "TreeEnsembleRegressor"],
    attrs: dict[str, Any],
    n_features: int,
    post: str,
    average: bool,
) -> TreeTables:
    forest = _Forest(attrs, n_features)
    masks: dict[int, int] = {}  # branch node -> the leaves it leaves reachable when false
    leaf_number: dict[int, int] = {}  # leaf node -> its position in its tree, left to right
    width = 0
    for tree in forest.trees:
        order = forest.preorder(tree)
        leaves = [i for i in order if forest.modes[i] == "LEAF"]
        if len(leaves) > MAX_LEAVES:
            raise _UnsupportedError(
                f"tree {tree} has {len(leaves)} leaves (the kernel takes {MAX_LEAVES})"
            )
        width = max(width, len(leaves))
        leaf_number.update((leaf, n) for n, leaf in enumerate(leaves))
        span: dict[int, tuple[int, int]] = {}  # node -> (first, last) leaf number under it
        for i in reversed(order):
            if forest.modes[i] == "LEAF":
                span[i] = (leaf_number[i], leaf_number[i])
                continue
            true_child, false_child = forest.children(i)
            (lo, hi), last = span[true_child], span[false_child][1]
            span[i] = (lo, last)
            masks[i] = ~(((1 << (hi - lo + 1)) - 1) << lo)  # clears the true subtree's leaves
    columns, classes, binary = _columns(op, attrs)
    position = {tree: n for n, tree in enumerate(forest.trees)}
    prefix = "class" if op == "TreeEnsembleClassifier" else "target"
    leaf_values = np.zeros((len(forest.trees), width, columns), dtype=np.float32)
    for t, n, c, w in zip(
        attrs[f"{prefix}_treeids"].ints, attrs[f"{prefix}_nodeids"].ints,
        attrs[f"{prefix}_ids"].ints, attrs[f"{prefix}_weights"].floats, strict=True,
    ):  # fmt: skip
        leaf = forest.index.get((t, n))
        if leaf is None or leaf not in leaf_number:
            raise _UnsupportedError(f"a weight on tree {t} node {n}, which is not a leaf")
        leaf_values[position[t], leaf_number[leaf], c] += np.float32(w)
    branches = sorted(masks)
    dtype = np.uint32 if width <= 32 else np.uint64
    full = int(np.iinfo(dtype).max)
    branch = {node: n for n, node in enumerate(branches)}

    def step(node: int) -> int:  # walk_rows' encoding of a node
        return branch[node] if node in branch else -1 - leaf_number[node]

    return TreeTables(
        op=op,
        n_features=n_features,
        feature=np.array([forest.features[i] for i in branches], dtype=np.int32),
        threshold=np.array([forest.values[i] for i in branches], dtype=np.float32),
        test=np.array(
            [_MASKED_WHEN[(forest.modes[i], forest.missing[i])] for i in branches], dtype=np.int8
        ),
        tree=np.array([position[forest.tree_ids[i]] for i in branches], dtype=np.int32),
        mask=np.array([masks[i] & full for i in branches], dtype=dtype),
        follow=np.array(
            [[step(c) for c in forest.children(i)] for i in branches], dtype=np.int32
        ).reshape(-1, 2),
        roots=np.array([step(forest.index[(t, 0)]) for t in forest.trees], dtype=np.int32),
        leaves=leaf_values,
        base=_base(attrs, columns, binary=binary),
        post=post,
        average=average,
        binary=binary,
        classes=classes,
    )


def _columns(op: str, attrs: dict[str, Any]) -> tuple[int, list[Any] | None, bool]:
    """(score columns, class labels, binary): a binary classifier scores one column."""
    prefix = "class" if op == "TreeEnsembleClassifier" else "target"
    columns = max(attrs[f"{prefix}_ids"].ints, default=-1) + 1
    if op != "TreeEnsembleClassifier":
        n_targets = attrs["n_targets"].i if "n_targets" in attrs else columns
        if columns != n_targets or columns < 1:
            raise _UnsupportedError("target ids do not cover n_targets")
        return columns, None, False
    labels = list(attrs["classlabels_int64s"].ints) if "classlabels_int64s" in attrs else []
    if not labels and "classlabels_strings" in attrs:
        labels = [s.decode() for s in attrs["classlabels_strings"].strings]
    binary = len(set(attrs["class_ids"].ints)) == 1 and len(labels) == 2
    if binary and set(attrs["class_ids"].ints) != {0}:
        raise _UnsupportedError("a binary classifier whose one score column is not class 0")
    if not binary and columns != len(labels):
        raise _UnsupportedError("class weights do not cover every class")
    return (1 if binary else columns), labels, binary


def _base(attrs: dict[str, Any], columns: int, *, binary: bool) -> Array:
    values = list(attrs["base_values"].floats) if "base_values" in attrs else []
    base = np.zeros(columns, dtype=np.float32)
    if len(values) == 1:
        base[:] = values[0]
    elif values:
        if binary or len(values) != columns:
            raise _UnsupportedError(f"{len(values)} base values for {columns} score columns")
        base[:] = values
    return base


class TreeKernel:
    """Runs a ``TreeTables`` on float32 rows: ``(labels, probabilities)`` for a classifier,
    ``(values,)`` for a regressor, as the ONNX node's outputs would be."""

    def __init__(self, tables: TreeTables, compiled: _Compiled) -> None:
        self.tables = tables
        self._score, self._walk, self._classify = compiled
        #: Batches of fewer rows are walked tree by tree (``walk_rows``), larger ones scored a
        #: block at a time (``score_blocks``); both give the same floats. ``block_rows`` sets it
        #: from timings.
        self.block_rows = 1
        self._classes: Array | None = None
        if tables.classes is not None:  # as onnxruntime gives labels: int64, or str objects
            text = any(isinstance(c, str) for c in tables.classes)
            self._classes = np.asarray(tables.classes, dtype=object if text else np.int64)

    def scores(self, X: Array) -> Array:
        t = self.tables
        rows = X if X.dtype == np.float32 and X.flags.f_contiguous else None
        if rows is None:  # the kernel reads either layout; anything else is made C-contiguous
            rows = np.ascontiguousarray(X, dtype=np.float32)
        out = self.blocks(rows) if rows.shape[0] >= self.block_rows else self.walked(rows)
        if t.average:
            out /= np.float32(t.leaves.shape[0])
        out += t.base
        return out

    def blocks(self, rows: Array) -> Array:
        """The sums of exit-leaf values for float32 ``rows``, a block of rows at a time."""
        t = self.tables
        out = np.zeros((rows.shape[0], t.leaves.shape[2]), dtype=np.float32)
        if rows.shape[0]:
            full = t.mask.dtype.type(np.iinfo(t.mask.dtype).max)
            self._score(
                rows, t.feature, t.threshold, t.test, t.tree, t.mask, t.leaves, out, BLOCK, full
            )
        return out

    def walked(self, rows: Array) -> Array:
        """The same sums, each row walked down each tree."""
        t = self.tables
        out = np.zeros((rows.shape[0], t.leaves.shape[2]), dtype=np.float32)
        self._walk(rows, t.feature, t.threshold, t.test, t.follow, t.roots, t.leaves, out)
        return out

    def run(self, X: Array) -> tuple[Array, ...]:
        scores = self.scores(X)
        t = self.tables
        if t.op == "TreeEnsembleRegressor":
            return (scores,)
        assert self._classes is not None
        proba, top = self._classify(scores, t.binary, _POST_CODE[t.post])
        return self._classes[top], proba


def tree_kernel(
    model: onnx.ModelProto, session: onnxruntime.InferenceSession, *, name: str
) -> TreeKernel | None:
    """A ``TreeKernel`` for ``model`` that agrees with ``session`` on probe rows, or ``None`` (the
    reason logged at debug level; a disagreement at warning level)."""
    tables, why = tree_tables(model)
    if tables is None:
        logger.debug("%s stays with onnxruntime: %s", name, why)
        return None
    compiled = _compiled()
    if compiled is None:
        logger.debug("%s stays with onnxruntime: numba is not installed (modelyard[trees])", name)
        return None
    kernel = TreeKernel(tables, compiled)
    problem = disagreement(kernel, session)
    if problem:
        logger.warning("%s stays with onnxruntime: the tree kernel %s", name, problem)
        return None
    kernel.block_rows = block_rows(kernel)
    return kernel


#: Batch sizes tried by ``block_rows``, largest first.
_SIZES = (BLOCK, 192, 128, 96, 64, 48, 32, 24, 16, 12, 8, 6, 4, 3, 2, 1)


def block_rows(kernel: TreeKernel, *, repeats: int = 5) -> int:
    """The smallest batch (of ``_SIZES``) that scoring by blocks does faster than walking the
    trees, timed on probe rows (best of ``repeats``) from a block down until walking is as fast;
    at most one block (``BLOCK``), the batches QuickScorer is built for.

    A block costs every node of the ensemble once whatever its number of rows, while a walk
    costs one path a tree per row: on a 100-tree HistGradientBoosting model (2,998 nodes)
    blocks took 44 us for one row, 3.4x onnxruntime's 13 us, and 56 us for 32 rows, where
    onnxruntime took 121 us. A model of fewer nodes crosses over sooner, which is why this is
    timed per model; it takes some 30 ms."""
    rows = probe_rows(kernel.tables, n=_SIZES[0])
    fewest = _SIZES[0]
    for n in _SIZES:
        batch = rows[:n]
        if _best(kernel.blocks, batch, repeats) >= _best(kernel.walked, batch, repeats):
            break
        fewest = n
    return fewest


def _best(call: Callable[[Array], object], batch: Array, repeats: int) -> float:
    """The shortest of ``repeats`` timed calls (after one untimed call), in seconds."""
    call(batch)
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        call(batch)
        best = min(best, time.perf_counter() - started)
    return best


def probe_rows(tables: TreeTables, n: int = PROBE_ROWS, seed: int = 0) -> Array:
    """Rows that exercise every test: per feature, its thresholds, the float32 values either side
    of them, and missing values."""
    rng = np.random.default_rng(seed)
    rows = rng.standard_normal((n, tables.n_features)).astype(np.float32)
    for f in range(tables.n_features):
        thresholds = tables.threshold[tables.feature == f]
        if thresholds.size == 0:
            continue
        picked = thresholds[rng.integers(thresholds.size, size=n)]
        side = rng.integers(3, size=n)
        with np.errstate(over="ignore"):  # the float past the largest is inf: a fine probe too
            below = np.nextafter(picked, np.float32(-np.inf))
            above = np.nextafter(picked, np.float32(np.inf))
        picked = np.where(side == 1, below, np.where(side == 2, above, picked))
        rows[:, f] = picked
    rows[rng.random(rows.shape) < 0.05] = np.nan
    return rows


def disagreement(kernel: TreeKernel, session: onnxruntime.InferenceSession) -> str | None:
    rows = probe_rows(kernel.tables)
    expected = session.run(None, {session.get_inputs()[0].name: rows})
    got = kernel.run(rows)
    for layout in (rows, np.asfortranarray(rows)):  # both compiled now, not mid-job
        if not np.array_equal(kernel.walked(layout), kernel.blocks(layout)):
            return "gives other values walking the trees than scoring blocks of rows"
    # column-major rows too (what batch scoring's validator builds): numba compiles that layout
    # now rather than in the middle of a job, and it must give the same answers
    again = kernel.run(np.asfortranarray(rows))
    if not all(np.array_equal(a, b) for a, b in zip(got, again, strict=True)):
        return "gives other answers for the same rows in column-major order"
    if kernel.tables.op == "TreeEnsembleRegressor":
        return _far(got[0], np.asarray(expected[0]).reshape(got[0].shape), "values")
    labels, proba = got
    want_labels, want_proba = (np.asarray(e) for e in expected)
    if want_proba.shape != proba.shape:
        return f"gives probabilities of shape {proba.shape}, onnxruntime {want_proba.shape}"
    far = _far(proba, want_proba, "probabilities")
    if far:
        return far
    top = np.sort(want_proba, axis=1)
    clear = (top[:, -1] - top[:, -2]) > 1e-4  # ties within rounding may go either way
    if not np.array_equal(labels[clear].astype(str), want_labels.reshape(-1)[clear].astype(str)):
        return "gives other labels on probe rows"
    return None


def _far(got: Array, want: Array, what: str) -> str | None:
    if got.shape != want.shape:
        return f"gives {what} of shape {got.shape}, onnxruntime {want.shape}"
    gap = np.abs(got.astype(np.float64) - want) / np.maximum(1.0, np.abs(want))
    worst = float(np.nanmax(gap)) if gap.size else 0.0
    if not np.array_equal(np.isnan(got), np.isnan(want)) or worst > _TOLERANCE:
        return f"differs from onnxruntime's {what} on probe rows (up to {worst:.2g})"
    return None


_Compiled = tuple["Callable[..., None]", "Callable[..., None]", "Callable[..., Any]"]
_COMPILED: list[_Compiled | None] = []


def _compiled() -> _Compiled | None:
    """The numba-compiled block and walk loops (compiled once per process, cached on disk by
    numba)."""
    if not _COMPILED:
        try:
            from modelyard.flavors import _onnx_trees_jit
        except ImportError:
            _COMPILED.append(None)
        else:
            jit = _onnx_trees_jit
            _COMPILED.append((jit.score_blocks, jit.walk_rows, jit.classify))
    return _COMPILED[0]
