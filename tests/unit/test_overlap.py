"""The step's critical path on small cases computed by hand (core.overlap)."""
import pytest

from e2train.core.overlap import Task, chain_step_tasks, schedule, serial_seconds

TWO = [dict(name="L0", dma=0.5, fwd=1.0, fwd_arm=2.0, bwd_arm=1.0, bwd_data=0.0, wgrad=3.0),
       dict(name="L1", dma=0.5, fwd=1.0, fwd_arm=2.0, bwd_arm=1.0, bwd_data=1.0, wgrad=3.0)]


def test_two_layers_by_hand():
    r = schedule(chain_step_tasks(TWO, head_arm_s=1.0))
    # L0: dma 0-0.5, fwd 0.5-1.5, arm 1.5-3.5; L1's weights load 0.5-1.0 under L0's conv (hidden),
    # L1.fwd waits for L0's BN/ReLU: 3.5-4.5, arm 4.5-6.5, head 6.5-7.5; backward: L1.bwd_arm
    # 7.5-8.5, bwd_data 8.5-9.5, wgrad 9.5-12.5; L0.bwd_arm once L1's wgrad has returned (the
    # synchronous thread): 12.5-13.5, L0.wgrad 13.5-16.5. Only L1's weight load is hidden.
    f = r["finish"]
    assert f["L1.dma"] == 1.0 and f["L1.fwd"] == 4.5 and f["head"] == 7.5
    assert r["start"]["L0.bwd_arm"] == 12.5 and f["L0.bwd_arm"] == 13.5
    assert r["critical_s"] == pytest.approx(16.5)
    assert r["sum_s"] == pytest.approx(17.0) == pytest.approx(serial_seconds(TWO, 1.0))
    assert r["busy_s"] == {"fabric": 9.0, "dma": 1.0, "arm": 7.0}


def test_the_backward_arm_work_waits_for_the_weight_gradient_call():
    layers = [dict(name="a", fwd=1.0, bwd_arm=4.0, wgrad=1.0), dict(name="b", fwd=1.0, bwd_data=1.0, wgrad=1.0)]
    r = schedule(chain_step_tasks(layers))
    # fwd a 0-1, b 1-2; b.bwd_arm 2-2 (0 s); b.bwd_data 2-3, b.wgrad 3-4; a.bwd_arm 4-8 (after
    # b.wgrad returns, though it reads only b.bwd_data's output), a.bwd_data 8-8, a.wgrad 8-9
    assert r["start"]["a.bwd_arm"] == pytest.approx(4.0)
    assert r["critical_s"] == pytest.approx(9.0) == pytest.approx(r["sum_s"])


def test_side_work_runs_beside_the_next_layers_passes():
    """A layer's side work (ARM work nothing in the step waits for) is issued after the next
    layer down's BN/ReLU backward and runs beside that layer's fabric passes: hidden when it is
    shorter than them, a delay of the next ARM step by what it overruns when longer; the first
    layer's comes after the step's last pass."""
    def layers(side_b):
        return [dict(name="a", fwd=1.0, bwd_arm=1.0, bwd_data=1.0, wgrad=2.0, side_arm=0.5),
                dict(name="b", fwd=1.0, bwd_arm=1.0, bwd_data=1.0, wgrad=2.0, side_arm=side_b),
                dict(name="c", fwd=1.0, bwd_arm=1.0, bwd_data=1.0, wgrad=2.0)]
    base = schedule(chain_step_tasks([dict(ly, side_arm=0.0) for ly in layers(0.0)]))
    # forward 0-3; backward: c.bwd_arm 3-4, its passes 4-7; b.bwd_arm 7-8, c's side (0 s) 8-8,
    # b's passes 8-11; a.bwd_arm 11-12, b's side 12-14.5 beside a's passes 12-15; a's side
    # after them, 15-15.5
    hid = schedule(chain_step_tasks(layers(2.5)))
    assert hid["start"]["b.side_arm"] == pytest.approx(12.0) and hid["start"]["a.bwd_data"] == pytest.approx(12.0)
    assert hid["finish"]["a.side_arm"] == pytest.approx(15.5)
    assert hid["critical_s"] == pytest.approx(base["critical_s"] + 0.5)      # a's side alone, at the end
    over = schedule(chain_step_tasks(layers(4.0)))                           # overruns a's passes by 1 s
    assert over["critical_s"] == pytest.approx(hid["critical_s"] + 1.0)
    assert over["sum_s"] == pytest.approx(serial_seconds(layers(4.0)))


def test_forward_alone_does_not_overlap_fabric_and_arm():
    layers = [dict(name=f"L{i}", fwd=1.0, fwd_arm=1.0) for i in range(3)]
    r = schedule(chain_step_tasks(layers))
    assert r["critical_s"] == pytest.approx(r["sum_s"]) == pytest.approx(6.0)


def test_bad_tasks_are_refused():
    with pytest.raises(ValueError, match="not listed before"):
        schedule([Task("b", "arm", 1.0, ("a",)), Task("a", "arm", 1.0)])
    with pytest.raises(ValueError, match=">= 0"):
        schedule([Task("a", "fabric", -1.0)])
    with pytest.raises(ValueError, match="unknown resource"):
        schedule([Task("a", "gpu", 1.0)])
    with pytest.raises(ValueError, match="unknown keys"):
        chain_step_tasks([dict(name="a", fwdd=1.0)])


