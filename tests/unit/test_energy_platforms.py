"""One energy model for both trainers: named platforms, labelled parts, named baselines and
the ARM-rate re-pricing of recorded tallies (core.energy)."""
import pytest

from e2train.core import energy
from e2train.core import engine_map as em
from e2train.core.energy import (
    BASELINE_8BIT, BASELINE_FP32, FP32, PARTS, EnergyModel, arm_rate_table, as_8bit_fp32_grad, as_32bit_sgd,
    at_arm_rate, compare_to_baselines, price, ratio_parts,
)
from e2train.core.work import Work, mac_key


def board_like(arm_ops: int, fabric_s: float, scale: int = 1) -> Work:
    """A tally shaped like a device-trainer run: int8 fabric passes, ARM fp32 ops and time."""
    w = Work().add_macs(10**8 * scale, 8, 8).add_macs(10**8 * scale, 8, 16).add_macs(10**8 * scale, 16, 8)
    w.add_sram(10**8 * scale).add_dram(10**7 * scale).add_time(fabric_s)
    w.add_ops(arm_ops, FP32).add_arm_time(arm_ops, 1.2e8)
    return w


@pytest.mark.parametrize("name", list(energy.PLATFORMS))
def test_parts_add_up_to_the_total_and_to_the_models_energy(name):
    w = board_like(3 * 10**7, 0.4)
    p = price(w, name)
    assert p["kind"] == "modelled" and p["platform"] == name
    assert set(p["parts_j"]) == set(PARTS)
    assert p["total_j"] == pytest.approx(sum(p["parts_j"].values()), rel=1e-12)
    assert p["total_j"] == energy.platform(name).model.energy_j(w)      # bit for bit
    assert all(v >= 0 for v in p["parts_j"].values())


def test_the_two_platforms_differ_by_static_power_only():
    w = board_like(3 * 10**7, 0.4)
    board, per_op = price(w, "xc7z020"), price(w, "horowitz45")
    assert per_op["parts_j"]["static"] == 0.0 and per_op["static_note"] == "none"
    assert board["parts_j"]["static"] == pytest.approx(2.0 * w.seconds)
    assert "assumed" in board["static_note"]
    for k in ("compute", "on_chip", "dram"):
        assert board["parts_j"][k] == per_op["parts_j"][k]
    assert energy.PLATFORMS["xc7z020"].clock_hz == 100e6


def test_unknown_platform_is_refused_with_the_choices():
    with pytest.raises(ValueError, match="unknown energy platform 'zynq'.*xc7z020, horowitz45"):
        price(Work(), "zynq")


def _fp32_cell_seconds(n_8x8: int, n_8x16: int) -> float:
    """The extra fabric time of fp32 cells, from the engine's grid written out here: 8x8 MACs
    run two per cell (ROWS * 2 * COLS a cycle), 8x16 one per cell, fp32 one per two DSP48E1
    cells (ROWS * COLS / 2 a cycle), at 100 MHz."""
    cells = em.ROWS * em.COLS
    return (n_8x8 * (2 / cells - 1 / (2 * cells)) + n_8x16 * (2 / cells - 1 / cells)) / 100e6


def test_32bit_sgd_keeps_the_counts_in_fp32_times_them_on_fp32_cells_and_leaves_an_fp32_tally_unchanged():
    w = board_like(3 * 10**7, 0.4)
    f = as_32bit_sgd(w)
    assert f.total_macs == w.total_macs and set(f.macs) == {mac_key(FP32, FP32)}
    assert sum(f.ops.values()) == sum(w.ops.values())
    # operand bytes per MAC go from (2 + 3 + 3) / 3 to 8: on-chip and DRAM traffic x3
    assert f.sram_bytes == 3 * w.sram_bytes and f.dram_bytes == 3 * w.dram_bytes
    extra = _fp32_cell_seconds(10**8, 2 * 10**8)
    assert extra > 0 and f.seconds == pytest.approx(w.seconds + extra, rel=1e-12)
    assert f.critical_seconds == pytest.approx(w.critical_seconds + extra, rel=1e-12)
    assert f.arm_seconds == w.arm_seconds and f.arm_ops == w.arm_ops        # the ARM's part is kept
    for on in energy.PLATFORMS:
        assert price(f, on)["parts_j"]["compute"] > price(w, on)["parts_j"]["compute"]
    assert price(f)["parts_j"]["static"] == pytest.approx(2.0 * (w.seconds + extra))
    fp32 = Work().add_macs(10**6, FP32, FP32).add_sram(8 * 10**6).add_ops(500, FP32).add_time(0.1)
    assert price(as_32bit_sgd(fp32), "horowitz45") == price(fp32, "horowitz45")
    assert price(as_32bit_sgd(fp32), "xc7z020") == price(fp32, "xc7z020")


