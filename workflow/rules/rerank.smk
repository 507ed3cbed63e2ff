# Re-rankers that generate or score text run the model themselves (RankGPT, yes/no, query likelihood, setwise), and
# the same frameworks scored by attention (each window / set / passage as its own ICR prompt).
rule rerank_text:
    input:
        unpack(method_artifacts),  # heads / layer profile / HeadRank weights when the method scores by attention
        candidates=candidates("{dataset}", "{retriever}"),
        model=model_dir("{model}"),
        run=lambda w: first_stage_run(w.dataset, PLAN.list_retriever(w.retriever)),
    output:
        run=rerank_run("{model}", "{dataset}", "{retriever}", "{method}"),
        used=sidecar(rerank_run("{model}", "{dataset}", "{retriever}", "{method}")),
    wildcard_constraints:
        method=one_of(TEXT_METHODS),
    params:
        spec=lambda w: CFG["methods"][w.method],
        max_doc_tokens=CFG["prompt"]["max_doc_tokens"],  # same truncation as the attention prompt, unless overridden
        prompt=lambda w: PLAN.text_prompt(w.method),  # of attention scoring
        cache_dir=CFG["cache_dir"],
        code=script_code("rerank_text"),
    log:
        log_path("rerank", "{model}", "{dataset}", "{retriever}", "{method}"),
    benchmark:
        bench_path("rerank", "{model}", "{dataset}", "{retriever}", "{method}")
    priority: lambda w: attnrank.resources.text_priority(CFG["methods"][w.method])  # longest first
    threads: model_threads
    resources:
        **model_resources(runtime=720),
    conda:
        CONDA_ENV
    script:
        "../scripts/rerank_text.py"
