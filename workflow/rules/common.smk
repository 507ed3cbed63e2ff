# Wiring of the plan (attnrank.plan: runs, orders, artifacts, code keys; attnrank.paths: the results folder's layout;
# attnrank.resources: job sizes) into the rules. The config is validated once here, before any job.
import attnrank.plan
import attnrank.selection.detection
import attnrank.resources
import attnrank.slurm
import attnrank.wiring
from attnrank import paths

# Everything checkable before a job runs (attnrank.config.validate); a bad config stops here with one line.
# The study's results folder: results_dir, else results/<config file stem> (every path below lies under it).
PLAN = attnrank.plan.plan_or_exit(config, scripts=f"{workflow.basedir}/workflow/scripts",
                                  configfiles=workflow.overwrite_configfiles)
CFG = PLAN.cfg
LABELS = PLAN.labels  # display names (tables, plots), taken out of the specs: editing one reruns no computation
R = paths.ROOT
CONDA_ENV = "../../envs/attnrank.yaml"  # every rule's `conda:` (relative to workflow/rules/); used with --sdm conda
NAME = "[A-Za-z0-9_.-]+"


wildcard_constraints:
    dataset=NAME,
    retriever=NAME,
    model=NAME,
    method=NAME,
    order="|".join(attnrank.plan.ORDERS),
    temperature="[0-9.e+-]+",
    layout="|".join(attnrank.selection.detection.LAYOUTS),


FAMILY = PLAN.family  # name -> "attention" | "text"
ATTENTION_METHODS = PLAN.attention_methods
TEXT_METHODS = PLAN.text_methods
ALL_ORDERS = PLAN.all_orders

# path layout (attnrank.paths)
data_files = paths.data_files
first_stage_run = paths.first_stage_run
candidates = paths.candidates
model_dir = paths.model_dir
scores_manifest = paths.scores_manifest
rerank_run = paths.rerank_run
sidecar = paths.sidecar
log_path = paths.log
bench_path = paths.benchmark

# the plan (attnrank.plan.Plan)
eval_datasets = PLAN.eval_datasets
dataset_runs = PLAN.dataset_runs
all_outputs = PLAN.all_outputs
with_latency = PLAN.with_latency
latency_csvs = PLAN.latency_csvs
attention_method_spec = PLAN.attention_method_spec
method_orders = PLAN.method_orders
prompt_cfg = PLAN.prompt_cfg
method_artifacts = PLAN.method_artifacts
one_of = attnrank.plan.one_of

# Every rule passes `code=script_code("<its script>")`: a hash of the script and of every attnrank module it
# imports, transitively (attnrank.codehash). The profiles drop 'code' from the rerun triggers, so a job reruns
# when the logic it runs changes, not when a comment or a module it never imports changes. A test checks that
# every rule has it.
script_code = PLAN.script_code
method_code = PLAN.method_code

# job sizes (attnrank.resources): model rules get a GPU unless cpu_only, memory from the model's size
model_resources = lambda runtime, batch=False: attnrank.resources.model_rule_resources(CFG, runtime, batch)  # noqa: E731
model_threads = attnrank.resources.model_rule_threads(CFG)
capped_mem = attnrank.resources.capped_mem


# The one onstart handler of the workflow (Snakemake keeps only the last one defined).
onstart:
    # record which lock files this run owns, so a later run can release them after a kill (attnrank.wiring)
    attnrank.wiring.record_lock_owner(getattr(workflow.persistence, "_lockfile", None))
    # --profile slurm: check the cluster before anything is submitted, and cap requests at its largest node
    attnrank.slurm.snakemake_preflight(workflow)
