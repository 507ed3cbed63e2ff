rule study_config:
    # the validated config the study ran with (defaults filled in), beside its results and in the report
    output:
        report(paths.study_config(), caption="../report/study_config.rst", category="Provenance"),
    params:
        config=PLAN.study_config,
        code=script_code("study_config"),
    log:
        log_path("study_config", "config"),
    benchmark:
        bench_path("study_config", "config")
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    conda:
        CONDA_ENV
    script:
        "../scripts/study_config.py"


rule ranx_warmup:
    # numba compiles ranx once into the shared cache; every job that evaluates (evaluate, layer_profile) then loads
    # it. Only needed by a metric NumPy does not compute (bpref): attnrank.plan.Plan.ranx_ready
    output:
        paths.ranx_ready(CFG["cache_dir"]),
    params:
        metrics=CFG["evaluation"]["metrics"],
        cache_dir=CFG["cache_dir"],
        code=script_code("ranx_warmup"),
    log:
        log_path("ranx_warmup", "warmup"),
    priority: attnrank.resources.PRIORITY["selection"]
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
        warm=PLAN.ranx_ready("metrics"),
    output:
        paths.eval_table("{dataset}"),
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
        evals=[paths.eval_table(d) for d in eval_datasets()],
        latency=latency_csvs(),  # per (model, method); latency.tex is a comment while there are none
        sidecars=sorted(PLAN.run_sidecars()),  # the re-ranking jobs' seconds per query, for the grid
    output:
        csv=report(paths.table("results.csv"), caption="../report/results_csv.rst", category="Tables"),
        tex=paths.table("results.tex"),
        main=report(paths.table("main.tex"), caption="../report/main_tex.rst", category="Tables"),
        latency=paths.table("latency.tex"),
        grid=report(paths.table("grid.csv"), caption="../report/grid_csv.rst", category="Tables"),
        grid_tex=report(paths.table("grid.tex"), caption="../report/grid_csv.rst", category="Tables"),
    params:
        metric=CFG["evaluation"]["main_metric"],
        metrics=CFG["evaluation"]["metrics"],
        baseline=CFG["evaluation"]["baseline"],
        significance=CFG["evaluation"]["significance"],
        order=PLAN.table_order(),
        code=script_code("tables"),
        cells=PLAN.grid_cells(),
        sidecars=PLAN.run_sidecars(),
        labels=LABELS,
        candidates=PLAN.candidates_caption(),
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
        paths.table("results.csv"),
    output:
        plot=report(paths.table("position_bias.png"), caption="../report/position_bias.rst", category="Effectiveness"),
        pdf=paths.table("position_bias.pdf"),
    params:
        order=PLAN.table_order(),
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
        sidecars=sorted(PLAN.run_sidecars()),
    output:
        html=report(paths.table("results.html"), caption="../report/tables.rst", category="Tables"),
        grid=report(paths.table("grid.html"), caption="../report/grid.rst", category="Tables"),
        diagnostics=report(paths.table("diagnostics.html"), caption="../report/diagnostics.rst", category="Tables"),
        diagnostics_csv=paths.table("diagnostics.csv"),
        diagnostics_tex=paths.table("diagnostics.tex"),
        plot=report(paths.plot("effectiveness.png"), caption="../report/effectiveness.rst", category="Effectiveness"),
        pdf=paths.plot("effectiveness.pdf"),
    params:
        metric=CFG["evaluation"]["main_metric"],
        metrics=CFG["evaluation"]["metrics"],
        order=PLAN.table_order(),
        labels=LABELS,
        candidates=PLAN.candidates_caption(),
        sidecars=PLAN.run_sidecars(),
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


rule published_table:
    # only with a `published:` section: each run of a mapped cell beside the paper's number (attnrank.evaluation.published)
    input:
        results=rules.tables.output.csv,
        published=CFG.get("published", {}).get("file", []),
    output:
        csv=paths.table("published.csv"),
        tex=paths.table("published.tex"),
        html=report(paths.table("published.html"), caption="../report/published.rst", category="Tables"),
    params:
        spec=CFG.get("published", {}),
        depth={c: s["depth"] for c, s in PLAN.candidate_lists().items()},  # per candidate list
        code=script_code("published_table"),
    log:
        log_path("published_table", "published_table"),
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        CONDA_ENV
    script:
        "../scripts/published_table.py"
