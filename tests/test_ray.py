"""Batch generation on Ray Data (`generate --ray`, seq2seq_onnx.ray): a local Ray cluster with 2 CPUs, demo model.

The job's results equal single-process `generate` row for row; bad rows are reported and do not stop
the job; a job interrupted half-way and rerun completes with every row exactly once.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from seq2seq_onnx.jobs import OutputFolder, read_prompts, read_results

if os.environ.get("CI"):
    import ray  # noqa: F401  (CI installs the ray extra: a missing Ray is a failure there, not a skip)
else:
    pytest.importorskip("ray.data")

HELD_OUT = Path(__file__).resolve().parents[1] / "demo" / "t5-demo" / "held_out.jsonl"
BAD_LINES = {7: "this line is not JSON\n", 40: json.dumps({"text": 42}) + "\n"}


def _cli(*args, env=None, **kwargs):
    return subprocess.run([sys.executable, "-m", "seq2seq_onnx", *map(str, args)], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=600, **kwargs)


@pytest.fixture(scope="module")
def prompts_file(tmp_path_factory):
    """The demo's 300 held-out prompts as {"text": ...}, with a malformed line and a non-string text among them."""
    texts = [json.loads(line)["input"] for line in HELD_OUT.read_text().splitlines()]
    lines = []
    for text in texts:
        if len(lines) in BAD_LINES:
            lines.append(BAD_LINES[len(lines)])
        lines.append(json.dumps({"text": text}) + "\n")
    path = tmp_path_factory.mktemp("ray-input") / "prompts.jsonl"
    path.write_text("".join(lines))
    return path


@pytest.fixture(scope="module")
def single_process(demo_export, prompts_file, tmp_path_factory):
    """{id: output} from the single-process command (2 threads), the reference for the Ray job."""
    out = tmp_path_factory.mktemp("single") / "out.jsonl"
    run = _cli("generate", demo_export, "--input", prompts_file, "--output", out, "--threads", 2, "--batch-size", 16)
    assert run.returncode == 1, run.stderr  # 1: the bad lines were reported and skipped
    for number in BAD_LINES:
        assert f"{prompts_file}:{number + 1}:" in run.stderr
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    good_ids = [i for i in range(len(rows) + len(BAD_LINES)) if i not in BAD_LINES]
    reference = {i: row["output"] for i, row in zip(good_ids, rows)}
    assert len(set(reference.values())) > 250  # a fixture that can fail: the answers differ between prompts
    return reference


def test_ray_job_equals_single_process_and_reports_bad_rows(demo_export, prompts_file, single_process, tmp_path):
    out = tmp_path / "results"
    run = _cli("generate", demo_export, "--input", prompts_file, "--output", out, "--ray", "--actors", 2,
               "--threads-per-actor", 1, "--batch-size", 16, "--json")
    assert run.returncode == 1, run.stderr  # some rows failed: reported, the rest generated
    summary = json.loads(run.stdout)
    assert summary["rows"] == 302 and summary["generated"] == 300 and summary["failed"] == 2 and summary["actors"] == 2
    rows = read_results(out)
    assert [r["id"] for r in rows] == list(range(302))
    for row in rows:
        if row["id"] in BAD_LINES:
            assert row["output"] is None and row["error"], row
        else:
            assert row["error"] is None and row["output"] == single_process[row["id"]], row
    assert "not valid JSON" in rows[7]["error"] and "not a string" in rows[40]["error"]
    # a rerun finds everything done: nothing generated, nothing written twice
    again = _cli("generate", demo_export, "--input", prompts_file, "--output", out, "--ray", "--actors", 2, "--json")
    assert json.loads(again.stdout)["skipped"] == 302 and read_results(out) == rows
    # and other options are another job: refused, nothing touched; so is a changed input
    other = _cli("generate", demo_export, "--input", prompts_file, "--output", out, "--ray", "--num-beams", 2)
    assert other.returncode == 2 and "different job (option num_beams: None -> 2)" in other.stderr and read_results(out) == rows
    changed = tmp_path / "prompts.jsonl"
    changed.write_text(prompts_file.read_text() + json.dumps({"text": "spell out: 12"}) + "\n")
    os.utime(changed, ns=(prompts_file.stat().st_atime_ns, prompts_file.stat().st_mtime_ns))
    moved = _cli("generate", demo_export, "--input", changed, "--output", out, "--ray")
    assert moved.returncode == 2 and "the input file changed" in moved.stderr and read_results(out) == rows
    # a refused job leaves nothing behind: not even the folder it would have made
    crowded = _cli("generate", demo_export, "--input", prompts_file, "--output", tmp_path / "new", "--ray", "--actors", 64)
    assert crowded.returncode == 2 and "64 actors x 1 threads = 64 CPUs" in crowded.stderr
    assert not (tmp_path / "new").exists()


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_interrupted_ray_job_resumes_without_duplicates(demo_export, prompts_file, single_process, tmp_path, signum):
    out = tmp_path / "results"
    args = ["generate", demo_export, "--input", prompts_file, "--output", out, "--ray", "--actors", 2, "--batch-size", 4,
            "--output-format", "jsonl", "--json"]
    env = {**os.environ, "SEQ2SEQ_ONNX_FLUSH_ROWS": "8"}
    job = subprocess.Popen([sys.executable, "-m", "seq2seq_onnx", *map(str, args)], env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and len(list(out.glob("part-*.jsonl"))) < 4 and job.poll() is None:
        time.sleep(0.05)
    assert job.poll() is None, "the job ended before it could be interrupted"
    job.send_signal(signum)
    _, stderr = job.communicate(timeout=120)
    assert job.returncode == {signal.SIGINT: 130, signal.SIGTERM: 143}[signum], stderr
    first = read_results(out)
    assert 0 < len(first) < 302, len(first)  # interrupted half-way, what was done is kept
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]  # no temporary files left
    run = subprocess.run([sys.executable, "-m", "seq2seq_onnx", *map(str, args)], env=env, capture_output=True, text=True,
                         timeout=600)
    summary = json.loads(run.stdout)
    assert summary["skipped"] == len(first) and summary["skipped"] + summary["generated"] + summary["failed"] == 302
    rows = read_results(out)
    assert [r["id"] for r in rows] == list(range(302))  # every row exactly once
    assert {r["id"]: r["output"] for r in rows if r["error"] is None} == single_process


