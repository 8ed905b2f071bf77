"""The protocol registry: exact class splits, names, orders and errors."""

import pytest

from bench.errors import BenchError
from protocols import MODES, all_protocols, get_protocol, protocol_names

# (setting, per-step classes) from the issue text / MiB, PLOP and SDR papers.
VOC_SPLITS = {
    "19-1": [range(0, 20), [20]],
    "15-5": [range(0, 16), range(16, 21)],
    "15-1": [range(0, 16), [16], [17], [18], [19], [20]],
    "10-1": [range(0, 11)] + [[c] for c in range(11, 21)],
    "10-10": [range(0, 11), range(11, 21)],
    "10-5-5": [range(0, 11), range(11, 16), range(16, 21)],
    "5-3": [range(0, 6), range(6, 9), range(9, 12), range(12, 15), range(15, 18), range(18, 21)],
    "19-1b": [[c for c in range(21) if c != 5], [5]],
    "offline": [range(0, 21)],
}
ADE_SPLITS = {
    "100-50": [range(0, 101), range(101, 151)],
    "100-10": [range(0, 101)] + [range(s, s + 10) for s in range(101, 151, 10)],
    "50-50": [range(0, 51), range(51, 101), range(101, 151)],
    "100-5": [range(0, 101)] + [range(s, s + 5) for s in range(101, 151, 5)],
    "offline": [range(0, 151)],
}
EXPECTED = [("voc", s, steps) for s, steps in VOC_SPLITS.items()] + [
    ("ade", s, steps) for s, steps in ADE_SPLITS.items()
]
ORDERED = ["voc-15-1@order=3", "voc-10-1-disjoint@order=1", "ade-100-10-sequential@order=7"]


IDS = [f"{d}-{s}" for d, s, _ in EXPECTED]


@pytest.mark.parametrize("dataset,setting,steps", EXPECTED, ids=IDS)
@pytest.mark.parametrize("mode", MODES)
def test_exact_class_splits(dataset, setting, steps, mode):
    suffix = "" if mode == "overlap" else f"-{mode}"
    if mode == "partition" and (dataset, setting) not in (("ade", "100-50"), ("ade", "100-10"),
                                                          ("ade", "50-50")):
        # only where MiB ships a partition (data/ade/<task>/train-<step>.npy)
        with pytest.raises(BenchError, match="unknown protocol"):
            get_protocol(f"{dataset}-{setting}{suffix}")
        return
    protocol = get_protocol(f"{dataset}-{setting}{suffix}")
    assert protocol.mode == mode
    assert [list(protocol.step_classes(t)) for t in range(protocol.num_steps)] == [
        list(s) for s in steps
    ]


@pytest.mark.parametrize("name", protocol_names() + ORDERED)
def test_steps_partition_the_label_set(name):
    protocol = get_protocol(name)
    labels = [c for t in range(protocol.num_steps) for c in protocol.step_classes(t)]
    assert sorted(labels) == list(range(protocol.num_labels))
    assert protocol.step_classes(0)[0] == 0
    for t in range(protocol.num_steps):
        assert 0 not in protocol.new_classes(t)
        assert protocol.seen_classes(t) == protocol.old_classes(t) + protocol.step_classes(t)
        assert set(protocol.future_classes(t)).isdisjoint(protocol.seen_classes(t))
        # every step's classes take the next contiguous output channels
        channels = [protocol.channel(c) for c in protocol.step_classes(t)]
        assert channels == list(protocol.channels_of(t))


def test_every_setting_in_every_mode_is_registered():
    names = set(protocol_names())
    # + MiB's ADE orders b and c of 100-50, 100-10, 50-50 (3 modes) + 6 ADE partitions
    assert len(names) == 3 * (len(VOC_SPLITS) + len(ADE_SPLITS) + 6) + 6
    for setting in VOC_SPLITS:
        assert {f"voc-{setting}", f"voc-{setting}-disjoint", f"voc-{setting}-sequential"} <= names
    for setting in ADE_SPLITS:
        assert {f"ade-{setting}", f"ade-{setting}-disjoint", f"ade-{setting}-sequential"} <= names
    assert len(all_protocols()) == len(names)


