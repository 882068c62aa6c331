"""workbench/evaluate.py end to end on a tiny revisitop-layout dataset made from real photos.

Models are random-init R50s with BN statistics estimated on a few photos, at ~100 px images:
the numbers say nothing about DOLG's quality, only that extraction, caching, search,
re-ranking and scoring are wired as the protocol requires (the query crop recovers the exact
database photo, so its "easy" copy must come first).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch

from tests.models.evaluation.tiny_revisitop import (
    PHOTOS,
    REPO,
    TinyDataset,
    _photo_paths,
    build_tiny_revisitop,
    load_script,
    save_tiny_checkpoint,
)
from workbench.evaluation.extraction import make_embed, make_prepare
from workbench.evaluation.revisitop import evaluate_features
from workbench.evaluation.search import SearchOptions

pytestmark = [
    pytest.mark.torch,
    pytest.mark.skipif(not PHOTOS.is_dir(), reason="../shared/data/photos is not available"),
]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    # Two shared cores: one intra-op thread is several times faster than two contended ones.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def evaluate() -> ModuleType:
    return load_script("evaluate")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> TinyDataset:
    return build_tiny_revisitop(tmp_path_factory.mktemp("revisitop"))


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("ckpt")
    return save_tiny_checkpoint(folder / "tiny_dolg.pth", _photo_paths(PHOTOS)[:3])


@pytest.fixture(scope="module")
def artifact(checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same weights exported through workbench/export.py (the service's artifact)."""
    out = tmp_path_factory.mktemp("artifact") / "model"
    load_script("export").run(["--checkpoint", str(checkpoint), "--out", str(out)])
    return out


def _base(dataset: TinyDataset, *extra: str) -> list[str]:
    return ["--data-root", str(dataset.root), "--dataset", dataset.name, "--threads", "1",
            *extra]


def _check_table(result: dict) -> None:
    res = result["results"]
    assert set(res["mAP"]) == {"easy", "medium", "hard"}
    for setup in ("easy", "medium", "hard"):
        assert 0.0 <= res["mAP"][setup] <= 100.0
        assert set(res["mP@k"][setup]) == {"1", "5", "10"}
    assert res["n_evaluated"] == {"easy": 4, "medium": 4, "hard": 4}
    assert ">> roxford5k: mAP E:" in result["table"]


