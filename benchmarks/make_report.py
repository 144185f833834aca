"""Join ``benchmarks/results/*.md`` into ``BENCHMARKS.md`` at the repository root.

Usage: python benchmarks/make_report.py
"""

from __future__ import annotations

from _common import RESULTS, ROOT

ORDER = ["ease", "vae", "scale", "bpr", "ratings", "gmm", "diffrec", "sequential", "genretrieval"]
ORDER += ["p5"]
ORDER += ["serve"]
ORDER += ["clusters"]
ORDER += ["tune"]

INTRO = """# Benchmarks

Every number here was measured by a script under `benchmarks/` on the machine named in its
section, and written by that script into `benchmarks/results/`; this file joins them
(`python benchmarks/make_report.py`). Published anchors and peer numbers stand beside each
result. Hyperparameters were chosen on validation data only; test numbers are reported for
the selected configuration.

"""


def main() -> None:
    from genrec.io import atomic_write_text

    def rank(p):  # a partial run (vae-recvae.md) right after its full run (vae.md)
        base = p.stem.split("-")[0]
        return (ORDER.index(base) if base in ORDER else len(ORDER), p.stem)

    files = sorted(RESULTS.glob("*.md"), key=rank)
    parts = [INTRO] + [p.read_text().rstrip() + "\n\n" for p in files]
    atomic_write_text(ROOT / "BENCHMARKS.md", "".join(parts))
    print(f"wrote {ROOT / 'BENCHMARKS.md'} from {len(files)} result files")


if __name__ == "__main__":
    main()
