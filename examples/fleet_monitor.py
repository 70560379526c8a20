#!/usr/bin/env python3
"""A short botbus fleet controller in Python, with paho-mqtt 2.x and msgpack.

It prints robots going online and offline, each robot's GPS fix and battery as decoded
dictionaries, and with --drive ROBOT sends one geometry_msgs/Twist command to that
robot's `drive` actuator (once the robot is online) and prints its ack.

Try it against the demo robot, in two terminals:

    botbus demo --seconds 0 --port 1883
    python3 examples/fleet_monitor.py --url mqtt://127.0.0.1:1883 --seconds 10 --drive demo

Needs: python3 -m pip install paho-mqtt msgpack
"""

import argparse
import random
import time
from urllib.parse import urlparse

import msgpack
import paho.mqtt.client as mqtt


def say(*parts):
    print(*parts, flush=True)


def main():
    parser = argparse.ArgumentParser(description="Watch a botbus fleet.")
    parser.add_argument("--url", default="mqtt://127.0.0.1:1883")
    parser.add_argument("--seconds", type=float, help="stop after this long (default: Ctrl-C)")
    parser.add_argument("--drive", metavar="ROBOT", help="send ROBOT one drive command")
    args = parser.parse_args()
    url = urlparse(args.url)
    command_id = random.randrange(1 << 31)  # echoed in the ack, to match it
    sent = set()

    def on_connect(client, userdata, flags, reason_code, properties):
        if reason_code.is_failure:
            say(f"connection refused: {reason_code}")
            return
        topics = [("robot/+/status", 1), ("robot/+/gps/fix", 0), ("robot/+/battery", 1)]
        if args.drive:
            topics.append((f"robot/{args.drive}/ack/drive", 1))
        client.subscribe(topics)
        say(f"connected to {args.url}")

    def on_message(client, userdata, msg):
        _, robot, what = msg.topic.split("/", 2)  # robot/<id>/<what>
        try:
            payload = msgpack.unpackb(msg.payload, raw=False)
        except Exception as e:  # not MessagePack: say so, keep going
            say(f"{msg.topic}: not MessagePack ({e})")
            return
        if what == "status":
            say(payload.get("state"), robot, payload)
            if payload.get("state") == "online" and robot == args.drive and robot not in sent:
                sent.add(robot)
                command = {"id": command_id, "linear": {"x": 0.2}, "angular": {"z": 0.1}}
                client.publish(f"robot/{robot}/cmd/drive", msgpack.packb(command), qos=1)
                say(f"sent {robot}/drive", command)
        elif what == "gps/fix":
            say("fix", robot, payload)
        elif what == "battery":
            say("battery", robot, payload)
        elif what == "ack/drive" and payload.get("id") == command_id:
            say(f"ack {robot}/drive", payload)

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    if url.username:
        client.username_pw_set(url.username, url.password)
    tls = url.scheme in ("mqtts", "ssl")
    if tls:
        client.tls_set()
    client.on_connect = on_connect
    client.on_message = on_message
    client.connect(url.hostname or "127.0.0.1", url.port or (8883 if tls else 1883), keepalive=30)
    client.loop_start()
    try:
        if args.seconds is None:
            while True:
                time.sleep(1)
        time.sleep(args.seconds)
    except KeyboardInterrupt:
        pass
    client.disconnect()
    client.loop_stop()


if __name__ == "__main__":
    main()