def test_onnx_exact_then_cached_rerank_and_ivfpq(
    evaluate: ModuleType, dataset: TinyDataset, artifact: Path, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    cache, out = tmp_path / "cache", tmp_path / "results.json"
    result = evaluate.run(_base(dataset, "--model-dir", str(artifact), "--cache-dir", str(cache),
                                 "--out", str(out)))
    assert json.loads(out.read_text()) == json.loads(json.dumps(result))
    assert "Medium" in capsys.readouterr().out
    _check_table(result)
    assert (result["n_db"], result["n_queries"], result["n_distractors"]) == (20, 4, 0)
    assert result["search"]["type"] == "exact" and result["search"]["ranking_length"] == 20
    ext = result["extraction"]
    assert ext["cached"] == {"db": False, "queries": False}
    assert ext["query_crop"] == "int-truncation"
    assert ext["preprocessing"]["scales"] == [0.3535, 0.5, 0.7071, 1.0, 1.4142]
    assert result["model"]["backend"] == "onnx" and result["model"]["source"]["kind"] == "ours"
    # The cropped query is the database photo itself (re-encoded): first for every query.
    assert result["results"]["mP@k"]["easy"]["1"] == 100.0
    assert result["results"]["mAP"]["easy"] >= 75.0
    described = {json.loads(p.read_text())["name"]: json.loads(p.read_text())
                 for p in cache.glob("*.json")}
    assert set(described) == {"roxford5k-db", "roxford5k-queries"}
    desc = described["roxford5k-queries"]["description"]
    assert desc["model"]["onnx_sha256"] == result["model"]["onnx_sha256"]
    assert desc["dataset"] == "roxford5k" and desc["preprocessing"]["scales"][0] == 0.3535
    assert described["roxford5k-db"]["rows"] == 20 and described["roxford5k-db"]["dim"] == 512

    # Same features from the cache: SuperGlobal on the exact ranking, then the IVF-PQ store.
    reranked = evaluate.run(_base(dataset, "--model-dir", str(artifact), "--cache-dir",
                                   str(cache), "--rerank", "superglobal"))
    assert reranked["extraction"]["cached"] == {"db": True, "queries": True}
    assert reranked["results_global"] == result["results"]
    assert reranked["rerank"]["method"] == "superglobal" and reranked["rerank"]["M"] == 20
    _check_table(reranked)
    ann = evaluate.run(_base(dataset, "--model-dir", str(artifact), "--cache-dir", str(cache),
                              "--search", "ivfpq", "--top-k", "10", "--rerank", "superglobal",
                              "--superglobal-m", "8"))
    assert ann["search"]["type"] == "ivfpq" and ann["search"]["top_k"] == 10
    # 20 vectors are far too few to train IVF-PQ: the store says it searched exactly.
    assert ann["search"]["index_type"] == "flat" and "under-estimate" in ann["search"]["note"]
    assert ann["rerank"]["M"] == 8
    _check_table(ann)


def test_onnx_and_torch_extraction_agree(
    evaluate: ModuleType, dataset: TinyDataset, checkpoint: Path, artifact: Path
) -> None:
    """The exported graph through the service's session and the torch checkpoint give the same
    descriptors through the same preprocessing, database images and cropped queries alike."""
    paths = [dataset.root / dataset.name / "jpg" / f"{dataset.gnd['imlist'][0]}.jpg",
             dataset.root / dataset.name / "jpg" / "q0.jpg"]
    boxes = [None, tuple(dataset.gnd["gnd"][0]["bbx"])]
    vectors = []
    for source in (["--model-dir", str(artifact)], ["--checkpoint", str(checkpoint)]):
        args = evaluate.parse_args(_base(dataset, *source))
        backend = evaluate.backend(args)
        prepare = make_prepare(backend.prep)
        embed = make_embed(backend.run, backend.prep)
        vectors.append(np.stack([embed(prepare(p, b)) for p, b in zip(paths, boxes,
                                                                      strict=True)]))
    onnx_vecs, torch_vecs = vectors
    cosines = (onnx_vecs * torch_vecs).sum(axis=1)
    assert cosines.min() >= 0.999, cosines


def test_torch_checkpoint_end_to_end(
    evaluate: ModuleType, dataset: TinyDataset, checkpoint: Path
) -> None:
    result = evaluate.run(_base(dataset, "--checkpoint", str(checkpoint), "--scales",
                                 "0.7071,1.0", "--superglobal-gem-p", "4.6",
                                 "--scale-pooling", "max"))
    _check_table(result)
    assert result["model"]["backend"] == "torch" and result["model"]["kind"] == "ours"
    assert result["model"]["superglobal"] == "GeM+ p=4.6"
    assert result["extraction"]["preprocessing"]["scale_pooling"] == "max"
    assert result["results"]["mP@k"]["easy"]["1"] == 100.0


def test_resnet_pool_exports_and_evaluates(
    evaluate: ModuleType, dataset: TinyDataset, tmp_path: Path
) -> None:
    """The classic baseline goes through the same artifact contract and evaluation."""
    out = tmp_path / "resnet_pool"
    load_script("export").run([
        "--random-init", "--architecture", "resnet_pool", "--pooling", "gem", "--out", str(out),
        "--calibrate-bn", str(dataset.root / dataset.name / "jpg"), "--calib-limit", "3",
        "--calib-max-side", "96", "--calib-scales", "1.0"])
    result = evaluate.run(_base(dataset, "--model-dir", str(out), "--scales", "0.7071,1.0"))
    assert result["model"]["architecture"] == "resnet_pool"
    _check_table(result)
    assert result["results"]["mP@k"]["easy"]["1"] == 100.0


def test_onnx_evaluation_runs_without_torch(dataset: TinyDataset, artifact: Path) -> None:
    """Evaluating an artifact needs only the service's dependencies (torch stays unloaded)."""
    code = (
        "import sys\n"
        "from tests.models.evaluation.tiny_revisitop import load_script\n"
        "evaluate = load_script('evaluate')\n"
        f"r = evaluate.run({_base(dataset, '--model-dir', str(artifact), '--scales', '1.0')!r})\n"
        "assert r['results']['mP@k']['easy']['1'] == 100.0\n"
        "print('torch' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "False"


def test_superglobal_constant_matches_the_ops(evaluate: ModuleType) -> None:
    from models.layers.functional import SUPERGLOBAL_GEM_P

    assert evaluate.SUPERGLOBAL_GEM_P == SUPERGLOBAL_GEM_P


def test_superglobal_modules_need_a_torch_checkpoint(
    evaluate: ModuleType, dataset: TinyDataset, artifact: Path
) -> None:
    with pytest.raises(SystemExit):
        evaluate.parse_args(_base(dataset, "--model-dir", str(artifact), "--superglobal-rgem"))


# ------------------------------------------------------------------ search + scoring on synthetic
# features: no model, exact closed forms.


def _perfect(n_db: int = 800, n_q: int = 5, dim: int = 32, seed: int = 0):
    """Unit features whose positives equal their query up to tiny noise; random negatives."""
    rng = np.random.default_rng(seed)
    db = rng.standard_normal((n_db, dim)).astype(np.float32)
    queries = rng.standard_normal((n_q, dim)).astype(np.float32)
    gnd = []
    ids = rng.permutation(n_db)
    for q in range(n_q):
        easy, hard, junk = ids[6 * q : 6 * q + 2], ids[6 * q + 2 : 6 * q + 4], ids[6 * q + 4 :
                                                                                  6 * q + 6]
        for i in (*easy, *hard):
            db[i] = queries[q] + 0.01 * rng.standard_normal(dim)
        gnd.append({"bbx": [0, 0, 1, 1], "easy": easy.tolist(), "hard": hard.tolist(),
                    "junk": junk.tolist()})
    db /= np.linalg.norm(db, axis=1, keepdims=True)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    return db, queries, gnd


def _args(evaluate: ModuleType, *extra: str) -> SearchOptions:
    return SearchOptions.from_mapping(vars(evaluate.parse_args([
        "--data-root", ".", "--dataset", "x", "--checkpoint", "x", "--threads", "1", *extra,
    ])))


@pytest.mark.parametrize("extra", [
    (),
    ("--rerank", "superglobal", "--superglobal-m", "50"),
    ("--search", "ivfpq", "--top-k", "100"),
    ("--search", "ivfpq", "--top-k", "100", "--rerank", "superglobal"),
])
def test_perfect_features_score_100(evaluate: ModuleType, extra: tuple[str, ...]) -> None:
    db, queries, gnd = _perfect()
    out = evaluate_features(db, queries, gnd, _args(evaluate, *extra), "synthetic")
    for setup in ("easy", "medium", "hard"):
        assert out["results"]["mAP"][setup] == 100.0
        assert out["results"]["mP@k"][setup] == {"1": 100.0, "5": 100.0, "10": 100.0}
    if "ivfpq" in extra:
        # 800 vectors are enough for the store to train IVF-PQ (>= 39 x 16).
        assert out["search"]["index_type"] == "ivfpq"
    json.dumps(out)  # what --out writes: plain JSON types only
    if "superglobal" in extra:
        assert out["results_global"]["mAP"]["medium"] == 100.0


def test_bad_features_score_low(evaluate: ModuleType) -> None:
    db, queries, gnd = _perfect()
    out = evaluate_features(db, -queries, gnd, _args(evaluate), "synthetic")
    # Positives are now the least similar items: AP of 4 positives at the very end of 800.
    assert out["results"]["mAP"]["medium"] < 1.0
    assert out["results"]["mP@k"]["medium"]["10"] == 0.0
