"""`e2train reproduce`: the table list, every table in --quick mode (paper numbers beside the
run's), and rows that cannot run at the paper's scale say why."""
import pytest

from e2train.app.cli import main
from e2train.app.reproduce import TABLES, paper_tables, reproduce

pytestmark = pytest.mark.filterwarnings("ignore:Full backward hook")


def test_list_names_every_table_with_its_source(capsys):
    assert main(["reproduce", "--list"]) == 0
    out = capsys.readouterr().out
    tables = paper_tables()
    assert set(tables) == set(TABLES)
    for name, spec in tables.items():
        assert name in out and spec["source"] in out
        assert set(c for row in spec["rows"].values() for c in row) <= set(spec["columns"])


@pytest.mark.parametrize("table", sorted(TABLES))
def test_quick_runs_and_prints_paper_beside_run(table):
    md = reproduce(table, "quick")
    spec = paper_tables()[table]
    scale = "sat6synthetic, modified_alexnet" if table.startswith("pipeline-") else "digits, resnet8"
    assert spec["source"] in md and f"quick scale, {scale}" in md
    rows = [l for l in md.splitlines() if l.startswith("| ") and not l.startswith("| row")]
    assert len(rows) == len(spec["rows"])
    for line in rows:
        cells = [c.strip() for c in line.strip("|").split("|")][1:]
        assert all(" / " in c for c in cells)
        # the run filled in every column of every row
        assert not any(c.endswith("not run") for c in cells)
        assert any(c.split(" / ")[1] != "-" for c in cells)


def test_paper_scale_rows_that_cannot_run_say_why(tmp_path):
    md = reproduce("deadhorse-sweep", "paper")
    assert "Not run: the paper's data set imagenet is not one e2train loads" in md
    md = reproduce("gskip-table1", "paper", data_dir=str(tmp_path))
    assert "Not run: cifar10 not found" in md and "95.41 / not run" in md
    md = reproduce("e2train-table2", "paper", data_dir=str(tmp_path))
    assert "Not run:" in md and "--digits or --quick" in md and "93.52 / not run" in md


def test_unknown_table_is_a_one_line_error(capsys):
    assert main(["reproduce", "table9"]) == 2
    err = capsys.readouterr().err
    assert "unknown table 'table9'" in err and len(err.strip().splitlines()) == 1


def test_paper_scale_uses_each_papers_protocol():
    """E2-Train section 4.1: 64k iterations, lr / 10 at 32k and 48k; Learn&Drop section 4.2:
    60 epochs of batch 256 at lr 0.001 on MNIST; WUS section 4.1: 200 epochs, no augmentation;
    E2-Train section 4.2: a shorter or longer run scales its LR steps with it."""
    from e2train.app.reproduce import PAPER_PROTOCOLS, Scale, _stretch
    proto = {k: v for k, v in PAPER_PROTOCOLS["e2train-table2"].items() if k != "batch_size"}
    s = Scale("paper", "digits", "resnet8", 1, protocol=proto)
    cfg = s.config()
    assert (cfg.iterations, cfg.schedule, cfg.lr_steps, cfg.lr_step_unit) == (64000, "step", "32000,48000", "iteration")
    assert _stretch(s, 2.0) == {"iterations": 128000, "lr_steps": "64000,96000"}
    assert _stretch(Scale("digits", "digits", "resnet8", 30), 2 / 3) == {"epochs": 20}
    ld, wus = PAPER_PROTOCOLS["learndrop-table2"], PAPER_PROTOCOLS["wus-table3"]
    assert (ld["epochs"], ld["batch_size"], ld["lr"], ld["schedule"]) == (60, 256, 0.001, "constant")
    assert (wus["epochs"], wus["augment"]) == (200, False)


def test_paper003_tables_run_the_distributed_code_and_say_what_they_measure(tmp_path):
    """Paper 003's profile tables: every stage's compute and send times from the pipelined run
    (sends only where a stage sends), the measured step beside the analytic one; SAT-6 itself
    only from --data-dir, else the rows say why they did not run."""
    from e2train.app.reproduce import Scale, pipeline_table5
    s = Scale("quick", "sat6synthetic", "modified_alexnet", 1, batch_size=16, protocol={"max_batches": 3, "lr": 0.05})
    r = pipeline_table5(s)
    assert r.rows["Stage 0"]["backward send ms"] is None and r.rows["Stage 1"]["forward send ms"] is None
    assert r.rows["Stage 0"]["forward send ms"] > 0 and r.rows["Stage 1"]["backward send ms"] > 0
    assert all(r.rows[f"Stage {i}"][c] > 0 for i in (0, 1) for c in ("forward ms", "backward ms"))
    assert r.rows["Average step (measured)"]["step ms"] > 0 and r.rows["Average step (analytic, Table 4)"]["step ms"] > 0
    assert "split [0, 7, 16], 3 mini-batches of 16" in r.notes[0]
    md = reproduce("pipeline-table7", "paper", data_dir=str(tmp_path))
    assert "Not run: sat6 not found" in md and "1963.31 / not run" in md
    assert "wall clock on this machine, no energy" in reproduce("pipeline-table4", "quick")