def test_timeline_by_hand():
    from e2train.core.overlap import Timeline
    tl = Timeline()
    # in the trainer's program order: fwd 0-1 (fabric); ARM 1-2; bwd_data 2-4; wgrad 4-6; the ARM
    # work after it (dequantise g_x, next layer's BN backward) reads only bwd_data's output, but the
    # synchronous thread does it once the wgrad call has returned: 6-9; the optimiser 9-10.
    for res, s, kind in (("fabric", 1, "fwd"), ("arm", 1, ""), ("fabric", 2, "bwd_data"), ("fabric", 2, "wgrad"),
                         ("arm", 3, ""), ("arm", 1, "")):
        tl.add(res, s, kind)
    assert tl.open_s() == 10
    assert tl.close_step() == 0                  # nothing overlaps without side work
    assert (tl.critical_s, tl.sum_s) == (10, 10)
    # a new step starts with both resources free at its own zero
    tl.add("fabric", 1, "bwd_data")              # 0-1
    tl.add("fabric", 4, "wgrad")                 # 1-5
    tl.add("arm", 1)                             # 5-6: after the call before it returned
    assert tl.free_s("arm") == 6
    tl.add("arm", 1)                             # 6-7
    tl.add("fabric", 1)                          # 7-8
    assert tl.close_step() == 0 and tl.critical_s == 18
    with pytest.raises(ValueError, match="unknown resource"):
        tl.add("dma", 1)


def test_a_fabric_call_is_issued_once_the_arm_is_free():
    """The ARM's one thread issues every call: ARM work issued before a weight gradient holds it
    up even though the weight gradient does not read it."""
    from e2train.core.overlap import Timeline
    tl = Timeline()
    for res, s, kind in (("fabric", 2, "bwd_data"), ("arm", 3, ""), ("fabric", 2, "wgrad")):
        tl.add(res, s, kind)
    assert tl.open_s() == 7                      # bwd_data 0-2, ARM 2-5, wgrad 5-7 (not 2-4)
    assert tl.free_s("arm") == 5 and tl.free_s("fabric") == 7


def test_a_side_segment_runs_while_the_fabric_call_issued_last_is_busy():
    from e2train.core.overlap import Timeline, path_seconds
    # a side segment shorter than the call it runs under is hidden: call 0-4, side 0-3 under it,
    # the next call 4-6, the critical ARM work after it 6-7
    tl = Timeline()
    for res, s, kind in (("fabric", 4, ""), ("arm", 3, "side"), ("fabric", 2, ""), ("arm", 1, "")):
        tl.add(res, s, kind)
    assert tl.open_s() == 7 and tl.close_step() == 3
    # a longer one delays the next call's issue by what it overran: call 0-1, side 0-3, the next
    # call 3-5, the ARM work 5-6
    tl = Timeline()
    for res, s, kind in (("fabric", 1, ""), ("arm", 3, "side"), ("fabric", 2, ""), ("arm", 1, "")):
        tl.add(res, s, kind)
    assert tl.open_s() == 6
    # two side segments run one after the other on the ARM, from the call's start: 0-2, 2-3
    tl = Timeline()
    tl.add("arm", 1)                                  # 0-1: the ARM work the call reads
    tl.add("fabric", 4)                               # 1-5
    tl.add("arm", 2, "side")                          # 1-3
    tl.add("arm", 1, "side")                          # 3-4
    assert tl.free_s("arm") == 4 and tl.open_s() == 5
    # a side segment waits for the start of the call issued last, not for its end, and holds up
    # no fabric work of its own (only the ARM that issues it)
    tl = Timeline()
    tl.add("fabric", 3)                               # 0-3
    tl.add("fabric", 2)                               # 3-5
    tl.add("arm", 1, "side")                          # 3-4
    assert tl.free_s("arm") == 4 and tl.open_s() == 5
    with pytest.raises(ValueError, match="side segment"):
        tl.add("fabric", 1, "side")
    # the path sets follow the same rule: at the timed rate they give the same critical path
    tl4 = Timeline()
    tl4.add("fabric", 1.0)
    tl4.add("arm", 3.0, "side", arm_ops=300)
    tl4.add("fabric", 2.0)
    assert path_seconds(tl4.open_paths(), 100.0) == pytest.approx(tl4.open_s()) == pytest.approx(5.0)
    assert path_seconds(tl4.open_paths(), 1000.0) == pytest.approx(3.0)   # a faster ARM: hidden, the fabric's 3 s


