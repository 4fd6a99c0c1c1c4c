"""Learners (non-voting members, Raft thesis §4.2.1): a new member first receives the log
without voting or counting toward any quorum, so a slow or dead newcomer never stalls a
commit or an election; it becomes a voter only once it has caught up."""

from __future__ import annotations

from raft_harness import CFG, Net, make

from raftfleet_ray.raft import CoreConfig, Ok, Rejected

T = CFG.election_ticks


def group_with_learner(cfg: CoreConfig = CFG) -> tuple[Net, str]:
    net = Net("abc", cfg)
    lead = net.elect()
    net.add_node(make("d", members=(), cfg=cfg))
    net.do(lead.id, lambda n: n.add_learner("add", "d"))
    net.deliver()
    assert net.reply_for("add") == Ok(lead.members)
    return net, lead.id


def test_a_learner_gets_the_log_but_is_not_a_voter() -> None:
    net, lead = group_with_learner()
    leader = net.nodes[lead]
    assert leader.learners == ("d",) and "d" not in leader.members
    assert net.propose(lead, "w", "w", ("put", "k", 1)) == Ok(None)
    net.tick_all(2)
    d = net.nodes["d"]
    assert d.applied_index == leader.commit_index and d.data.items == {"k": 1}
    assert d.members == leader.members and d.learners == ("d",)  # it knows the configuration
    st = leader.status()
    assert st.learners == ("d",) and st.caught_up_learners == ("d",)


def test_a_dead_learner_never_stalls_commits() -> None:
    net, lead = group_with_learner()
    net.down.add("d")
    for i in range(5):
        assert isinstance(net.propose(lead, f"w{i}", f"w{i}", ("put", "k", i)), Ok)


def test_learner_acks_do_not_make_a_quorum() -> None:
    """Voters a, b, c (two of them down) plus learner d: the leader and d hold an entry, but
    they are not a majority of the voters, so nothing commits."""
    net, lead = group_with_learner()
    others = [m for m in "abc" if m != lead]
    net.down.update(others)
    commit = net.nodes[lead].commit_index
    assert net.propose(lead, "w", "w", ("put", "k", 9)) is None
    assert net.nodes[lead].commit_index == commit
    assert net.nodes["d"].last_index == net.nodes[lead].last_index  # d has it, it does not count


def test_a_learner_never_campaigns_and_its_vote_does_not_count() -> None:
    net, lead = group_with_learner()
    net.down.add(lead)
    d = net.nodes["d"]
    for _ in range(4 * T):
        net.tick_all()
        assert d.role == "follower"
    assert net.leader() is not None and net.leader().id in "abc"


def test_promote_waits_until_the_learner_has_caught_up() -> None:
    net, lead = group_with_learner()
    net.drop = lambda m: m.to == "d"  # d falls behind
    for i in range(3):
        net.propose(lead, f"w{i}", f"w{i}", ("put", "k", i))
    net.tick_all(2 * T + 1)  # d has not answered for 2T: behind and unresponsive
    rd = net.do(lead, lambda n: n.promote_learner("p1", "d"))
    assert rd.replies[0].result == Rejected("learner_behind", lead)
    net.drop = lambda m: False
    net.tick_all(2 * CFG.heartbeat_ticks)
    net.do(lead, lambda n: n.promote_learner("p2", "d"))
    net.deliver()
    assert net.reply_for("p2") == Ok(tuple(net.nodes[lead].members))
    leader = net.nodes[lead]
    assert "d" in leader.members and leader.learners == ()
    assert net.nodes["d"].members == leader.members  # d knows it votes now


def test_promote_and_learner_errors() -> None:
    net, lead = group_with_learner()
    leader = net.nodes[lead]
    assert leader.promote_learner("x", "a" if lead != "a" else "b").replies[0].result == Rejected("not_learner", lead)
    assert leader.add_learner("y", "d").replies[0].result == Rejected("already_member", lead)
    assert leader.add_member("z", "d").replies[0].result == Rejected("already_member", lead)
    f = net.nodes["b" if lead != "b" else "c"]
    assert f.promote_learner("w", "d").replies[0].result == Rejected("not_leader", lead)


def test_a_learner_can_always_be_removed_and_is_told() -> None:
    net, lead = group_with_learner()
    net.down.update(m for m in "abc" if m != lead)  # no voter but the leader answers
    net.down.add("d")
    net.tick_all(2 * T + 1)
    leader = net.nodes[lead]
    assert leader.role == "follower" or leader.role == "leader"
    net2, lead2 = group_with_learner()
    rd = net2.do(lead2, lambda n: n.remove_member("r", "d"))
    assert rd.replies == []  # answered at commit
    net2.deliver()
    assert net2.reply_for("r") == Ok(net2.nodes[lead2].members)
    assert net2.nodes[lead2].learners == ()
    assert net2.nodes["d"].role == "removed"


def test_the_configuration_with_learners_survives_snapshots_and_leader_changes() -> None:
    cfg = CoreConfig(election_ticks=10, heartbeat_ticks=2, snapshot_interval=3, log_retention=0)
    net, lead = group_with_learner(cfg)
    for i in range(6):
        net.propose(lead, f"w{i}", f"w{i}", ("put", "k", i))
    leader = net.nodes[lead]
    assert leader.snapshot_meta is not None and leader.snapshot_meta.learners == ("d",)
    net.down.add(lead)
    new = None
    for _ in range(6 * T):
        net.tick_all()
        new = net.leader()
        if new is not None and new.id != lead:
            break
    assert new is not None and new.learners == ("d",)
    assert all(net.nodes[m].learners == ("d",) for m in new.members if m != lead)
    assert net.propose(new.id, "after", "after", ("put", "k", 99)) == Ok(5)
    net.tick_all(2)
    assert net.nodes["d"].data.items == {"k": 99}


def test_a_learner_added_with_promote_becomes_a_voter_once_caught_up_without_being_asked() -> None:
    """Issue 14: the group is short of a voter while a learner catches up; the leader promotes
    it the moment it has, instead of waiting for the reconciler's next round."""
    net = Net("abc", CFG)
    lead = net.elect()
    for k in range(20):
        net.propose(lead.id, k, k, ("put", k, k))
    joiner = make("d", members=())
    net.add_node(joiner)
    net.do(lead.id, lambda n: n.add_learner("add-d", "d", promote=True))
    net.deliver()
    assert net.reply_for("add-d") is not None
    net.tick_all(4)
    assert "d" in lead.members and "d" not in lead.learners
    assert joiner.commit_index == lead.commit_index
    assert net.reply_for(("promoted", "d")) == Ok(lead.members)


def test_without_promote_the_learner_stays_a_learner() -> None:
    net = Net("abc", CFG)
    lead = net.elect()
    net.add_node(make("d", members=()))
    net.do(lead.id, lambda n: n.add_learner("add-d", "d"))
    net.deliver()
    net.tick_all(4)
    assert "d" in lead.learners
