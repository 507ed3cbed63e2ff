rule bm25_index:
    input:
        corpus=f"{R}/data/{{dataset}}/corpus.parquet",
    output:
        directory(f"{R}/indexes/{{dataset}}/bm25"),
    params:
        code=script_code("bm25_index"),
    log:
        log_path("bm25_index", "{dataset}"),
    benchmark:
        bench_path("bm25_index", "{dataset}")
    threads: lambda w, input: attnrank.resources.corpus_job(input.corpus)["threads"]
    resources:
        mem_mb=lambda w, input, attempt: attnrank.resources.corpus_job(input.corpus, attempt)["mem_mb"],
        runtime=240,
    conda:
        CONDA_ENV
    script:
        "../scripts/bm25_index.py"


def retrieve_inputs(w):
    kind = CFG["retrievers"][w.retriever]["kind"]
    files = {**data_files(w.dataset), "meta": f"{R}/data/{w.dataset}/meta.json"}
    if kind == "bm25":
        files["index"] = f"{R}/indexes/{w.dataset}/bm25"
    return files


rule retrieve:
    input:
        unpack(retrieve_inputs),
    output:
        run=first_stage_run("{dataset}", "{retriever}"),
        meta=first_stage_run("{dataset}", "{retriever}").replace(".trec", ".json"),  # self-matches dropped, excluded
    params:
        spec=lambda w: CFG["retrievers"][w.retriever],
        drop_self_matches=lambda w: attnrank.config.drop_self_matches(CFG, w.dataset),
        embeddings=f"{R}/indexes/{{dataset}}/dense-{{retriever}}.npz",
        code=script_code("retrieve"),
    log:
        log_path("retrieve", "{dataset}", "{retriever}"),
    benchmark:
        bench_path("retrieve", "{dataset}", "{retriever}")
    threads: lambda w, input: attnrank.resources.corpus_job(input.corpus)["threads"]
    resources:
        mem_mb=lambda w, input, attempt: attnrank.resources.corpus_job(input.corpus, attempt)["mem_mb"],
        runtime=240,
    conda:
        CONDA_ENV
    script:
        "../scripts/retrieve.py"


rule candidates:
    input:
        **data_files("{dataset}"),
        run=first_stage_run("{dataset}", "{retriever}"),
    output:
        parquet=candidates("{dataset}", "{retriever}"),
        meta=candidates("{dataset}", "{retriever}").replace(".parquet", ".json"),
    params:
        depth=CFG["candidates"]["depth"],
        max_doc_words=CFG["candidates"]["max_doc_words"],
        code=script_code("candidates"),
    log:
        log_path("candidates", "{dataset}", "{retriever}"),
    benchmark:
        bench_path("candidates", "{dataset}", "{retriever}")
    threads: 1
    resources:
        mem_mb=8000,
        runtime=60,
    conda:
        CONDA_ENV
    script:
        "../scripts/candidates.py"
