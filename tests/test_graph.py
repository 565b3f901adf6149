"""show --dot / --graph-svg: the anon_vma graph a kernel developer draws, checked structurally."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from rmapfuzz import graph
from rmapfuzz.cli import main

CORPUS = Path(__file__).resolve().parent.parent / "corpus"
FORK = CORPUS / "3.19--reuse-safe--fork.json"  # five processes, three anon_vmas, 3.19's degree
BUG_A = CORPUS / "2.6.34-rc3--merge-superset--mprotect.json"  # a page left on a freed anon_vma
MODERN = CORPUS / "6.16--merge-superset--mremap-maymove-fixed.json"


def _dot(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = main(["show", *argv, "--dot", "-"])
    return code, capsys.readouterr().out


def _edges(text: str) -> set[tuple[str, str, str]]:
    """(from, to, label) of every edge."""
    return {(a, b, label) for a, b, label in re.findall(r'"([^"]+)" -> "([^"]+)" \[[^]]*?label="([^"]*)"', text)}


def _node(text: str, name: str) -> str:
    match = re.search(rf'^\s*"{re.escape(name)}" \[(.*)\];$', text, re.M)
    assert match, f"no node {name}"
    return match.group(1)


def test_the_graph_of_a_fork_tree(capsys: pytest.CaptureFixture[str]) -> None:
    code, text = _dot(capsys, str(FORK))
    assert code == 1  # the violating step is drawn
    assert text.startswith("digraph rmap {") and text.rstrip().endswith("}")
    assert {f"cluster_P{pid}" for pid in range(5)} <= set(re.findall(r'subgraph "(cluster_P\d)"', text))
    for av in ("AV1", "AV2", "AV3"):
        assert "refcount" in _node(text, av) and "degree" in _node(text, av)  # 3.19's counters
    edges = _edges(text)
    assert {("AV2", "AV1", "parent"), ("AV3", "AV2", "parent"), ("AV3", "AV1", "root")} <= edges
    assert not any(a == b for a, b, _ in edges)  # a root's own parent and root are not drawn
    assert ("page1", "AV1", "mapping") in edges
    chains = [e for e in edges if e[0].startswith("VMA") and e[2].isdigit()]
    assert len(chains) >= 8  # every anon_vma_chain link of the four faulted processes
    assert "penwidth=3" in _node(text, "AV3")  # the object the broken invariant names
    assert "cluster_legend" in text and "counters here: refcount, degree" in text


def test_freed_objects_are_marked(capsys: pytest.CaptureFixture[str]) -> None:
    _code, text = _dot(capsys, str(BUG_A))
    assert 'label="AV1(freed)' in text and 'color="red"' in _node(text, "AV1")
    assert ("page1", "AV1", "mapping") in _edges(text)  # the page points at the freed anon_vma: bug A


def test_each_generation_shows_its_own_counters(capsys: pytest.CaptureFixture[str]) -> None:
    _code, text = _dot(capsys, str(MODERN))
    assert "num_children" in text and "num_active_vmas" in text and "degree" not in _node(text, "AV1")
    _code, text = _dot(capsys, str(BUG_A))
    assert "refcount" not in text.split("cluster_legend")[0]  # 2.6.34-rc3 has no refcount, parent or root


def test_step_chooses_the_state(capsys: pytest.CaptureFixture[str]) -> None:
    code, text = _dot(capsys, str(FORK), "--step", "0")
    assert code == 0 and "after step 0" in text and "AV3" not in text
    assert main(["show", str(FORK), "--step", "99", "--dot", "-"]) == 2
    assert main(["show", str(FORK), "--step", "0"]) == 2  # --step without a graph to draw


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz's dot is not installed (apt-get install graphviz)")
def test_svg_through_graphviz(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "g.svg"
    assert main(["show", str(FORK), "--graph-svg", str(out)]) == 1
    svg = out.read_text()
    assert "<svg" in svg and "AV3" in svg and "legend" in svg


def test_a_missing_graphviz_is_an_infrastructure_failure(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(graph, "which", lambda name: None)
    assert main(["show", str(FORK), "--graph-svg", str(tmp_path / "g.svg")]) == 3
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "apt-get install graphviz" in err


def test_a_difference_entry_draws_both_kernels(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tests.test_diff import _difference

    path = _difference(tmp_path)
    code, text = _dot(capsys, str(path))
    assert code == 1
    assert 'subgraph "cluster_A: 6.16"' in text and 'subgraph "cluster_B: 6.18.8"' in text
    assert '"A: 6.16AV1"' in text and '"B: 6.18.8AV1"' in text


def test_the_graph_and_the_step_view_are_not_asked_together(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["show", str(FORK), "--dot", "-", "--json"]) == 2
    assert "not both" in capsys.readouterr().err
