# Cost of every method of a model on a fixed sample of queries; attention methods run with real truncation.
# One job per model: the model is loaded once and every method is timed in the same process and conditions.
def latency_inputs(w):
    lat = CFG["latency"]
    files = {"candidates": candidates(lat["dataset"], lat["retriever"]), "model": model_dir(w.model)}
    for m in CFG["methods"]:
        for key, path in artifact_files(w.model, m).items():
            files[f"{m}__{key}"] = path
    return files


rule latency:
    input:
        unpack(latency_inputs),
    output:
        f"{R}/latency/models/{{model}}.csv",
    params:
        methods=CFG["methods"],
        family=FAMILY,
        prompt=prompt_cfg(ALL_ORDERS[0] if ALL_ORDERS else CFG["prompt"]["order"]),
        sample=CFG.get("latency", {}),
        code=script_code("latency"),
        cache_dir=CFG["cache_dir"],
    log:
        log_path("latency", "{model}"),
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
        results=f"{R}/tables/results.csv",
    output:
        csv=f"{R}/latency/latency.csv",
        plot=report(f"{R}/latency/tradeoff.png", caption="../report/latency.rst", category="Cost"),
        pdf=f"{R}/latency/tradeoff.pdf",
        html=report(f"{R}/latency/latency.html", caption="../report/latency_table.rst", category="Cost"),
    params:
        sample=CFG.get("latency", {}),
        metric=CFG["evaluation"]["main_metric"],
        code=script_code("latency_table"),
        order=table_order(),
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
