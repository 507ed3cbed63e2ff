# Re-rankers that generate or score text run the model themselves (RankGPT, yes/no, query likelihood, setwise).
rule rerank_text:
    input:
        candidates=candidates("{dataset}", "{retriever}"),
        model=model_dir("{model}"),
        run=first_stage_run("{dataset}", "{retriever}"),
    output:
        run=rerank_run("{model}", "{dataset}", "{retriever}", "{method}"),
        used=rerank_run("{model}", "{dataset}", "{retriever}", "{method}").replace(".trec", ".json"),
    wildcard_constraints:
        method=one_of(TEXT_METHODS),
    params:
        spec=lambda w: CFG["methods"][w.method],
        doc_max_tokens=CFG["prompt"]["doc_max_tokens"],  # same truncation as the attention prompt, unless overridden
        cache_dir=CFG["cache_dir"],
        code=script_code("rerank_text"),
    log:
        log_path("rerank", "{model}", "{dataset}", "{retriever}", "{method}"),
    benchmark:
        bench_path("rerank", "{model}", "{dataset}", "{retriever}", "{method}")
    threads: 2
    resources:
        gpu=1,  # sbatch --gpus=[<gpu_model>:]1; a retry after an out-of-memory failure gets more host memory
        gpu_model=lambda w: CFG["models"][w.model].get("gpu_model", ""),
        mem_mb=lambda w, attempt: CFG["models"][w.model].get("mem_mb", 32000) * attempt,
        runtime=720,
    script:
        "../scripts/rerank_text.py"
