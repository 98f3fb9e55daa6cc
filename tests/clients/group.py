"""Two confluent-kafka consumers in one group against `evlog serve`: A consumes alone, B joins
late (a rebalance), A leaves (another), B finishes. A record counts as processed once its
offset is committed (a commit refused during a rebalance leaves it to be delivered again);
across both members every record is committed exactly once.
Prints 'ok' at the end."""
import sys, time
from confluent_kafka import Consumer, KafkaException, Producer

bootstrap, topic, n = sys.argv[1], sys.argv[2], 300
p = Producer({"bootstrap.servers": bootstrap, "acks": "all"})
for i in range(n):
    p.produce(topic, value=b"%d" % i)
assert p.flush(30) == 0

def member(name):
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "workers-" + topic, "client.id": name,
                  "enable.auto.commit": False, "auto.offset.reset": "earliest",
                  "session.timeout.ms": 6000, "heartbeat.interval.ms": 300})
    c.subscribe([topic])
    return c

seen = []
def take(c, count, deadline_s):
    t0 = time.time()
    taken = 0
    while taken < count and len(set(seen)) < n and time.time() - t0 < deadline_s:
        m = c.poll(0.2)
        if m is None or m.error():
            continue
        try:
            c.commit(message=m, asynchronous=False)
        except KafkaException:
            # Refused mid-rebalance (as Kafka refuses it): not done; whoever holds the
            # partition next gets the record again from the last commit.
            continue
        seen.append(int(m.value()))
        taken += 1
    return taken

a = member("a")
assert take(a, 100, 30) == 100
b = member("b")        # joins late: the group rebalances; one of them holds the partition
take(a, 50, 5)
take(b, 50, 5)
a.close()              # leaves: B gets the partition (if it did not have it)
take(b, n, 30)
b.close()
assert sorted(seen) == list(range(n)), "lost or read twice: %d seen, %d distinct" % (len(seen), len(set(seen)))
print("ok")
