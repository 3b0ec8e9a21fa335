"""Client schedules: periodic jobs created, listed, read and deleted through
the library (the same calls as POST/GET/DELETE /schedules)."""

import djob
import pytest


def test_schedule_created_listed_read_and_deleted(client):
    s = client.create_schedule("nightly", "30 2 * * *", "compute", {"input": "n"},
                               timezone="+02:00", max_attempts=2)
    assert s["name"] == "nightly" and s["timezone"] == "+02:00" and s["offsetMinutes"] == 120
    assert s["job"] == {"type": "compute", "payload": {"input": "n"}, "maxAttempts": 2}
    # 02:30 at +02:00 is 00:30 UTC.
    assert s["nextRunAt"].endswith("T00:30:00.000Z")
    client.create_schedule("a-first", "*/5 * * * *", "data")
    assert [x["name"] for x in client.schedules()] == ["a-first", "nightly"]
    assert client.schedule("nightly") == s
    with pytest.raises(djob.ConflictError):
        client.create_schedule("nightly", "* * * * *", "compute")
    client.delete_schedule("nightly")
    with pytest.raises(djob.NotFoundError):
        client.schedule("nightly")
    with pytest.raises(djob.NotFoundError):
        client.delete_schedule("nightly")
    assert [x["name"] for x in client.schedules()] == ["a-first"]
    print("checked 2 created, 1 conflict, 1 deleted, 2 not found")


@pytest.mark.parametrize("kwargs, field", [
    ({"name": "", "cron": "* * * * *"}, "name"),
    ({"name": "x", "cron": "* * *"}, "5 fields"),
    ({"name": "x", "cron": "* * * * 9"}, "day-of-week"),
    ({"name": "x", "cron": "0 0 31 2 *"}, "never"),
    ({"name": "x", "cron": "* * * * *", "timezone": "Europe/Paris"}, "timezone"),
    ({"name": "x", "cron": "* * * * *", "max_attempts": 0}, "maxAttempts"),
])
def test_bad_schedule_is_refused_naming_the_field(client, kwargs, field):
    with pytest.raises(djob.InvalidError, match=field):
        client.create_schedule(type="compute", **kwargs)
    assert client.schedules() == []
