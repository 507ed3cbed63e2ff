rule dataset:
    output:
        **data_files("{dataset}"),
        meta=paths.dataset_meta("{dataset}"),
    params:
        spec=lambda w: CFG["datasets"][w.dataset],
        ir_datasets_home=CFG["ir_datasets_home"],
        code=script_code("dataset"),
    log:
        log_path("dataset", "{dataset}"),
    benchmark:
        bench_path("dataset", "{dataset}")
    priority: attnrank.resources.PRIORITY["upstream"]
    threads: 1
    resources:
        **attnrank.resources.dataset_rule_resources(CFG, runtime=120),  # from the corpus size; doubled on retry
    conda:
        CONDA_ENV
    script:
        "../scripts/dataset.py"
