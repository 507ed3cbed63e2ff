# One attention pass per (model, dataset, candidate list, prompt order) -> the score cache every attention method aggregates.
rule attention_scores:
    input:
        candidates=candidates("{dataset}", "{retriever}"),
        model=model_dir("{model}"),
    output:
        scores_manifest("{model}", "{dataset}", "{retriever}", "{order}"),
    params:
        prompt=lambda w: prompt_cfg(w.order, w.model, w.dataset, clist=w.retriever),
        layers=PLAN.engine_layers(),
        # per-head token scores (masked calibration over any head subset / layer window) on evaluation sets only
        token_scores=lambda w: CFG["engine"]["token_scores"] and CFG["datasets"][w.dataset]["evaluate"],
        token_dtype=CFG["engine"]["token_dtype"],
        shard_size=CFG["engine"]["shard_size"],
        batch_size=lambda w: CFG["models"][w.model]["batch_size"],
        dtype=lambda w: CFG["models"][w.model]["dtype"],
        cache_dir=CFG["cache_dir"],
        code=script_code("attention_scores"),
    log:
        log_path("attention_scores", "{model}", "{dataset}", "{retriever}", "{order}"),
    benchmark:
        bench_path("attention_scores", "{model}", "{dataset}", "{retriever}", "{order}")
    priority: attnrank.resources.PRIORITY["selection"]
    threads: model_threads
    resources:
        **model_resources(runtime=720, batch=True),
    conda:
        CONDA_ENV
    script:
        "../scripts/attention_scores.py"


rule detection_set:
    input:
        **data_files("{dataset}"),
        run=first_stage_run("{dataset}", "{retriever}"),
    output:
        parquet=paths.detection_set("{dataset}", "{retriever}", "{layout}"),
        report=sidecar(paths.detection_set("{dataset}", "{retriever}", "{layout}")),
    params:
        spec=lambda w: {**CFG.get("detection", {}), "layout": w.layout},
        code=script_code("detection_set"),
    log:
        log_path("detection_set", "{dataset}", "{retriever}", "{layout}"),
    benchmark:
        bench_path("detection_set", "{dataset}", "{retriever}", "{layout}")
    priority: attnrank.resources.PRIORITY["selection"]
    threads: 1
    resources:
        mem_mb=capped_mem(8000),
        runtime=60,
    conda:
        CONDA_ENV
    script:
        "../scripts/detection_set.py"


rule detection_scores:
    # one pass per detection layout (attnrank.selection.detection: QRHead's seeded shuffle, CoRe's spread positions),
    # in the order the heads' re-ranking uses
    input:
        candidates=lambda w: PLAN.detection_candidates(w.layout),
        model=model_dir("{model}"),
    output:
        paths.detection_scores("{model}", "{order}", "{layout}"),
    params:
        prompt=lambda w: prompt_cfg(w.order, w.model, CFG.get("detection", {}).get("dataset")),
        layers=None,
        token_scores=False,  # per-head masked scores (QRHead's detection) are kept in every cache
        token_dtype="float32",
        shard_size=CFG["engine"]["shard_size"],
        batch_size=lambda w: CFG["models"][w.model]["batch_size"],
        dtype=lambda w: CFG["models"][w.model]["dtype"],
        cache_dir=CFG["cache_dir"],
        code=script_code("attention_scores"),
    log:
        log_path("detection_scores", "{model}", "{order}", "{layout}"),
    benchmark:
        bench_path("detection_scores", "{model}", "{order}", "{layout}")
    priority: attnrank.resources.PRIORITY["selection"]
    threads: model_threads
    resources:
        **model_resources(runtime=720, batch=True),
    conda:
        CONDA_ENV
    script:
        "../scripts/attention_scores.py"


