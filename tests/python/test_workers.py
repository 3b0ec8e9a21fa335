"""Client.workers(): the consumer group's members, their partitions and
the lag behind the end of each partition, as GET /workers answers."""

import socket
import time

import djob
import pytest

from _helpers import read_until


def until(client, want, timeout=60):
    """workers() until want(answer) holds; the last answer either way."""
    return read_until(client.workers, want, timeout)


def test_workers_name_each_member_with_its_partitions_and_count_the_lag(client, config,
                                                                       make_worker):
    compute = config["topic.prefix"] + "compute"
    answer = client.workers()
    assert answer["group"] == config["group.id"]
    assert answer["state"] == "Empty" and answer["workers"] == []

    worker = make_worker(extra={"worker.id": "py-worker-1"})
    answer = until(client, lambda a: a["state"] == "Stable" and a["workers"] and
                   len(a["workers"][0]["partitions"]) == 3)
    assert [w["id"] for w in answer["workers"]] == ["py-worker-1"]
    assert sorted(p["partition"] for p in answer["workers"][0]["partitions"]) == [0, 1, 2]
    assert {p["topic"] for p in answer["workers"][0]["partitions"]} == {compute}

    ids = [client.submit("compute", {"input": f"w{i}"}) for i in range(4)]
    for job_id in ids:
        assert client.wait(job_id, timeout=60)["status"] == "completed"
    answer = until(client, lambda a: a["lag"]["total"] == 0 and
                   sum(p["committed"] for p in a["workers"][0]["partitions"]
                       if p["committed"] > 0) == 4)
    parts = answer["workers"][0]["partitions"]
    assert sum(p["end"] for p in parts) == 4
    assert all(p["committed"] == p["end"] for p in parts if p["end"] > 0)
    assert answer["lag"]["total"] == 0 and answer["workers"][0]["lag"] == 0

    worker.stop()
    answer = until(client, lambda a: a["state"] == "Empty")
    assert answer["state"] == "Empty" and answer["workers"] == []
    client.submit("compute", {"input": "later"})
    client.submit("compute", {"input": "later too"})
    answer = until(client, lambda a: a["lag"]["total"] == 2, timeout=10)
    assert answer["lag"]["total"] == 2 and answer["lag"]["byTopic"][compute] == 2
    assert sum(p["lag"] for p in answer["unassigned"] if p["topic"] == compute) == 2


def test_workers_raise_kafka_error_when_kafka_does_not_answer(config):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    with djob.Client({**config, "kafka.brokers": f"127.0.0.1:{closed}"}) as c:
        t0 = time.time()
        with pytest.raises(djob.KafkaError) as e:
            c.workers()
        assert time.time() - t0 < 8
        assert str(e.value)
