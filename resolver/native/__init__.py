"""The Handle native protocol (RFC 3652), as the Handle.Net server and the IDIS SDKs speak
it over TCP and UDP: ``wire.py`` (messages, sans-I/O), ``values.py`` (handle values and
their structured data), ``server.py`` (the TCP and UDP listeners), ``admin.py``
(challenge-response and the administrative operations). docs/handle-protocol.md."""
