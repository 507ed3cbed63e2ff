rule bm25_index:
    input:
        corpus=data_files("{dataset}")["corpus"],
    output:
        directory(paths.bm25_index("{dataset}")),
    params:
        code=script_code("bm25_index"),
    log:
        log_path("bm25_index", "{dataset}"),
    benchmark:
        bench_path("bm25_index", "{dataset}")
    priority: attnrank.resources.PRIORITY["upstream"]
    threads: attnrank.resources.corpus_rule_threads
    resources:
        **attnrank.resources.corpus_rule_resources(runtime=240),
    conda:
        CONDA_ENV
    script:
        "../scripts/bm25_index.py"


rule retrieve:
    input:
        unpack(lambda w: PLAN.retrieve_inputs(w.dataset, w.retriever)),
    output:
        run=first_stage_run("{dataset}", "{retriever}"),
        meta=sidecar(first_stage_run("{dataset}", "{retriever}")),  # self-matches dropped, excluded
    params:
        spec=lambda w: CFG["retrievers"][w.retriever],
        drop_self_matches=lambda w: PLAN.drop_self_matches(w.dataset),
        embeddings=paths.dense_embeddings("{dataset}", "{retriever}"),
        code=script_code("retrieve"),
    log:
        log_path("retrieve", "{dataset}", "{retriever}"),
    benchmark:
        bench_path("retrieve", "{dataset}", "{retriever}")
    priority: attnrank.resources.PRIORITY["upstream"]
    threads: attnrank.resources.corpus_rule_threads
    resources:
        **attnrank.resources.corpus_rule_resources(runtime=240, cfg=CFG),
    conda:
        CONDA_ENV
    script:
        "../scripts/retrieve.py"


rule candidates:
    # one candidate list: a first stage's shared list ({retriever} = the retriever) or a candidates.lists entry (its
    # own first stage, depth and word cut; attnrank.plan.Plan.candidate_lists)
    input:
        **data_files("{dataset}"),
        run=lambda w: first_stage_run(w.dataset, PLAN.list_retriever(w.retriever)),
    output:
        parquet=candidates("{dataset}", "{retriever}"),
        meta=sidecar(candidates("{dataset}", "{retriever}")),
        run=paths.candidates_run("{dataset}", "{retriever}"),
    params:
        depth=lambda w: PLAN.candidate_lists()[w.retriever]["depth"],
        max_doc_words=lambda w: PLAN.candidate_lists()[w.retriever]["max_doc_words"],
        code=script_code("candidates"),
    log:
        log_path("candidates", "{dataset}", "{retriever}"),
    benchmark:
        bench_path("candidates", "{dataset}", "{retriever}")
    priority: attnrank.resources.PRIORITY["upstream"]
    threads: 1
    resources:
        mem_mb=8000,
        runtime=60,
    conda:
        CONDA_ENV
    script:
        "../scripts/candidates.py"
