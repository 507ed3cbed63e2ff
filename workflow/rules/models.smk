rule prepare_model:
    output:
        directory(model_dir("{model}")),
    params:
        spec=lambda w: {k: v for k, v in CFG["models"][w.model].items() if k not in ("batch_size", "dtype", "core_temperature", "gpu_model", "mem_mb")},
        cache_dir=CFG["cache_dir"],
        code=script_code("prepare_model"),
    log:
        log_path("prepare_model", "{model}"),
    benchmark:
        bench_path("prepare_model", "{model}")
    threads: lambda w: attnrank.resources.prepare_job(CFG["models"][w.model])["threads"]
    resources:
        mem_mb=lambda w, attempt: attnrank.resources.prepare_job(CFG["models"][w.model], attempt)["mem_mb"],
        runtime=120,
    conda:
        CONDA_ENV
    script:
        "../scripts/prepare_model.py"
