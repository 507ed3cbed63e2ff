"""Heat maps of a model's head scores (qr_mass, QRHead, CoRe) in one prompt order, each method's heads outlined."""
from attnrank import wiring

# heat map -> method kinds whose heads it marks (HeadRank's weighted heads on the two detection scores)
MARKED = {"qr_mass": ("qr-mass",), "qrhead": ("qrhead", "headrank"), "core": ("core", "headrank")}


def main(smk):
    import polars as pl

    from attnrank import heads, report, tables

    w, p = smk.wildcards, smk.params
    used = report.used_components(dict(p.sidecars))
    table = pl.read_parquet(smk.input.heads)
    who = f"{tables.display_name(p.labels, w.model)}, {w.order} order"
    titles = {"qr_mass": "QR attention mass", "qrhead": "QRHead nDCG@10", "core": f"CoRe score (t={float(w.temperature):g})"}
    for score, title in titles.items():
        marks = {tables.display_name(p.labels, m): u["heads"] for m, u in used.items()
                 if u.get("heads") and u["kind"] in MARKED[score]}
        heads.plot_heatmap(table, score, smk.output[score], title=f"{title} per head, {who}", marks=marks)
    return {"methods": len(used)}


wiring.run(snakemake, main)
