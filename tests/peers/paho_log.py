"""Test peer: an independent MQTT subscriber (paho-mqtt + msgpack) that prints every
message of a filter as one JSON line: topic, QoS, retain flag, arrival time (ns since the
epoch), the payload's bytes in hex and the payload decoded (NaN/inf as null, bytes as
hex, as `botbus topic echo` prints them). "READY" comes first, once subscribed.

Usage: python3 paho_log.py HOST PORT FILTER SECONDS
"""
import json, os, sys, threading, time

import msgpack
from peer_json import clean
import paho.mqtt.client as mqtt

host, port, topic_filter, seconds = sys.argv[1], int(sys.argv[2]), sys.argv[3], float(sys.argv[4])
lock = threading.Lock()


def on_connect(client, userdata, flags, reason_code, properties):
    client.subscribe(topic_filter, 1)


def on_subscribe(client, userdata, mid, reason_codes, properties):
    print("READY", flush=True)


def on_message(client, userdata, msg):
    t = time.time_ns()
    try:
        payload = clean(msgpack.unpackb(msg.payload, raw=False))
    except Exception as e:  # a payload that is not MessagePack is still reported
        payload = {"not_msgpack": str(e)}
    line = json.dumps({"topic": msg.topic, "qos": msg.qos, "retain": bool(msg.retain),
                       "t": t, "hex": msg.payload.hex(), "payload": payload})
    with lock:
        print(line, flush=True)


client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="paho-log-%d" % os.getpid())
client.on_connect = on_connect
client.on_subscribe = on_subscribe
client.on_message = on_message
client.connect(host, port, 30)
threading.Timer(seconds, client.disconnect).start()
client.loop_forever()
