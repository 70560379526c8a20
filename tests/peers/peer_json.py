"""What the Python test peers share: decoded MessagePack as JSON, the way `botbus topic
echo` prints it (NaN and infinities as null, bytes as hex)."""
import math


def clean(v):
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, (bytes, bytearray)):
        return v.hex()
    if isinstance(v, dict):
        return {k: clean(x) for k, x in v.items()}
    if isinstance(v, list):
        return [clean(x) for x in v]
    return v