def test_32bit_sgd_has_no_predictor():
    """The PSG predictor's 4x10 products run beside the exact sums on the fabric; 32-bit SGD
    has none, so they are not carried over as fp32 MACs (nor timed)."""
    w = board_like(10**6, 0.2)
    with_pred = Work() + w
    with_pred.add_macs(10**8, 4, 10)
    a, b = as_32bit_sgd(w), as_32bit_sgd(with_pred)
    assert b.total_macs == a.total_macs == w.total_macs
    assert b.seconds == pytest.approx(a.seconds, rel=1e-12)


def test_the_papers_8bit_baseline_form_times_only_the_gradients_in_fp32():
    w = board_like(3 * 10**7, 0.4)
    g = as_8bit_fp32_grad(w)
    assert g.macs[mac_key(8, 8)] == w.macs[mac_key(8, 8)]
    assert g.macs[mac_key(8, FP32)] == w.macs[mac_key(8, 16)] and mac_key(8, 16) not in g.macs
    assert g.seconds == pytest.approx(w.seconds + _fp32_cell_seconds(0, 2 * 10**8), rel=1e-12)
    # operand bytes per MAC: (2 + 3 + 3) / 3 -> (2 + 5 + 5) / 3
    assert g.sram_bytes == round(w.sram_bytes * 12 / 8)
    b, p16, sgd = (price(x)["total_j"] for x in (w, g, as_32bit_sgd(w)))
    assert b < p16 < sgd


def test_compare_sets_the_model_beside_the_papers_measured_8bit_ratio():
    c = compare_to_baselines(board_like(10**7, 0.2), board_like(3 * 10**7, 0.4, scale=2))
    pc = c["paper_check"]
    assert pc["paper_8bit_fp32grad_to_sgd"] == pytest.approx(1 - 0.3862)
    assert 0 < pc["model_8bit_baseline_to_sgd"] < pc["model_8bit_fp32grad_to_sgd"] < 1
    # E2-Train against the [16] form lies between its ratios to the 8-bit baseline and to 32-bit SGD
    assert c["ratio_to"][BASELINE_FP32]["total"] < pc["e2train_to_8bit_fp32grad"] < c["energy_ratio"]


def test_ratio_parts_add_up_to_the_ratio_and_need_one_platform():
    run, base = board_like(10**7, 0.2), board_like(3 * 10**7, 0.4, scale=2)
    r = ratio_parts(price(run), price(base))
    assert r["total"] == pytest.approx(sum(r[k] for k in PARTS), rel=1e-12)
    assert r["total"] == pytest.approx(price(run)["total_j"] / price(base)["total_j"])
    with pytest.raises(ValueError, match="one platform"):
        ratio_parts(price(run, "xc7z020"), price(base, "horowitz45"))
    with pytest.raises(ValueError, match="zero"):
        ratio_parts(price(run), price(Work()))


def test_arm_rate_repricing_changes_only_the_arm_time():
    w = board_like(6 * 10**7, 0.4)
    assert w.arm_seconds == pytest.approx(0.5)
    same = at_arm_rate(w, 1.2e8)
    assert same.seconds == pytest.approx(w.seconds) and same.macs == w.macs and same.ops == w.ops
    fast = at_arm_rate(w, 4e8)
    assert fast.seconds == pytest.approx(0.4 + 6e7 / 4e8)
    assert (fast.sram_bytes, fast.dram_bytes, fast.arm_ops) == (w.sram_bytes, w.dram_bytes, w.arm_ops)
    assert w.seconds == pytest.approx(0.9)                         # the recorded tally is not touched
    with pytest.raises(ValueError, match="no recorded ARM ops"):
        at_arm_rate(Work().add_time(1.0), 1e8)
    with pytest.raises(ValueError, match="> 0"):
        at_arm_rate(w, 0)


