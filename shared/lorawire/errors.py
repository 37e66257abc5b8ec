"""The one exception type of the codec.

Every decode of untrusted bytes (msgpack bodies, frames, records, fragments) raises
`DecodeError` and nothing else, whatever the input. It subclasses ValueError so
callers that already catch ValueError keep working.
"""


class DecodeError(ValueError):
    pass
