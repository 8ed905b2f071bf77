"""`bench tables`: published numbers beside reproduced ones; synthetic runs kept apart."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.cli import main
from bench.report.published import load_published
from protocols import get_protocol
from tests.aggregate_helpers import REAL_DATA, write_run_19_1

PUBLISHED = """source,dataset,setting,mode,method,step,column,value,convention,notes,variant,recipe
"SDR paper, test chart",voc,19-1,overlap,ft,1,all,90.0,sdr,,,mib
"SDR paper, test chart",voc,19-1,overlap,ft,1,old,99.0,mib,foreground only,,mib
"SDR paper, test chart",voc,19-1,overlap,lwf,1,all,70.0,sdr,,,mib
"SDR paper, test chart",voc,15-1,disjoint,ft,5,all,5.6,sdr,,,mib
"Other paper, table 9",voc,19-1,overlap,ft,1,new,40.0,sdr,context,,mib
"Other paper, table 9",voc,19-1,overlap,lwf,1,all,71.0,sdr,context,,mib
"""


def crafted(tmp_path: Path) -> tuple[Path, Path, Path]:
    published = tmp_path / "published.csv"
    published.write_text(PUBLISHED)
    real, synthetic = tmp_path / "real", tmp_path / "synthetic"
    for seed, correct in enumerate((5, 6, 7)):
        write_run_19_1(real, correct_new=correct, seed=seed, data=REAL_DATA)
    write_run_19_1(synthetic, correct_new=1, seed=0, method="lwf")
    write_run_19_1(synthetic, correct_new=2, seed=0, method="ft")
    return published, real, synthetic


def generate(tmp_path: Path, name: str, *roots: Path) -> str:
    published = tmp_path / "published.csv"
    out = tmp_path / name
    assert main(["tables", *map(str, roots), "--published", str(published),
                 "--out", str(out)]) == 0
    return out.read_text()


def section(text: str, start: str, end: str) -> str:
    return text.split(start, 1)[1].split(end, 1)[0]


def test_published_vs_reproduced_with_difference_and_not_run(tmp_path: Path) -> None:
    _, real, synthetic = crafted(tmp_path)
    text = generate(tmp_path, "tables.md", real, synthetic)
    real_part = section(text, "## Real data", "## Embedded synthetic data")
    # all (sdr) after step 1 over seeds 0-2: (1900 + 10/15 + 10/14 + 10/13 + 50 + 60 + 70) / 21
    all_mean = (1900 + 100 * (10 / 15 + 10 / 14 + 10 / 13) / 3 + 60) / 21
    assert f"| FT | 19-1 | overlap | 1 | all | sdr | mib | 90.0 | {all_mean:.1f} ± " in real_part
    assert f"(n=3) | {all_mean - 90:+.1f} |" in real_part
    # the mib number is compared with the mib score: foreground old = 100
    assert "| FT | 19-1 | overlap | 1 | old | mib | mib | 99.0 | 100.0 ± 0.0 (n=3) | +1.0 |" \
        in real_part
    assert "| LwF | 19-1 | overlap | 1 | all | sdr | mib | 70.0 | not run |  |" in real_part
    assert "| FT | 15-1 | disjoint | 5 | all | sdr | mib | 5.6 | not run |  |" in real_part
    assert "synth" not in real_part  # synthetic runs never in a real-data column
    synthetic_part = section(text, "## Embedded synthetic data", "## Other sources")
    lwf_all = (1900 + 100 * 10 / 19 + 10) / 21  # IoU(20) = 1/10, IoU(0) = 10/19
    assert f"| LwF | 19-1 | overlap | 1 | all | sdr | mib | 70.0 | {lwf_all:.1f} (n=1, synth-voc" \
        in synthetic_part
    assert "15-1" not in synthetic_part  # only rows with synthetic runs
    assert "Other paper, table 9" in section(text, "## Other sources", "## Notes")
    # every source's numbers are shown beside synthetic runs too, in the marked section only
    other = synthetic_part.split("### Other paper, table 9 (synthetic runs)", 1)[1]
    assert f"| LwF | 19-1 | overlap | 1 | all | sdr | mib | 71.0 | {lwf_all:.1f} (n=1, synth-voc" \
        in other


def test_same_input_gives_a_byte_identical_file(tmp_path: Path) -> None:
    _, real, synthetic = crafted(tmp_path)
    generate(tmp_path, "first.md", real, synthetic)
    generate(tmp_path, "second.md", real, synthetic)
    assert (tmp_path / "first.md").read_bytes() == (tmp_path / "second.md").read_bytes()


def test_no_runs_at_all_gives_not_run_everywhere(tmp_path: Path, monkeypatch) -> None:
    crafted(tmp_path)
    monkeypatch.chdir(tmp_path)  # neither results/synthetic/runs nor runs here
    text = generate(tmp_path, "none.md")
    assert text.count("not run") == 6 + 1  # every row, plus the legend


def test_the_published_file_names_known_protocols_and_their_last_steps() -> None:
    published = load_published()
    assert {"sdr", "mib"} >= set(published["convention"])
    assert (published["source"].str.len() > 0).all()
    for _, row in published.iterrows():
        assert row["step"] == get_protocol(row["protocol"]).num_steps - 1, row.to_dict()
    sdr = published[published["source"].str.startswith("SDR paper")]
    charts = sdr[sdr["source"].str.contains("VOC charts")]
    assert len(charts) == 7 * 9
    one = charts[(charts["method"] == "sdr+mib") & (charts["protocol"] == "voc-15-1-disjoint")]
    assert one["value"].tolist() == pytest.approx([48.7])


def test_a_bad_published_row_is_named(tmp_path: Path, capsys) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text(PUBLISHED.replace("15-1,disjoint,ft,5", "15-1,disjoint,ft,9"))
    assert main(["tables", "--published", str(bad), "--out", str(tmp_path / "x.md")]) == 2
    assert "line 5: step 9 outside 0..5 of voc-15-1" in capsys.readouterr().err


def test_published_old_new_all_combine_as_their_convention_says() -> None:
    """Where a source gives old, new and all, all must be the class-weighted mean of old and new
    in the row's convention (how the conventions of the MiB, PLOP and RCIL quotes were told
    apart), within the rounding of the printed digits; rows flagged as not combining are the
    documented exceptions."""
    published = load_published()
    keys = ["source", "protocol", "method", "step", "convention"]
    checked = 0
    for key, group in published.groupby(keys):
        values = dict(zip(group["column"], group["value"], strict=True))
        if set(values) != {"old", "new", "all"}:
            continue
        protocol = get_protocol(key[1])
        old = protocol.step_sizes[0] - (1 if key[4] == "mib" else 0)
        new = sum(protocol.step_sizes[1:])
        combined = (old * values["old"] + new * values["new"]) / (old + new)
        digits = max(len(f"{v:g}".partition(".")[2]) for v in values.values())
        tolerance = 0.5 * 10 ** -max(digits, 1) * 2 + 1e-9
        if "do not combine" in " ".join(group["notes"]):
            assert combined != pytest.approx(values["all"], abs=tolerance), key
            continue
        assert combined == pytest.approx(values["all"], abs=tolerance), key
        checked += 1
    assert checked >= 20  # the SDR paper's sequential tables, MiB, PLOP and RCIL quotes


def test_a_published_cell_is_compared_only_with_runs_of_its_recipe(tmp_path: Path) -> None:
    """The same runs, the number naming the SDR recipe: the MiB-recipe runs are not it."""
    _, real, synthetic = crafted(tmp_path)
    published = tmp_path / "published.csv"
    published.write_text(PUBLISHED.replace("ft,1,all,90.0,sdr,,,mib", "ft,1,all,90.0,sdr,,,sdr"))
    text = generate(tmp_path, "recipe.md", real, synthetic)
    real_part = section(text, "## Real data", "## Embedded synthetic data")
    assert "| FT | 19-1 | overlap | 1 | all | sdr | sdr | 90.0 | not run |  |" in real_part
    assert "| FT | 19-1 | overlap | 1 | old | mib | mib | 99.0 | 100.0 ± 0.0 (n=3) |" in real_part


def test_a_published_cell_is_compared_only_with_runs_of_its_variant(tmp_path: Path) -> None:
    """SDR runs of the default variant (release) match a `release` number, not a `paper` one;
    the paper variant is named beside the method."""
    real = tmp_path / "real"
    for seed in (0, 1):
        write_run_19_1(real, correct_new=5, seed=seed, method="sdr", data=REAL_DATA)
    published = tmp_path / "published.csv"
    row = '"SDR paper, test chart",voc,19-1,overlap,sdr,1,new,{},sdr,,{},sdr\n'
    published.write_text(PUBLISHED.splitlines()[0] + "\n" + row.format("50.0", "release")
                         + row.format("40.0", "paper"))
    text = generate(tmp_path, "variant.md", real)
    assert "| SDR | 19-1 | overlap | 1 | new | sdr | sdr | 50.0 | 50.0 ± 0.0 (n=2) | +0.0 |" in text
    assert "| SDR (paper) | 19-1 | overlap | 1 | new | sdr | sdr | 40.0 | not run |  |" in text


@pytest.mark.parametrize(("columns", "reason"), [
    (",release,mib", "line 2: method ft has no variant, but the row names 'release'"),
    (",,synth", "line 2: recipe 'synth' not one of ('dkd', 'mib', 'plop', 'sdr')"),
])
def test_a_bad_variant_or_recipe_is_named(tmp_path: Path, capsys, columns, reason) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text(PUBLISHED.replace(",,mib\n", columns + "\n", 1))
    assert main(["tables", "--published", str(bad), "--out", str(tmp_path / "x.md")]) == 2
    assert reason in capsys.readouterr().err


def test_the_sdr_papers_ade_numbers_are_under_the_partition_protocol() -> None:
    published = load_published()
    sdr_ade = published[published["source"].str.startswith("SDR paper")
                        & (published["dataset"] == "ade")]
    assert len(sdr_ade) > 0 and set(sdr_ade["mode"]) == {"partition"}
    later = published[~published["source"].str.startswith("SDR paper")
                      & (published["dataset"] == "ade")]
    assert set(later["mode"]) == {"overlap"}  # PLOP and later re-ran ADE overlapped
    sdr_rows = published[published["method"].isin(["sdr", "sdr+mib"])]
    assert set(sdr_rows["variant"]) == {"release"} and set(sdr_rows["recipe"]) == {"sdr"}
    ours = published[published["method"].isin(["ft", "lwf", "lwf-mc", "ilt", "mib"])]
    assert set(ours["variant"]) == {""} and set(ours["recipe"]) == {"mib"}
