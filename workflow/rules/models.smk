rule prepare_model:
    output:
        directory(model_dir("{model}")),
    params:
        spec=lambda w: PLAN.model_source(w.model),
        cache_dir=CFG["cache_dir"],
        code=script_code("prepare_model"),
    log:
        log_path("prepare_model", "{model}"),
    benchmark:
        bench_path("prepare_model", "{model}")
    priority: attnrank.resources.PRIORITY["model"]
    threads: attnrank.resources.prepare_rule_threads(CFG)
    resources:
        **attnrank.resources.prepare_rule_resources(CFG, runtime=120),
    conda:
        CONDA_ENV
    script:
        "../scripts/prepare_model.py"
