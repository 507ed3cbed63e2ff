rule ranx_warmup:
    # numba compiles ranx once into the shared cache; every evaluation job then loads it in seconds
    output:
        f"{CFG['cache_dir']}/numba/.ready",
    params:
        cache_dir=CFG["cache_dir"],
        code=script_code("ranx_warmup"),
    log:
        log_path("ranx_warmup", "warmup"),
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    script:
        "../scripts/ranx_warmup.py"


rule evaluate:
    # one job per dataset: ranx starts once and scores every run of the dataset (per-query metrics kept)
    input:
        qrels=data_files("{dataset}")["qrels"],
        runs=lambda w: sorted(dataset_runs(w.dataset)),
        warm=rules.ranx_warmup.output,
    output:
        f"{R}/eval/{{dataset}}.parquet",
    params:
        runs=lambda w: dataset_runs(w.dataset),
        metrics=CFG["evaluation"]["metrics"],
        cache_dir=CFG["cache_dir"],
        code=script_code("evaluate"),
    log:
        log_path("evaluate", "{dataset}"),
    benchmark:
        bench_path("evaluate", "{dataset}")
    threads: 1
    resources:
        mem_mb=8000,
        runtime=60,
    script:
        "../scripts/evaluate.py"


rule tables:
    # paper tables: long-form CSV (+ p-values), one booktabs table per metric, the main one, and the cost table
    input:
        evals=[f"{R}/eval/{d}.parquet" for d in eval_datasets()],
        latency=latency_csvs(),  # per (model, method); latency.tex is a comment while there are none
        sidecars=sorted(grid_sidecars()),  # the re-ranking jobs' seconds per query, for the grid
    output:
        csv=report(f"{R}/tables/results.csv", caption="../report/tables.rst", category="Tables"),
        tex=f"{R}/tables/results.tex",
        main=f"{R}/tables/main.tex",
        latency=f"{R}/tables/latency.tex",
        grid=report(f"{R}/tables/grid.csv", caption="../report/grid.rst", category="Tables"),
        grid_tex=f"{R}/tables/grid.tex",
    params:
        metric=CFG["evaluation"]["main_metric"],
        metrics=CFG["evaluation"]["metrics"],
        baseline=CFG["evaluation"]["baseline"],
        significance=CFG["evaluation"]["significance"],
        order={"datasets": eval_datasets(), "retrievers": list(CFG["retrievers"]), "models": list(CFG["models"]),
               "methods": list(CFG["methods"])},
        code=script_code("tables"),
        cells=grid_cells(),
        sidecars=grid_sidecars(),
    log:
        log_path("tables", "tables"),
    benchmark:
        bench_path("tables", "tables")
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    script:
        "../scripts/tables.py"


rule position_bias_plot:
    # Spearman between a document's score and its prompt slot, per attention run (mean over queries)
    input:
        f"{R}/tables/results.csv",
    output:
        report(f"{R}/tables/position_bias.png", caption="../report/tables.rst", category="Tables"),
    params:
        code=script_code("position_bias_plot"),
    log:
        log_path("position_bias_plot", "plot"),
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    script:
        "../scripts/position_bias_plot.py"