def test_dataset_knobs():
    voc, ade = get_protocol("voc-15-1"), get_protocol("ade-100-10")
    assert voc.void_as_background and not voc.background_ignored_at_test
    assert ade.background_ignored_at_test and not ade.void_as_background
    assert not get_protocol("voc-15-1-sequential").void_as_background
    assert voc.background_in_old_all and voc.eval_crop == "center"
    assert voc.knobs()["void_as_background"] is True


def test_seeded_order_is_deterministic_and_keeps_step_sizes():
    first, again = get_protocol("voc-15-1@order=3"), get_protocol("voc-15-1@order=3")
    other = get_protocol("voc-15-1@order=4")
    assert first.class_order == again.class_order
    assert first.class_order != other.class_order
    assert first.class_order != tuple(range(21))
    assert first.class_order[0] == 0
    assert first.step_sizes == (16, 1, 1, 1, 1, 1)
    assert first.name == "voc-15-1@order=3"
    # the permutation is a fixed fact of the name: pin it so that it can never drift
    assert first.class_order == (0, 9, 4, 7, 6, 16, 17, 3, 13, 1, 2, 14, 11, 20, 10, 15,
                                 12, 5, 18, 19, 8)
    assert first.channel(12) == 16 and first.channel(9) == 1


def test_explicit_overlap_suffix_is_an_alias():
    assert get_protocol("voc-15-1-overlap") == get_protocol("voc-15-1")


def test_unknown_protocol_suggests_close_names():
    with pytest.raises(BenchError) as error:
        get_protocol("voc-15-2")
    message = str(error.value)
    assert "voc-15-2" in message and "voc-15-1" in message and "voc-15-5" in message
    with pytest.raises(BenchError, match="ade-100-10-disjoint"):
        get_protocol("ade-100-10-disjont")


def test_step_out_of_range():
    with pytest.raises(IndexError):
        get_protocol("voc-15-5").step_classes(2)


def test_partition_protocols_are_the_ade_settings_with_reference_files():
    assert [n for n in protocol_names() if n.endswith("-partition")] == [
        "ade-100-50-partition", "ade-100-10-partition", "ade-50-50-partition",
        "ade-100-50b-partition", "ade-100-10b-partition", "ade-50-50b-partition"]
    protocol = get_protocol("ade-100-50-partition")
    assert protocol.mode == "partition" and protocol.background_ignored_at_test
    with pytest.raises(BenchError, match="unknown protocol 'ade-100-50-partition@order=1'"):
        get_protocol("ade-100-50-partition@order=1")  # a reference partition has one order


def test_mibs_ade_orders_b_and_c():
    """fcdl94/MiB tasks.py `tasks_ade`: each step's classes as listed there (spot checks)."""
    b = get_protocol("ade-100-10b")
    assert b.step_sizes == (101, 10, 10, 10, 10, 10)
    assert b.step_classes(1) == (11, 16, 50, 64, 66, 73, 89, 92, 145, 146)
    assert b.step_classes(5) == (17, 20, 59, 68, 83, 94, 102, 122, 127, 137)
    assert b.step_classes(0)[:8] == (0, 1, 3, 5, 6, 8, 9, 10)
    c = get_protocol("ade-50-50c-disjoint")
    assert c.step_sizes == (51, 50, 50) and c.step_classes(1)[:5] == (1, 6, 8, 9, 14)
    assert get_protocol("ade-100-50b").step_classes(1)[:5] == (2, 4, 7, 11, 15)
    assert get_protocol("ade-100-50c").step_classes(1)[-3:] == (145, 148, 150)
    with pytest.raises(BenchError, match="unknown protocol 'ade-100-50c-partition'"):
        get_protocol("ade-100-50c-partition")  # MiB ships no partition for the c orders
