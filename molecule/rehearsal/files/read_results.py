"""Read every result in a region's results stream (jobstack.results), inside one of its user interface
containers (the image has pika; the broker URL is the container's AMQP_URL_FILE). Prints one JSON
object {job_id: [{"status", "engine"}, ...]}: one entry per result record, so a job run twice shows
two. Reads from the first record until nothing new arrives for two seconds."""

import json
import os
import time

import pika

with open(os.environ["AMQP_URL_FILE"]) as handle:
    url = handle.read().strip()
connection = pika.BlockingConnection(pika.URLParameters(url))
channel = connection.channel()
channel.basic_qos(prefetch_count=1000)
results: dict = {}
last = [time.monotonic()]


def on_record(channel, method, properties, body):
    last[0] = time.monotonic()
    if method.routing_key == "result":
        document = json.loads(body)
        results.setdefault(document["job_id"], []).append(
            {"status": document.get("status"), "engine": document.get("engine")}
        )
    channel.basic_ack(method.delivery_tag)


channel.basic_consume("jobstack.results", on_record, arguments={"x-stream-offset": "first"})
while time.monotonic() - last[0] < 2:
    connection.process_data_events(time_limit=0.5)
connection.close()
print(json.dumps(results))
