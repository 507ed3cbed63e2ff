# Attention-based zero-shot LLM re-ranking benchmark.
# The study grid lives in config.yaml; all logic lives in the attnrank package (src/attnrank).
from snakemake.utils import min_version

min_version("9.0")


# config.yaml is the default grid; --configfile X --replace-workflow-config (and cluster jobs, which get
# --configfiles without the replace flag) use X alone.
if not workflow.overwrite_configfiles:
    import attnrank.config

    attnrank.config.read_yaml_or_exit("config.yaml")  # a YAML error names file:line (Snakemake's names neither)

    configfile: "config.yaml"


report: "workflow/report/workflow.rst"


# A run killed by SIGKILL leaves its lock behind: the next run removes it when it is provably stale (attnrank.wiring)
import sys
import attnrank.wiring

if workflow.is_main_process:
    for _line in attnrank.wiring.release_stale_locks():
        print(_line, file=sys.stderr)


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/retrieval.smk"
include: "workflow/rules/models.smk"
include: "workflow/rules/attention.smk"
include: "workflow/rules/rerank.smk"
include: "workflow/rules/latency.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/plots.smk"


rule all:
    input:
        all_outputs(),
