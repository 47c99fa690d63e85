"""Every report names the energy's parts, its platform, its baseline, and says "modelled"."""
from e2train.core import energy
from e2train.core.energy import FP32, PART_LABELS, PARTS
from e2train.core.work import Work


def report(arm_ops: int, fabric_s: float, scale: int) -> dict:
    w = Work().add_macs(10**8 * scale, 8, 8).add_macs(10**8 * scale, 8, 16).add_sram(10**8 * scale)
    w.add_dram(10**7 * scale).add_time(fabric_s).add_ops(arm_ops, FP32).add_arm_time(arm_ops, 1.2e8)
    p = energy.price(w, "xc7z020")
    summary = {"test_acc": 0.9, "modelled_energy_j": p["total_j"], "modelled_energy_parts_j": p["parts_j"],
               "energy_platform": "xc7z020", "modelled_time_s": w.seconds, "batches_run": 10, "batches_skipped": 0}
    return {"run_id": "r", "config": {}, "results": {"summary": summary, "work": w.to_dict(), "history": []}}


def test_run_summary_lists_every_part_labelled_modelled_on_its_platform():
    from e2train.app.run_report import energy_rows
    rows = dict(energy_rows(report(10**7, 0.2, 1)))
    for k in PARTS:
        key = next(r for r in rows if PART_LABELS[k] in r)
        assert "modelled" in key and "xc7z020" in key and rows[key].endswith(" J")


def test_demo_table_shows_parts_both_baselines_and_the_arm_rate_rows():
    from e2train.app.demo import comparison
    base, e2 = report(6 * 10**7, 0.3, 2), report(2 * 10**7, 0.2, 1)
    md = comparison({"baseline": base, "e2train": e2})
    for k in PARTS:
        assert PART_LABELS[k] in md
    assert "platform xc7z020" in md
    for plat in energy.PLATFORMS:
        c = energy.compare_to_baselines(Work.from_dict(e2["results"]["work"]), Work.from_dict(base["results"]["work"]),
                                        plat)
        for name in (energy.BASELINE_8BIT, energy.BASELINE_FP32):
            assert f"| {plat} | {name} | {c['ratio_to'][name]['total']:.3f} |" in md
    table = md[md.index("| ARM rate"):].splitlines()
    assert len([ln for ln in table if ln.startswith("| ") and "e+0" in ln]) == 5
    assert "1.2e+08 (assumed)" in md
    # every energy figure line of the table says modelled (or is the meter's, labelled by kind)
    for ln in md.splitlines():
        if ln.startswith("| ") and "(J" in ln and "meter" not in ln:
            assert "modelled" in ln, ln


def test_demo_table_without_recorded_work_still_prints():
    from e2train.app.demo import comparison
    base, e2 = report(10**7, 0.3, 2), report(10**7, 0.2, 1)
    del base["results"]["work"]
    md = comparison({"baseline": base, "e2train": e2})
    assert "ARM rate" not in md and "board energy, modelled" in md
