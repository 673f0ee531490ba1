from __future__ import annotations

from pathlib import Path

from feedrank.core import codecs
from feedrank.learners.replay import read_replay, to_events
from feedrank.v1 import events_pb2

TS = 1_764_000_000_000


def test_a_decision_becomes_one_decision_event_and_a_reward_per_rewarded_row(
    tmp_path: Path,
) -> None:
    path = tmp_path / "logs.csv"
    path.write_text(
        "decision_id,timestamp,user_id,post_id,position,propensity,reward,reward_type,"
        "score,arm,country,activity,item_age,item_language\n"
        f"d1,{TS},u1,p2,1,0.25,0,,0.4,b,US,1.5,7,de\n"
        f"d1,{TS},u1,p1,0,0.5,2,share,0.9,b,US,1.5,2,en\n"
    )
    [decision_rows] = read_replay(path).decisions
    events = to_events(decision_rows)
    assert events.key == b"u1"

    decision = codecs.decode_decision(events.decision)
    assert decision.decision_id == "d1"
    assert decision.event_time_ms == TS
    assert (decision.user_id, decision.model_version, decision.arm) == ("u1", "replay", "b")
    assert dict(decision.user_features.numeric) == {"activity": 1.5}
    assert dict(decision.user_features.categorical) == {"country": "US"}
    assert [(i.post_id, i.position, i.propensity, i.score) for i in decision.items] == [
        ("p1", 0, 0.5, 0.9),
        ("p2", 1, 0.25, 0.4),
    ]
    assert dict(decision.items[1].features.numeric) == {"age": 7.0}
    assert dict(decision.items[1].features.categorical) == {"language": "de"}

    [reward_bytes] = events.rewards
    reward = codecs.decode_reward(reward_bytes)
    assert (reward.decision_id, reward.post_id, reward.user_id) == ("d1", "p1", "u1")
    assert reward.type == events_pb2.REWARD_TYPE_SHARE
    assert codecs.reward_value(reward) == 2.0
    assert reward.ts_ms == TS
