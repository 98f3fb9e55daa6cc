"""An idempotent confluent-kafka producer with acks=all against `evlog serve`: sends `n` records
("v0", "v1", ...) and waits until each is acknowledged, printing one line per acknowledgement,
'offset value', flushed at once. The test kills the server with SIGKILL midway and starts it
again: librdkafka retries what was in flight with the same producer id and sequences, and every
record must end up in the topic exactly once. Prints 'ok' at the end."""
import sys
from confluent_kafka import Producer

bootstrap, topic, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True,
              "linger.ms": 2, "message.timeout.ms": 120000, "reconnect.backoff.max.ms": 200})
errors = []

def acked(err, m):
    if err is None:
        sys.stdout.write("%d %s\n" % (m.offset(), m.value().decode()))
        sys.stdout.flush()
    else:
        errors.append(err)

for i in range(n):
    while True:
        try:
            p.produce(topic, value=b"v%d" % i, on_delivery=acked)
            break
        except BufferError:
            p.poll(0.05)
    p.poll(0)
assert p.flush(120) == 0, "records left unacknowledged"
assert not errors, errors[:3]
print("ok")
