"""rmapfuzz export: the C program and the pytest module (compiling and running C is in test_live_oracle)."""

import subprocess
import sys

from rmapfuzz import corpus, export, ops
from rmapfuzz.cli import main

BUG_A = [  # corpus/2.6.34-rc3--same-chain--write.json
    {"op": "mmap", "pid": 0, "start": 1, "pages": 2, "prot": "rw"},
    {"op": "write", "pid": 0, "addr": 1},
    {"op": "fork", "pid": 0},
    {"op": "mmap", "pid": 1, "start": 3, "pages": 1, "prot": "rwx"},
    {"op": "write", "pid": 1, "addr": 3},
]


def rep(kernel="2.6.34-rc3", kind="violation"):
    from rmapfuzz.replay import replay

    steps = ops.parse_steps(BUG_A, 8)
    verdict = replay(steps, kernel, 8)
    assert kind == "divergence" or verdict.violation is not None
    violation = verdict.violation.to_json() if verdict.violation is not None else None
    return corpus.Reproducer(kernel, 8, steps, violation=violation, kind=kind)


def test_c_program_shape():
    text = export.to_c(rep(), "bug-a.json")
    assert "#include <sys/mman.h>" in text and "int main(void)" in text
    assert "/* mmap(P1, [3,4), rwx) */" in text
    assert "mmap(W(3), 1 * PG, PROT_READ | PROT_WRITE | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED" in text
    assert "fork(P0) -> P1" in text
    assert '[0] = "[1,3) rw; "' in text and '[1] = "[1,3) rw; [3,4) rwx; "' in text
    assert "the model of 2.6.34-rc3: same-chain at step 4" in text  # what a kernel with the bug does


def test_c_exports_fail_alloc_as_fail_nth():
    r = corpus.Reproducer("2.6.34", 4, [ops.Mmap(0, 0, 1, "rw"), ops.Write(0, 0), ops.FailAlloc(1), ops.Fork(0)])
    text = export.to_c(r)
    assert "arm(&plan[i])" in text
    assert '{ 3, 0, FORK, -1, 1, 1, "fork(P0) [fail-nth 1: its allocation #1 fails (both tries)] -> ENOMEM" }' in text


def test_pytest_module_runs(tmp_path):
    path = tmp_path / "test_regression.py"
    path.write_text(export.to_pytest(rep(), "bug-a.json"))
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stdout + run.stderr


def test_pytest_module_fails_when_the_violation_is_gone(tmp_path):
    r = rep()
    r.kernel = "2.6.34"  # fixed: the recorded violation does not happen there
    path = tmp_path / "test_stale.py"
    path.write_text(export.to_pytest(r))
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 1


def test_pytest_divergence_module_compiles():
    r = rep(kernel="current", kind="divergence")
    r.violation = {"invariant": "divergence", "step": 1, "message": "L0: x"}
    text = export.to_pytest(r)
    compile(text, "generated", "exec")
    assert "xfail" in text


def test_cli_export(tmp_path, capsys):
    src = tmp_path / "bug.json"
    src.write_text(corpus.dumps(rep()))
    assert main(["export", str(src), "--c"]) == 0
    assert "int main(void)" in capsys.readouterr().out
    out = tmp_path / "t.py"
    assert main(["export", str(src), "--pytest", "-o", str(out)]) == 0
    assert "def test_" in out.read_text()
    assert main(["export", str(src)]) == 2  # --c or --pytest is required
    assert main(["export", str(tmp_path / "missing.json"), "--c"]) == 2