def test_arm_rate_table_rows_are_monotone_in_the_rate():
    run, base = board_like(2 * 10**7, 0.2), board_like(6 * 10**7, 0.3, scale=2)
    rows = arm_rate_table(run, base)
    assert [r["arm_ops_per_second"] for r in rows] == [0.5e8, 1e8, 1.2e8, 2e8, 4e8]
    for a, b in zip(rows, rows[1:]):
        assert b["run_j"] < a["run_j"] and b["baseline_j"] < a["baseline_j"] and b["sgd32_j"] < a["sgd32_j"]
        assert b["arm_share_of_baseline_time"] < a["arm_share_of_baseline_time"]
    at_assumed = rows[2]
    assert at_assumed["run_j"] == pytest.approx(price(run)["total_j"])
    assert at_assumed["ratio_to_8bit"] == pytest.approx(price(run)["total_j"] / price(base)["total_j"])
    md = energy.arm_rate_table_md(rows)
    assert "1.2e+08 (assumed)" in md and md.count("\n") == 6


def test_compare_to_baselines_names_both_baselines():
    run, base = board_like(2 * 10**7, 0.2), board_like(6 * 10**7, 0.3, scale=2)
    c = compare_to_baselines(run, base)
    assert set(c["ratio_to"]) == {BASELINE_8BIT, BASELINE_FP32} and c["platform"] == "xc7z020"
    assert c["ratio_to"][BASELINE_FP32]["total"] < c["ratio_to"][BASELINE_8BIT]["total"]
    assert c["energy_ratio"] == c["ratio_to"][BASELINE_8BIT]["total"]
    assert len(c["arm_rate_table"]) == 5
    assert "arm_rate_table" not in compare_to_baselines(Work().add_macs(10, 8, 8), Work().add_macs(20, 8, 8))


def test_a_record_with_an_overlap_but_no_path_sets_is_priced_as_recorded_not_repriced():
    """Static power on the critical path; a record from before the path sets were kept cannot
    have its critical path recomputed at another rate, and says so (the comparison leaves its
    ARM-rate table out)."""
    run, base = board_like(2 * 10**7, 0.2), board_like(6 * 10**7, 0.3, scale=2)
    run.overlap_seconds = 0.1
    p = price(run)
    assert p["parts_j"]["static"] == pytest.approx(2.0 * (run.seconds - 0.1))
    assert p["static_on_sum_j"] == pytest.approx(2.0 * run.seconds)
    with pytest.raises(ValueError, match="no per-step critical paths"):
        at_arm_rate(run, 4e8)
    c = compare_to_baselines(run, base)
    assert "arm_rate_table" not in c and "re-run" in c["arm_rate_table_missing"]
    assert c["energy_ratio_on_sum"] == pytest.approx(p["total_on_sum_j"] / price(base)["total_on_sum_j"])


def test_work_keeps_the_arm_share_through_json_and_reads_older_records():
    w = board_like(10**6, 0.1)
    back = Work.from_dict(w.to_dict())
    assert (back.arm_ops, back.arm_seconds, back.seconds) == (w.arm_ops, w.arm_seconds, w.seconds)
    old = w.to_dict()
    del old["arm_ops"], old["arm_seconds"]
    assert Work.from_dict(old).arm_ops == 0
    s = w + w
    assert s.arm_ops == 2 * w.arm_ops and s.arm_seconds == pytest.approx(2 * w.arm_seconds)


def test_the_board_static_power_is_the_zynq_models():
    assert energy.PLATFORMS["xc7z020"].model == EnergyModel.zynq7020()
    assert energy.PLATFORMS["horowitz45"].model == EnergyModel.horowitz45nm()
