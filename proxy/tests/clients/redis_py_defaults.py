"""redis-py with its default settings against one server (a node or the proxy).

    python3 redis_py_defaults.py PORT [PASSWORD]

redis-py 8 opens every connection with `HELLO 3` (with `AUTH default <password>` in it when a
password is set), falls back to RESP2 on NOPROTO, then sends `CLIENT SETINFO LIB-NAME/LIB-VER`
and, if asked, `CLIENT SETNAME` and `SELECT`. Exits non-zero with the reason when anything a user
would do fails. Prints "ok" and the protocol the connection settled on.
"""
import sys

import redis

port = int(sys.argv[1])
password = sys.argv[2] if len(sys.argv) > 2 else None

r = redis.Redis(port=port, password=password)
assert r.set("py:x", 1) is True, "SET"
assert r.get("py:x") == b"1", "GET"
assert r.incr("py:counter") >= 1, "INCR"
keys = {f"py:k{i}": str(i) for i in range(50)}
assert r.mset(keys) is True, "MSET across slots"
assert r.mget(list(keys)) == [v.encode() for v in keys.values()], "MGET across slots"
assert r.delete(*keys) == 50, "DEL across slots"
assert r.hset("py:h", mapping={"a": "1", "b": "2"}) == 2 and r.hgetall("py:h") == {b"a": b"1", b"b": b"2"}
pipe = r.pipeline(transaction=False)
for i in range(20):
    pipe.set(f"py:p{i}", i)
assert pipe.execute() == [True] * 20, "a pipeline"
protocol = r.connection_pool.get_connection().protocol

# A named connection and an explicit database, as applications configure them.
named = redis.Redis(port=port, password=password, client_name="py-app", db=0)
assert named.client_getname() == "py-app", "CLIENT GETNAME after the handshake's SETNAME"
assert isinstance(named.client_id(), int), "CLIENT ID"
named.client_setname("renamed")
assert named.client_getname() == "renamed"
assert named.ping() is True

# Asking for RESP3 explicitly is refused cleanly (no RESP3 yet), not with a broken connection.
try:
    redis.Redis(port=port, password=password, protocol=3).ping()
    raise AssertionError("protocol=3 should be refused until RESP3 exists")
except redis.exceptions.ResponseError as e:
    assert "NOPROTO" in str(e), e

# A wrong password is an authentication error, not a protocol error.
if password:
    try:
        redis.Redis(port=port, password="wrong").ping()
        raise AssertionError("a wrong password was accepted")
    except redis.exceptions.AuthenticationError:
        pass

print(f"ok protocol={protocol}")