def test_generate_dataset_on_a_ray_dataset(demo_export, single_process):
    """The Python helper for people who hold a Ray Dataset; actors x threads never above the CPUs Ray has."""
    import ray

    from seq2seq_onnx.errors import Seq2SeqOnnxError
    from seq2seq_onnx.ray import generate_dataset

    ids = sorted(single_process)[:24]
    texts = [json.loads(line)["input"] for line in HELD_OUT.read_text().splitlines()]
    by_id = {i: texts[i - sum(1 for b in BAD_LINES if b < i)] for i in ids}
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        ds = ray.data.from_items([{"row": i, "text": by_id[i]} for i in ids])
        with pytest.raises(Seq2SeqOnnxError, match="3 actors x 1 threads = 3 CPUs, but the Ray cluster has 2"):
            generate_dataset(ds, demo_export, actors=3)
        with pytest.raises(Seq2SeqOnnxError, match="not an exported model folder"):
            generate_dataset(ds, demo_export.parent, actors=1)
        result = generate_dataset(ds, demo_export, threads_per_actor=2, batch_size=8).take_all()
        assert sorted((r["row"], r["output"]) for r in result) == [(i, single_process[i]) for i in ids]
        scored = generate_dataset(ds.limit(4), demo_export, actors=1, num_beams=2, output_scores=True).take_all()
        assert all(isinstance(r["score"], float) and r["score"] < 0 for r in scored)
    finally:
        ray.shutdown()


def test_output_folder_never_mixes_jobs_nor_deletes_other_files(tmp_path):
    job = {"model": "m", "input": "i", "options": {}}
    folder = OutputFolder(tmp_path / "out", job, "jsonl")
    folder.write([{"id": 3, "prompt": "a", "output": "x", "error": None}])
    folder.close()
    again = OutputFolder(tmp_path / "out", job, "jsonl")
    assert again.done_ids() == {3}
    again.close()
    with pytest.raises(Exception, match="different job"):
        OutputFolder(tmp_path / "out", {**job, "options": {"num_beams": 2}}, "jsonl")
    OutputFolder(tmp_path / "out", {**job, "options": {"num_beams": 2}}, "jsonl", overwrite=True).close()
    held = OutputFolder(tmp_path / "out", {**job, "options": {"num_beams": 2}}, "jsonl")
    assert held.done_ids() == set()
    with pytest.raises(Exception, match="in use by another running job"):  # one job per folder at a time
        OutputFolder(tmp_path / "out", {**job, "options": {"num_beams": 2}}, "jsonl")
    held.write([{"id": 1, "prompt": "b", "output": "y", "error": None}])  # _job.json comes with the first part
    assert read_results(tmp_path / "out") == [{"id": 1, "prompt": "b", "output": "y", "error": None}]
    (tmp_path / "out" / "part-000000000009-1-1.jsonl").write_text('{"id": 9, "pro')  # cut short by a power loss
    with pytest.raises(Exception, match="part-000000000009-1-1.jsonl is unreadable .*move it out"):
        read_results(tmp_path / "out")
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    with pytest.raises(Exception, match="did not write"):
        OutputFolder(tmp_path / "mine", job, "jsonl", overwrite=True)
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep"


def test_parquet_input_and_text_column(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"prompt": ["a", None, "c"], "other": [1, 2, 3]}), tmp_path / "in.parquet")
    prompts = read_prompts(tmp_path / "in.parquet")
    assert [(p.id, p.text) for p in prompts] == [(0, "a"), (1, None), (2, "c")] and "null" in prompts[1].error
    with pytest.raises(Exception, match=r"no 'body' column \(columns: prompt, other\)"):
        read_prompts(tmp_path / "in.parquet", "body")