rule detect_heads:
    input:
        scores=rules.detection_scores.output[0],
        detection=rules.detection_scores.input.candidates,
    output:
        heads=paths.heads_table("{model}", "{order}", "{temperature}", "{layout}"),
        provenance=sidecar(paths.heads_table("{model}", "{order}", "{temperature}", "{layout}")),
    params:
        temperature=lambda w: float(w.temperature),
        detection=lambda w: {**CFG.get("detection", {}), "layout": w.layout},
        prompt=lambda w: prompt_cfg(w.order, w.model, CFG.get("detection", {}).get("dataset")),
        code=script_code("detect_heads"),
    log:
        log_path("detect_heads", "{model}", "{order}", "{layout}", "t{temperature}"),
    priority: attnrank.resources.PRIORITY["selection"]
    threads: 1
    resources:
        mem_mb=capped_mem(8000),
        runtime=30,
    conda:
        CONDA_ENV
    script:
        "../scripts/detect_heads.py"


rule layer_profile:
    input:
        scores=lambda w: PLAN.tuning_scores(w.model, w.order),
        qrels=lambda w: PLAN.tuning_qrels(),
        warm=PLAN.ranx_ready("main"),  # ranx compiled once when the main metric needs it
    output:
        profile=paths.layer_profile("{model}", "{order}"),
    params:
        metric=CFG["evaluation"]["main_metric"],
        cache_dir=CFG["cache_dir"],
        code=script_code("layer_profile"),
    log:
        log_path("layer_profile", "{model}", "{order}"),
    priority: attnrank.resources.PRIORITY["selection"]
    threads: 1
    resources:
        mem_mb=capped_mem(8000),
        runtime=30,
    conda:
        CONDA_ENV
    script:
        "../scripts/layer_profile.py"


rule train_headrank:
    input:
        scores=lambda w: PLAN.tuning_scores(w.model, w.order),
        qrels=lambda w: PLAN.tuning_qrels(),
    output:
        paths.headrank_weights("{model}", "{order}", "{method}"),
    params:
        spec=lambda w: attention_method_spec(w.method),
        code=script_code("train_headrank"),
    log:
        log_path("train_headrank", "{model}", "{order}", "{method}"),
    benchmark:
        bench_path("train_headrank", "{model}", "{order}", "{method}")
    priority: attnrank.resources.PRIORITY["selection"]
    threads: 1  # a few seconds of small tensors; with 2 it waited for a free machine (--cores 2)
    resources:
        mem_mb=capped_mem(8000),
        runtime=60,
    conda:
        CONDA_ENV
    script:
        "../scripts/train_headrank.py"


rule rerank_attention:
    # a CPU aggregation over the cached tensor: adding a method never needs a new forward pass
    input:
        unpack(method_artifacts),
        scores=scores_manifest("{model}", "{dataset}", "{retriever}", "{order}"),
        run=lambda w: first_stage_run(w.dataset, PLAN.list_retriever(w.retriever)),
        qrels=data_files("{dataset}")["qrels"],
    output:
        run=rerank_run("{model}", "{dataset}", "{retriever}", "{method}", "{order}"),
        used=sidecar(rerank_run("{model}", "{dataset}", "{retriever}", "{method}", "{order}")),
    wildcard_constraints:
        method=one_of(ATTENTION_METHODS),
    params:
        spec=lambda w: CFG["methods"][w.method],
        code=lambda w: method_code("rerank_attention", w.method),
        # the grid settings a protocol preset is compared with (only for methods that name one)
        grid=lambda w: PLAN.protocol_grid(w.method, w.model, w.dataset, w.retriever),
    log:
        log_path("rerank", "{model}", "{dataset}", "{retriever}", "{order}", "{method}"),
    benchmark:
        bench_path("rerank", "{model}", "{dataset}", "{retriever}", "{order}", "{method}")
    threads: 1
    resources:
        mem_mb=capped_mem(8000),
        runtime=30,
    conda:
        CONDA_ENV
    script:
        "../scripts/rerank_attention.py"