def test_path_sets_give_the_timeline_at_any_arm_rate():
    """A step's path set, evaluated at an ARM rate, is the critical path the timeline computes
    when the same segments are timed at that rate (random programs of passes, ARM work and side segments)."""
    import random

    from e2train.core.overlap import Timeline, path_seconds
    rnd = random.Random(5)
    for _ in range(50):
        prog = []
        for _ in range(rnd.randrange(1, 30)):
            if rnd.random() < 0.5:
                prog.append(("arm", rnd.randrange(0, 10**6), rnd.choice(["", "side"])))
            else:
                prog.append(("fabric", rnd.random() * 0.01, rnd.choice(["", "bwd_data", "wgrad"])))
        rec = Timeline()
        for seg in prog:
            if seg[0] == "arm":
                rec.add("arm", seg[1] / 1.2e8, seg[2], arm_ops=seg[1])
            else:
                rec.add("fabric", seg[1], seg[2])
        paths = rec.open_paths()
        assert path_seconds(paths, 1.2e8) == pytest.approx(rec.open_s(), rel=1e-12, abs=1e-15)
        for rate in (0.5e8, 4e8):
            tl = Timeline()
            for seg in prog:
                tl.add(*(("arm", seg[1] / rate, seg[2]) if seg[0] == "arm" else seg))
            assert path_seconds(paths, rate) == pytest.approx(tl.open_s(), rel=1e-12, abs=1e-15)


def test_path_set_of_the_hand_example():
    from e2train.core.overlap import Timeline
    tl = Timeline()
    # the first example of test_timeline_by_hand, the ARM's work given in ops (1 op/s), and a side
    # segment under the weight gradient: two chains end the step, the one through every segment
    # but the side one, and the one through the side segment (from the wgrad's start) and the ARM
    for res, s, kind in (("fabric", 1, "fwd"), ("arm", 1, ""), ("fabric", 2, "bwd_data"), ("fabric", 2, "wgrad"),
                         ("arm", 5, "side"), ("arm", 3, ""), ("arm", 1, "")):
        tl.add(res, s, kind, arm_ops=s if res == "arm" else None)
    # fwd 1 + arm 1 + bwd_data 2 + wgrad 2 + arm 3 + arm 1 = (5 s, 5 ops);
    # fwd + arm + bwd_data + side 5 + arm 3 + arm 1 = (3 s, 10 ops)
    assert set(tl.open_paths()) == {(5.0, 5), (3.0, 10)}
    tl.close_step()
    assert tl.step_paths == [tl.step_paths[0]] and tl.last_timed == (5.0, 10)
    with pytest.raises(ValueError, match="arm_ops"):
        tl.add("fabric", 1.0, arm_ops=3)


def test_path_sets_keep_only_lines_on_the_envelope():
    """A path that is the longest at no ARM rate is dropped: (2, 2) lies under the crossing of
    (4, 0) and (0, 4) for every rate; (3, 2) does not (it is the longest at 1 op/s)."""
    from e2train.core.overlap import _join
    assert set(_join(((4.0, 0), (0.0, 4)), ((2.0, 2),))) == {(4.0, 0), (0.0, 4)}
    assert set(_join(((4.0, 0), (0.0, 4)), ((3.0, 2),))) == {(4.0, 0), (3.0, 2), (0.0, 4)}
    assert _join(((4.0, 3),), ((3.0, 2), (4.0, 1))) == ((4.0, 3),)        # dominated


def test_work_keeps_step_paths_merged_and_through_its_record():
    from e2train.core.work import Work
    w = Work()
    w.add_step(0.5, ((1.0, 5),), 1.0, 5)
    w.add_step(0.5, ((1.0, 5),), 1.0, 5)
    w.add_step(0.0, ((2.0, 0), (1.0, 7)), 2.0, 7)
    assert w.step_paths == [[2, [[1.0, 5]]], [1, [[2.0, 0], [1.0, 7]]]] and w.timed_steps == 3
    assert (w.overlap_seconds, w.timed_fabric_s, w.timed_arm_ops) == (1.0, 4.0, 17)
    back = Work.from_dict(w.to_dict())
    assert back.step_paths == w.step_paths and back.timed_arm_ops == 17
    both = w + back
    assert both.timed_steps == 6 and len(both.step_paths) == 2 and w.timed_steps == 3


def test_the_task_graph_and_the_timeline_agree_on_a_chain():
    """The two forms of the one overlap rule (the bench's task graph, the trainer's Timeline)
    give the same critical path for the same chain issued in program order (DMA left out: the
    Timeline keeps it inside the kernels' times)."""
    import random

    from e2train.core.overlap import Timeline
    rnd = random.Random(11)
    for _ in range(50):
        layers = [dict(name=f"L{i}", **{k: rnd.uniform(0, 3) for k in ("fwd", "fwd_arm", "bwd_arm", "bwd_data", "wgrad")})
                  for i in range(rnd.randint(1, 6))]
        head = rnd.uniform(0, 2)
        tl = Timeline()
        for ly in layers:
            tl.add("fabric", ly["fwd"], "fwd")
            tl.add("arm", ly["fwd_arm"])
        tl.add("arm", head)
        for ly in reversed(layers):
            tl.add("arm", ly["bwd_arm"])
            tl.add("fabric", ly["bwd_data"], "bwd_data")
            tl.add("fabric", ly["wgrad"], "wgrad")
        r = schedule(chain_step_tasks(layers, head_arm_s=head))
        assert tl.open_s() == pytest.approx(r["critical_s"])
