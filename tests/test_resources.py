"""Resource sizing of the workflow's jobs, and the SLURM preflight check against fake sinfo/scontrol/sacctmgr/sbatch."""

from __future__ import annotations

import math
import os
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from attnrank import resources, slurm
from attnrank.errors import InputError
from attnrank.resources import Limits
from attnrank.slurm import Job, SlurmError

GB = 1024


@pytest.fixture(autouse=True)
def no_limits():
    resources.set_limits(Limits())
    yield
    resources.set_limits(Limits())


def _weights(folder: Path, params: int, files: int = 1) -> Path:
    """A model folder with ``params`` float32 parameters split over ``files`` safetensors files."""
    from safetensors.numpy import save_file

    folder.mkdir(parents=True, exist_ok=True)
    per = params // files
    for i in range(files):
        save_file({f"w{i}": np.zeros((per // 8, 8), dtype=np.float32)}, str(folder / f"model-{i:05d}.safetensors"))
    return folder


# ------------------------------------------------------------------------------------------------------- sizing
def test_parameter_count_comes_from_the_safetensors_headers(tmp_path):
    assert resources.model_params(_weights(tmp_path / "m", 4096, files=2)) == 4096
    assert resources.model_params(tmp_path / "missing") is None
    assert resources.model_params(None) is None


def test_model_memory_grows_with_the_model_and_is_bigger_on_cpu(tmp_path):
    small, big = _weights(tmp_path / "s", 8_000_000), _weights(tmp_path / "b", 80_000_000)
    spec = {"source": "hf", "dtype": "auto"}
    gpu_s, gpu_b = (resources.model_job(spec, m, gpu=True)["mem_mb"] for m in (small, big))
    cpu_s, cpu_b = (resources.model_job(spec, m, gpu=False)["mem_mb"] for m in (small, big))
    assert gpu_s < gpu_b and cpu_s < cpu_b
    assert cpu_b > gpu_b  # float32 weights and activations stay in host memory
    # 80M parameters: bf16 on the GPU (160 MB, x1.5 while loading), float32 on the CPU (320 MB, x3)
    assert gpu_b == pytest.approx(resources.TORCH_MB + 1.5 * 80e6 * 2 / 2**20, abs=1)
    assert cpu_b == pytest.approx(resources.TORCH_MB + 3 * 80e6 * 4 / 2**20, abs=1)


def test_model_threads_follow_the_mode_and_the_size(tmp_path):
    small = _weights(tmp_path / "s", 8_000)
    assert resources.model_job({"source": "tiny"}, small, gpu=True)["threads"] == 2
    assert resources.model_job({"source": "tiny"}, small, gpu=False)["threads"] == 2
    assert [resources.cpu_threads(p) for p in (None, 1e8, 2e9, 8e9)] == [2, 2, 4, 8]


def test_config_threads_override_the_estimate(tmp_path):
    model = _weights(tmp_path / "m", 8_000)
    assert resources.model_job({"source": "tiny", "threads": 1}, model, gpu=False)["threads"] == 1
    assert resources.model_job({"source": "hf", "threads": 6}, model, gpu=True)["threads"] == 6


def test_config_mem_mb_overrides_the_estimate(tmp_path):
    model = _weights(tmp_path / "m", 8_000)
    assert resources.model_job({"source": "hf", "mem_mb": 48000}, model)["mem_mb"] == 48000
    assert resources.model_job({"source": "hf", "mem_mb": 48000}, model, attempt=2)["mem_mb"] == 96000
    assert resources.prepare_job({"source": "hf", "mem_mb": 5000})["mem_mb"] == 5000


def test_an_unprepared_model_gets_a_guess_that_the_cluster_caps(tmp_path):
    assert resources.model_job({"source": "tiny"}, tmp_path / "not-yet")["mem_mb"] == resources.TORCH_MB
    assert resources.model_job({"source": "hf"}, tmp_path / "not-yet")["mem_mb"] == resources.UNPREPARED_MODEL_MB
    resources.set_limits(Limits(mem_mb=8000, threads=2))
    assert resources.model_job({"source": "hf"}, tmp_path / "not-yet")["mem_mb"] == 8000
    assert resources.prepare_job({"source": "hf"})["mem_mb"] == 8000
    assert resources.prepare_job({"source": "tiny"})["mem_mb"] == resources.TORCH_MB


def test_retries_ask_for_more_memory_but_never_more_than_the_largest_node():
    resources.set_limits(Limits(mem_mb=20 * GB, threads=2))
    asks = [resources.memory(8000, attempt=a) for a in (1, 2, 3)]
    assert asks == [8000, 16000, 20 * GB]
    assert resources.threads(8) == 2 and resources.threads(1) == 1


def test_a_need_above_the_largest_node_is_not_capped_silently(tmp_path):
    """Capping a real need would only move the failure into the job (out of memory); the preflight reports it."""
    resources.set_limits(Limits(mem_mb=4000, threads=2))
    assert resources.model_job({"source": "hf", "mem_mb": 48000}, None)["mem_mb"] == 48000


def test_first_stage_memory_and_threads_follow_the_corpus(tmp_path):
    small, big = tmp_path / "small.parquet", tmp_path / "big.parquet"
    small.write_bytes(b"x" * (1 << 20))
    with open(big, "wb") as f:
        f.truncate(200 << 20)
    s, b = resources.corpus_job(small), resources.corpus_job(big)
    assert s["mem_mb"] < b["mem_mb"] and s["threads"] < b["threads"]
    assert resources.corpus_job(tmp_path / "not-yet.parquet")["mem_mb"] == resources.FIRST_STAGE_MB
    assert resources.corpus_job(big, attempt=2)["mem_mb"] == 2 * b["mem_mb"]


def test_cpu_only_switch_reads_config_and_command_line_values():
    from attnrank.config import validate

    base = {"datasets": {"d": {"source": "synthetic"}}, "retrievers": {"bm25": {"kind": "bm25"}}}
    assert resources.cpu_only(validate(base)) is False
    for value, expected in ((True, True), ("true", True), ("True", True), (False, False), ("false", False)):
        assert resources.cpu_only(validate({**base, "cpu_only": value})) is expected
    with pytest.raises(InputError, match="cpu_only"):
        validate({**base, "cpu_only": "yes"})


def test_gres_strings_count_gpus():
    assert [slurm.gres_gpus(g) for g in ("(null)", "gpu:4", "gpu:a100:4(S:0-1)", "gpu:a100:2,gpu:v100:1", "shard:8")] == [0, 4, 4, 3, 0]


# ---------------------------------------------------------------------------------------------------- preflight
FAKE = """#!{python}
import os, sys
name = os.path.basename(sys.argv[0])
with open(os.path.join(os.environ["FAKE_DIR"], "calls.log"), "a") as f:
    f.write(name + " " + " ".join(sys.argv[1:]) + "\\n")
out = os.environ.get("FAKE_" + name.upper() + "_OUT", "")
err = os.environ.get("FAKE_" + name.upper() + "_ERR", "")
if out:
    print(out.replace("\\\\n", "\\n"))
if err:
    print(err, file=sys.stderr)
sys.exit(int(os.environ.get("FAKE_" + name.upper() + "_RC", "0")))
"""
NODES = "c1|cpu*|2|20000|(null)\nc2|cpu*|2|20000|(null)"
GPU_NODES = NODES + "\ng1|gpu|16|128000|gpu:a100:4(S:0-1)"
CONF = "AccountingStorageType = accounting_storage/none\nMinJobAge = 300 sec"


@pytest.fixture
def fake_slurm(tmp_path, monkeypatch):
    """Fake SLURM commands on PATH; set their output with env(name, out=..., err=..., rc=...)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    tools = ("sbatch", "squeue", "sinfo", "scontrol", "sacctmgr", "sacct")
    for tool in tools:
        (bin_dir / tool).write_text(FAKE.format(python=sys.executable))
        (bin_dir / tool).chmod(0o755)
    monkeypatch.setenv("PATH", str(bin_dir))  # only the fakes: a real SLURM installation must not answer
    monkeypatch.setenv("FAKE_DIR", str(tmp_path))

    class Fake:
        bin = bin_dir

        def set(self, tool, out="", err="", rc=0):
            monkeypatch.setenv(f"FAKE_{tool.upper()}_OUT", out)
            monkeypatch.setenv(f"FAKE_{tool.upper()}_ERR", err)
            monkeypatch.setenv(f"FAKE_{tool.upper()}_RC", str(rc))

        def remove(self, tool):
            (bin_dir / tool).unlink()

        def calls(self, tool):
            log = tmp_path / "calls.log"
            return [line.split(" ", 1)[1] for line in log.read_text().splitlines() if line.split(" ", 1)[0] == tool] if log.exists() else []

    fake = Fake()
    fake.set("sinfo", NODES)
    fake.set("scontrol", CONF)
    return fake


def _jobs(*jobs):
    return lambda limits: list(jobs)


SMALL = Job("retrieve", mem_mb=2000, threads=1, runtime=240)


def test_preflight_passes_and_returns_the_largest_node(fake_slurm):
    assert slurm.preflight(_jobs(SMALL)) == Limits(mem_mb=20000, threads=2)
    assert resources.limits() == Limits(mem_mb=20000, threads=2)  # requests are capped from now on
    (call,) = fake_slurm.calls("sbatch")
    assert "--test-only" in call and "--mem=2000" in call and "--cpus-per-task=1" in call and "--time=240" in call


def test_preflight_sizes_jobs_under_the_limits_it_found(fake_slurm):
    seen = []
    slurm.preflight(lambda limits: seen.append(limits) or [SMALL])
    assert seen == [Limits(mem_mb=20000, threads=2)]


def test_missing_slurm_commands_are_one_message(fake_slurm):
    fake_slurm.remove("sinfo")
    fake_slurm.remove("sbatch")
    with pytest.raises(SlurmError, match=r"command\(s\) sbatch, sinfo not found on PATH: run snakemake --profile slurm on a login node"):
        slurm.preflight(_jobs(SMALL))


def test_sinfo_failing_names_the_controller(fake_slurm):
    fake_slurm.set("sinfo", err="slurm_load_partitions: Unable to contact slurm controller (connect failure)", rc=1)
    with pytest.raises(SlurmError, match=r"`sinfo` failed \(slurm_load_partitions: Unable to contact slurm controller"):
        slurm.preflight(_jobs(SMALL))


def test_a_job_bigger_than_every_node_is_named_with_what_the_cluster_offers(fake_slurm):
    big = Job("attention_scores", mem_mb=48000, threads=2, label=" (model=llama)")
    with pytest.raises(SlurmError) as e:
        slurm.preflight(_jobs(SMALL, big))
    msg = str(e.value)
    assert "attention_scores (model=llama) asks for 2 CPUs, 48000 MB; the largest node of partition 'cpu' has 2 CPUs, 20000 MB" in msg
    assert "too little memory: lower models.<m>.mem_mb" in msg and "nothing was submitted" in msg
    assert fake_slurm.calls("sbatch") == []  # not even a test submission


def test_too_many_cpus_is_reported(fake_slurm):
    with pytest.raises(SlurmError, match=r"bm25_index asks for 4 CPUs, 2000 MB; the largest node"):
        slurm.preflight(_jobs(Job("bm25_index", mem_mb=2000, threads=4)))


def test_gpu_jobs_on_a_cluster_without_gpus_point_to_cpu_only_mode(fake_slurm):
    jobs = [Job(rule, mem_mb=4000, threads=2, gpus=1) for rule in ("attention_scores", "rerank_text")]
    with pytest.raises(SlurmError) as e:
        slurm.preflight(_jobs(*jobs))
    lines = str(e.value).splitlines()
    assert "  attention_scores asks for 2 CPUs, 4000 MB, 1 GPU; the largest node of partition 'cpu' has 2 CPUs, 20000 MB, 0 GPUs (node c1)" in lines
    assert [line for line in lines if "--config cpu_only=true" in line] == [
        "  no GPU in partition 'cpu': send the GPU rules to a GPU partition (set-resources in profiles/slurm/config.yaml), "
        "or run CPU-only with --config cpu_only=true"
    ]  # said once, not per rule


def test_gpu_jobs_fit_the_gpu_partition(fake_slurm):
    fake_slurm.set("sinfo", GPU_NODES)
    job = Job("attention_scores", mem_mb=48000, threads=2, gpus=1, partition="gpu")
    assert slurm.preflight(_jobs(job), partitions={"gpu"}) == Limits(mem_mb=128000, threads=16)
    (call,) = fake_slurm.calls("sbatch")
    assert "--gpus=1" in call and "--partition=gpu" in call


def test_an_unknown_partition_lists_the_known_ones(fake_slurm):
    with pytest.raises(SlurmError, match=r"partition 'gpu' does not exist \(sinfo lists: cpu\)"):
        slurm.preflight(_jobs(Job("attention_scores", mem_mb=4000, threads=2, partition="gpu")), partitions={"gpu"})


def test_the_schedulers_own_rejection_is_quoted(fake_slurm):
    fake_slurm.set("sbatch", err="sbatch: error: Batch job submission failed: Invalid account or account/partition combination specified", rc=1)
    with pytest.raises(SlurmError, match=r"retrieve \(1 CPUs, 2000 MB\): sbatch --test-only says: sbatch: error: Batch job submission failed: Invalid account"):
        slurm.preflight(_jobs(SMALL), account="nope")
    assert "--account=nope" in fake_slurm.calls("sbatch")[0]


def test_only_each_rules_largest_job_is_test_submitted(fake_slurm):
    jobs = [Job("rerank", mem_mb=m, threads=1) for m in (1000, 3000, 2000)] + [SMALL]
    slurm.preflight(_jobs(*jobs))
    calls = fake_slurm.calls("sbatch")
    assert len(calls) == 2 and any("--mem=3000" in c for c in calls)


def test_sacct_status_without_accounting_would_hang_and_is_refused(fake_slurm):
    with pytest.raises(SlurmError, match=r"slurm-status-command is 'sacct' but the cluster has no accounting storage.*squeue"):
        slurm.preflight(_jobs(SMALL), status_command="sacct")


def test_a_short_min_job_age_would_switch_the_plugin_to_sacct(fake_slurm):
    fake_slurm.set("scontrol", "AccountingStorageType = accounting_storage/none\nMinJobAge = 60 sec")
    with pytest.raises(SlurmError, match=r"MinJobAge=60s is below 3 x slurm-init-seconds-before-status-checks \(40s\).*at most 20"):
        slurm.preflight(_jobs(SMALL), status_command="squeue", init_seconds=40)
    slurm.preflight(_jobs(SMALL), status_command="squeue", init_seconds=20)


def test_with_accounting_sacct_polling_is_fine_and_the_account_is_checked(fake_slurm):
    fake_slurm.set("scontrol", "AccountingStorageType = accounting_storage/slurmdbd\nMinJobAge = 300 sec")
    fake_slurm.set("sacctmgr", "proj_a\nproj_b")
    slurm.preflight(_jobs(SMALL), account="proj_b", status_command="sacct")
    with pytest.raises(SlurmError, match=r"account: 'proj_c' \(slurm_account\) is not one of yours: proj_a, proj_b"):
        slurm.preflight(_jobs(SMALL), account="proj_c", status_command="sacct")


def test_no_account_and_no_default_account_is_reported(fake_slurm):
    fake_slurm.set("scontrol", "AccountingStorageType = accounting_storage/slurmdbd\nMinJobAge = 300 sec")
    fake_slurm.set("sacctmgr", "")
    with pytest.raises(SlurmError, match=r"account: none set and user '.+' has no default account: set slurm_account"):
        slurm.preflight(_jobs(SMALL))
    slurm.preflight(_jobs(SMALL), no_account=True)


def test_every_problem_is_one_line_of_one_message(fake_slurm):
    jobs = [Job("a", mem_mb=99999, threads=1), Job("b", mem_mb=1000, threads=9), Job("c", 1000, 1, partition="x")]
    with pytest.raises(SlurmError) as e:
        slurm.preflight(_jobs(*jobs), status_command="sacct", partitions={"x"})
    first, *body, last = str(e.value).splitlines()
    assert first == "SLURM preflight failed (nothing was submitted):" and "docs/cluster.md" in last
    starts = sorted(line.strip().split(" ")[0] for line in body)
    assert starts == ["a", "b", "partition", "status", "too"]  # one line per problem, then the hint


def test_partition_file_limits_cap_below_the_nodes(fake_slurm):
    fake_slurm.set("sinfo", GPU_NODES)
    pfile = {"partitions": {"cpu": {"max_mem_mb": 16000, "max_threads": 2}, "gpu": {"max_mem_mb": 64000, "max_threads": 8, "max_gpu": 4}}}
    assert slurm.preflight(_jobs(SMALL), partition_file=pfile) == Limits(mem_mb=64000, threads=8)
    assert fake_slurm.calls("sbatch") == []  # the plugin picks partitions per job: no --test-only on the default


def test_snakemake_preflight_does_nothing_for_other_executors():
    class Workflow:
        executor_plugin = type("P", (), {"name": "local"})()

    assert slurm.snakemake_preflight(Workflow()) is None
    assert slurm.snakemake_preflight(object()) is None


def test_workflow_rules_use_the_one_model_resources_helper():
    """Every rule that runs a model gets its GPU/memory/batch resources from model_resources (no copied blocks)."""
    rules = Path(__file__).resolve().parents[1] / "workflow" / "rules"
    text = "\n".join(p.read_text() for p in sorted(rules.glob("*.smk")))
    assert text.count("**model_resources(") == 4  # attention_scores, detection_scores, rerank_text, latency
    assert "gpu=1" not in text.replace('res["gpu"] = 1', "")
    assert "32000" not in text


def test_text_jobs_longest_first():
    p = resources.text_priority
    assert p({"kind": "rankgpt"}) > p({"kind": "setwise"}) > p({"kind": "yesno"})  # generation > many passages > one
    assert p({"kind": "setwise", "scorer": "generation"}) == p({"kind": "rankgpt"})
    assert p({"kind": "rankgpt", "scoring": "likelihood"}) == p({"kind": "setwise"})
    assert p({"kind": "qlm"}) == p({"kind": "pointwise"}) == p({"kind": "yesno"}) == 0
    assert max(p({"kind": k}) for k in ("rankgpt", "setwise", "qlm")) < resources.PRIORITY["latency"]


def test_dataset_memory_follows_the_corpus(tmp_path):
    """Issue 25: the dataset job's request grows with the corpus (documents, bytes a document), 8000 when unknown."""
    small, big = tmp_path / "s", tmp_path / "b"
    for folder, n in ((small, 1000), (big, 20000)):
        folder.mkdir()
        (folder / "corpus.jsonl").write_text("".join(f'{{"_id": "d{i}", "text": "{"w " * 40}"}}\n' for i in range(n)))
    n_small, per_doc = resources.corpus_estimate({"source": "beir", "path": str(small)})
    assert abs(n_small - 1000) < 20 and 80 < per_doc < 110
    s = resources.dataset_job({"source": "beir", "path": str(small)})["mem_mb"]
    b = resources.dataset_job({"source": "beir", "path": str(big)})["mem_mb"]
    assert s < b
    dpr = resources.dataset_job({"source": "irds", "id": "dpr-w100/natural-questions/train"})["mem_mb"]
    marco = resources.dataset_job({"source": "irds", "id": "msmarco-passage/trec-dl-2019/judged"})["mem_mb"]
    assert marco < dpr < 8000  # streamed: ~6 GB for 21M passages
    assert resources.dataset_job({"source": "irds", "id": "unknown/x"})["mem_mb"] == 8000
    assert resources.dataset_job({"source": "irds", "id": "unknown/x"}, attempt=2)["mem_mb"] == 16000
    assert resources.dataset_job({"source": "irds", "id": "dpr-w100/natural-questions/train"}, attempt=2)["mem_mb"] >= 2 * dpr - 1


def test_first_stage_memory_by_stage(tmp_path):
    f = tmp_path / "c.parquet"
    with open(f, "wb") as fh:
        fh.truncate(100 << 20)
    index, bm25, dense = (resources.corpus_job(f, 1, k)["mem_mb"] for k in ("bm25_index", "bm25", "dense"))
    a, b = resources.FIRST_STAGE_FIT["bm25_index"]
    assert index == math.ceil(resources.HEADROOM * (a + b * 100))
    assert bm25 == math.ceil(resources.HEADROOM * resources.FIRST_STAGE_FIT["bm25"][0])
    assert dense > bm25
