# Cost of every (model, method) on a fixed sample of queries; attention methods run with real truncation.
def latency_inputs(w):
    lat = CFG["latency"]
    files = {"candidates": candidates(lat["dataset"], lat["retriever"]), "model": model_dir(w.model)}
    if FAMILY[w.method] == "attention":
        files.update(method_artifacts(w))
    return files


rule latency:
    input:
        unpack(latency_inputs),
    output:
        f"{R}/latency/{{model}}/{{method}}.csv",
    params:
        spec=lambda w: CFG["methods"][w.method],
        family=lambda w: FAMILY[w.method],
        prompt=CFG["prompt"],
        sample=CFG.get("latency", {}),
        code=lambda w: method_code(w.method),
        cache_dir=CFG["cache_dir"],
    log:
        log_path("latency", "{model}", "{method}"),
    threads: 2
    resources:
        gpu=1,
        gpu_model=lambda w: CFG["models"][w.model].get("gpu_model", ""),
        mem_mb=lambda w, attempt: CFG["models"][w.model].get("mem_mb", 32000) * attempt,
        runtime=240,
    script:
        "../scripts/latency.py"


rule latency_table:
    input:
        runs=latency_csvs(),
        results=f"{R}/tables/results.csv",
    output:
        csv=f"{R}/latency/latency.csv",
        plot=report(f"{R}/latency/tradeoff.png", caption="../report/latency.rst", category="Cost"),
    params:
        sample=CFG.get("latency", {}),
        metric=CFG["evaluation"]["main_metric"],
    log:
        log_path("latency_table", "latency"),
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    script:
        "../scripts/latency_table.py"
