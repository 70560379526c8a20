"""Test peer: reads an MCAP file with the `mcap` package from PyPI and prints one JSON
document: the header, the chunks' compression, every channel with its schema, the
summary's message counts, and every message (JSON payloads parsed; `msgpack` ones
decoded, with their bytes in hex).

Usage: python3 mcap_dump.py FILE            (seeking reader: needs the summary)
       python3 mcap_dump.py FILE --stream   (reads records in order, as far as they go:
                                             for a file cut off mid-write)
"""
import json, sys

import msgpack
from peer_json import clean
from mcap.reader import NonSeekingReader, make_reader


def channel_info(channel, schema):
    return {
        "topic": channel.topic,
        "message_encoding": channel.message_encoding,
        "metadata": dict(channel.metadata),
        "schema_name": schema.name if schema else None,
        "schema_encoding": schema.encoding if schema else None,
        "schema": json.loads(schema.data) if schema and schema.encoding == "jsonschema" else None,
    }


def message_info(channel, message):
    m = {"channel": channel.id, "topic": channel.topic, "sequence": message.sequence,
         "log_time": message.log_time, "publish_time": message.publish_time}
    if channel.message_encoding == "json":
        m["data"] = json.loads(message.data)
    else:
        m["data"] = clean(msgpack.unpackb(message.data, raw=False))
        m["hex"] = message.data.hex()
    return m


path = sys.argv[1]
stream = "--stream" in sys.argv[2:]
out = {"channels": {}, "messages": [], "truncated": None}
with open(path, "rb") as f:
    if stream:
        reader = NonSeekingReader(f)
        try:
            for schema, channel, message in reader.iter_messages(log_time_order=False):
                out["channels"][str(channel.id)] = channel_info(channel, schema)
                out["messages"].append(message_info(channel, message))
        except Exception as e:  # the end of a file cut off mid-write
            out["truncated"] = "%s: %s" % (type(e).__name__, e)
    else:
        reader = make_reader(f)
        header = reader.get_header()
        out["profile"], out["library"] = header.profile, header.library
        summary = reader.get_summary()
        out["compression"] = sorted({c.compression for c in summary.chunk_indexes})
        out["chunks"] = len(summary.chunk_indexes)
        out["counts"] = {str(k): v for k, v in summary.statistics.channel_message_counts.items()}
        for cid, ch in summary.channels.items():
            out["channels"][str(cid)] = channel_info(ch, summary.schemas.get(ch.schema_id))
        for schema, channel, message in reader.iter_messages(log_time_order=False):
            out["messages"].append(message_info(channel, message))
print(json.dumps(out))
