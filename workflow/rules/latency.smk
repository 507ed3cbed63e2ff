# Cost of every method of a model on a fixed sample of queries; attention methods run with real truncation.
# One job per model: the model is loaded once and every method is timed in the same process and conditions.
rule latency:
    input:
        unpack(lambda w: PLAN.latency_inputs(w.model)),
    output:
        paths.latency_model("{model}"),
    params:
        methods=CFG["methods"],
        family=FAMILY,
        prompt=PLAN.latency_prompt(),
        sample=CFG.get("latency", {}),
        code=script_code("latency"),
        cache_dir=CFG["cache_dir"],
    log:
        log_path("latency", "{model}"),
    priority: attnrank.resources.PRIORITY["latency"]
    threads: model_threads
    resources:
        **model_resources(runtime=240),
    conda:
        CONDA_ENV
    script:
        "../scripts/latency.py"


rule latency_table:
    input:
        runs=latency_csvs(),
        results=paths.table("results.csv"),
    output:
        csv=paths.latency("latency.csv"),
        plot=report(paths.latency("tradeoff.png"), caption="../report/latency.rst", category="Cost"),
        pdf=paths.latency("tradeoff.pdf"),
        html=report(paths.latency("latency.html"), caption="../report/latency_table.rst", category="Cost"),
    params:
        sample=CFG.get("latency", {}),
        metric=CFG["evaluation"]["main_metric"],
        code=script_code("latency_table"),
        order=PLAN.table_order(),
        labels=LABELS,
    log:
        log_path("latency_table", "latency"),
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    conda:
        CONDA_ENV
    script:
        "../scripts/latency_table.py"
