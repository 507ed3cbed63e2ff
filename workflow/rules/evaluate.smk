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
    conda:
        CONDA_ENV
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
    conda:
        CONDA_ENV
    script:
        "../scripts/evaluate.py"


rule tables:
    # paper tables: long-form CSV (+ p-values), one booktabs table per metric, the main one, and the cost table
    input:
        evals=[f"{R}/eval/{d}.parquet" for d in eval_datasets()],
        latency=latency_csvs(),  # per (model, method); latency.tex is a comment while there are none
        sidecars=sorted(grid_sidecars()),  # the re-ranking jobs' seconds per query, for the grid
    output:
        csv=report(f"{R}/tables/results.csv", caption="../report/results_csv.rst", category="Tables"),
        tex=f"{R}/tables/results.tex",
        main=report(f"{R}/tables/main.tex", caption="../report/main_tex.rst", category="Tables"),
        latency=f"{R}/tables/latency.tex",
        grid=report(f"{R}/tables/grid.csv", caption="../report/grid_csv.rst", category="Tables"),
        grid_tex=report(f"{R}/tables/grid.tex", caption="../report/grid_csv.rst", category="Tables"),
    params:
        metric=CFG["evaluation"]["main_metric"],
        metrics=CFG["evaluation"]["metrics"],
        baseline=CFG["evaluation"]["baseline"],
        significance=CFG["evaluation"]["significance"],
        order=table_order(),
        code=script_code("tables"),
        cells=grid_cells(),
        sidecars=grid_sidecars(),
        labels=LABELS,
        candidates={"depth": CFG["candidates"]["depth"], "retrievers": CFG["candidates"]["retrievers"]},
    log:
        log_path("tables", "tables"),
    benchmark:
        bench_path("tables", "tables")
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    conda:
        CONDA_ENV
    script:
        "../scripts/tables.py"


rule position_bias_plot:
    # Spearman between a document's score and its prompt slot, per attention run (mean over queries), per prompt order
    input:
        f"{R}/tables/results.csv",
    output:
        plot=report(f"{R}/tables/position_bias.png", caption="../report/position_bias.rst", category="Effectiveness"),
        pdf=f"{R}/tables/position_bias.pdf",
    params:
        order=table_order(),
        labels=LABELS,
        prompt_order=ALL_ORDERS[0] if len(ALL_ORDERS) == 1 else None,  # the order of plain method names
        code=script_code("position_bias_plot"),
    log:
        log_path("position_bias_plot", "plot"),
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        CONDA_ENV
    script:
        "../scripts/position_bias_plot.py"


rule report_tables:
    # what a researcher reads: the results and the framework x mechanism grid as HTML tables (with 95% CIs), the
    # diagnostics table generated from every run's sidecar, and the main metric per dataset and method with
    # confidence intervals (PNG + PDF)
    input:
        results=rules.tables.output.csv,
        grid=rules.tables.output.grid,
        sidecars=sorted(grid_sidecars()),
    output:
        html=report(f"{R}/tables/results.html", caption="../report/tables.rst", category="Tables"),
        grid=report(f"{R}/tables/grid.html", caption="../report/grid.rst", category="Tables"),
        diagnostics=report(f"{R}/tables/diagnostics.html", caption="../report/diagnostics.rst", category="Tables"),
        diagnostics_csv=f"{R}/tables/diagnostics.csv",
        diagnostics_tex=f"{R}/tables/diagnostics.tex",
        plot=report(f"{R}/plots/effectiveness.png", caption="../report/effectiveness.rst", category="Effectiveness"),
        pdf=f"{R}/plots/effectiveness.pdf",
    params:
        metric=CFG["evaluation"]["main_metric"],
        metrics=CFG["evaluation"]["metrics"],
        order=table_order(),
        labels=LABELS,
        candidates={"depth": CFG["candidates"]["depth"], "retrievers": CFG["candidates"]["retrievers"]},
        sidecars=grid_sidecars(),
        code=script_code("report_tables"),
    log:
        log_path("report_tables", "report_tables"),
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    conda:
        CONDA_ENV
    script:
        "../scripts/report_tables.py"
