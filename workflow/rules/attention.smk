# One attention pass per (model, dataset, retriever) -> the score cache every attention method aggregates.
rule attention_scores:
    input:
        candidates=candidates("{dataset}", "{retriever}"),
        model=model_dir("{model}"),
    output:
        scores_manifest("{model}", "{dataset}", "{retriever}"),
    params:
        prompt=CFG["prompt"],
        depth=engine_depth(),
        shard_size=CFG["engine"]["shard_size"],
        batch_size=lambda w: CFG["models"][w.model]["batch_size"],
        dtype=lambda w: CFG["models"][w.model]["dtype"],
        cache_dir=CFG["cache_dir"],
        code=script_code("attention_scores"),
    log:
        log_path("attention_scores", "{model}", "{dataset}", "{retriever}"),
    benchmark:
        bench_path("attention_scores", "{model}", "{dataset}", "{retriever}")
    threads: model_threads
    resources:
        **model_resources(runtime=720, batch=True),
    script:
        "../scripts/attention_scores.py"


rule detection_set:
    input:
        **data_files("{dataset}"),
        run=first_stage_run("{dataset}", "{retriever}"),
    output:
        f"{R}/detection/{{dataset}}/{{retriever}}.parquet",
    params:
        spec=CFG.get("detection", {}),
        code=script_code("detection_set"),
    log:
        log_path("detection_set", "{dataset}", "{retriever}"),
    threads: 1
    resources:
        mem_mb=capped_mem(8000),
        runtime=60,
    script:
        "../scripts/detection_set.py"


rule detection_scores:
    # the detection samples keep their slot order (the positive's position is the point of the set)
    input:
        candidates=lambda w: f"{R}/detection/{CFG['detection']['dataset']}/{CFG['detection']['retriever']}.parquet",
        model=model_dir("{model}"),
    output:
        f"{R}/heads/{{model}}/scores/manifest.json",
    params:
        prompt={**CFG["prompt"], "order": "retrieval"},
        depth=None,
        shard_size=CFG["engine"]["shard_size"],
        batch_size=lambda w: CFG["models"][w.model]["batch_size"],
        dtype=lambda w: CFG["models"][w.model]["dtype"],
        cache_dir=CFG["cache_dir"],
        code=script_code("attention_scores"),
    log:
        log_path("detection_scores", "{model}"),
    benchmark:
        bench_path("detection_scores", "{model}")
    threads: model_threads
    resources:
        **model_resources(runtime=720, batch=True),
    script:
        "../scripts/attention_scores.py"


rule head_ranking:
    input:
        scores=rules.detection_scores.output[0],
        detection=rules.detection_scores.input.candidates,
    output:
        heads=f"{R}/heads/{{model}}/heads.parquet",
        qr_plot=report(f"{R}/heads/{{model}}/qr.png", caption="../report/heads.rst", category="Heads", subcategory="{model}"),
        core_plot=report(f"{R}/heads/{{model}}/core.png", caption="../report/heads.rst", category="Heads", subcategory="{model}"),
    params:
        temperature=lambda w: CFG["models"][w.model].get("core_temperature", 0.1),
        code=script_code("head_ranking"),
    log:
        log_path("head_ranking", "{model}"),
    threads: 1
    resources:
        mem_mb=capped_mem(8000),
        runtime=30,
    script:
        "../scripts/head_ranking.py"


rule layer_profile:
    input:
        scores=lambda w: scores_manifest(w.model, CFG["tuning"]["dataset"], CFG["tuning"]["retriever"]),
        qrels=lambda w: data_files(CFG["tuning"]["dataset"])["qrels"],
    output:
        profile=f"{R}/layers/{{model}}/profile.parquet",
        plot=report(f"{R}/layers/{{model}}/profile.png", caption="../report/layers.rst", category="Layers", subcategory="{model}"),
    params:
        metric=CFG["evaluation"]["main_metric"],
        cache_dir=CFG["cache_dir"],
        code=script_code("layer_profile"),
    log:
        log_path("layer_profile", "{model}"),
    threads: 1
    resources:
        mem_mb=capped_mem(8000),
        runtime=30,
    script:
        "../scripts/layer_profile.py"


rule headrank_train:
    input:
        scores=lambda w: scores_manifest(w.model, CFG["tuning"]["dataset"], CFG["tuning"]["retriever"]),
        qrels=lambda w: data_files(CFG["tuning"]["dataset"])["qrels"],
    output:
        f"{R}/headrank/{{model}}/{{method}}.json",
    params:
        spec=lambda w: CFG["methods"][w.method],
        code=script_code("headrank_train"),
    log:
        log_path("headrank_train", "{model}", "{method}"),
    benchmark:
        bench_path("headrank_train", "{model}", "{method}")
    threads: 2
    resources:
        mem_mb=capped_mem(8000),
        runtime=60,
    script:
        "../scripts/headrank_train.py"


rule rerank_attention:
    # a CPU aggregation over the cached tensor: adding a method never needs a new forward pass
    input:
        unpack(method_artifacts),
        scores=scores_manifest("{model}", "{dataset}", "{retriever}"),
        run=first_stage_run("{dataset}", "{retriever}"),
        qrels=data_files("{dataset}")["qrels"],
    output:
        run=rerank_run("{model}", "{dataset}", "{retriever}", "{method}"),
        used=rerank_run("{model}", "{dataset}", "{retriever}", "{method}").replace(".trec", ".json"),
    wildcard_constraints:
        method=one_of(ATTENTION_METHODS),
    params:
        spec=lambda w: CFG["methods"][w.method],
        code=lambda w: method_code("rerank_attention", w.method),
    log:
        log_path("rerank", "{model}", "{dataset}", "{retriever}", "{method}"),
    benchmark:
        bench_path("rerank", "{model}", "{dataset}", "{retriever}", "{method}")
    threads: 1
    resources:
        mem_mb=capped_mem(8000),
        runtime=30,
    script:
        "../scripts/rerank_attention.py"
