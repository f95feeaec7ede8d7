from racecheck.engine.clock import (
    NO_EPOCH,
    ForkToken,
    Token,
    epoch_clock,
    epoch_leq,
    epoch_slot,
    make_epoch,
    vc_join,
    vc_join_into,
    vc_leq,
)


def test_epoch_packs_clock_and_slot():
    e = make_epoch(7, 3)
    assert epoch_clock(e) == 7
    assert epoch_slot(e) == 3
    assert make_epoch(7, 3) != make_epoch(7, 4) != make_epoch(8, 3)


def test_epoch_leq_compares_only_its_own_slot():
    e = make_epoch(5, 1)
    assert epoch_leq(e, [0, 5])
    assert epoch_leq(e, [0, 9, 0])
    assert not epoch_leq(e, [99, 4])
    assert not epoch_leq(e, [99])  # slot beyond the vector counts as 0


def test_no_epoch_is_before_everything():
    assert epoch_leq(NO_EPOCH, [])
    assert epoch_leq(NO_EPOCH, [0, 0])


def test_vector_order_and_join():
    assert vc_leq([1, 2], [1, 2, 0])
    assert vc_leq([1, 2], [2, 3])
    assert not vc_leq([1, 3], [2, 2])
    assert not vc_leq([0, 0, 1], [5, 5])
    assert vc_join([1, 5], [3, 2, 7]) == (3, 5, 7)
    target = [4, 0]
    vc_join_into(target, (1, 2, 3))
    assert target == [4, 2, 3]


def test_tokens_are_snapshots():
    t = Token((1, 2))
    assert t.vc == (1, 2)
    f = ForkToken((1, 0, 1), 2, None)
    assert isinstance(f, Token) and f.slot == 2
